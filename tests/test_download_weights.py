"""The weights CLI (scripts/download_weights.py): help, list, check report, licence refusal, mirror download.

Each command runs in a subprocess so exit codes are the real ones. The only network use is a static file server
started here on 127.0.0.1 (random port, shut down after the test).
"""
from __future__ import annotations

import functools
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from nerffs.weights import REGISTRY, asset_path, fetch_command

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_dir: Path | None = None) -> subprocess.CompletedProcess:
    env = None if env_dir is None else {**os.environ, "NERFFS_WEIGHTS": str(env_dir)}
    return subprocess.run([sys.executable, "-m", "scripts.download_weights", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def static_server(tmp_path) -> Iterator[tuple[str, Path]]:
    """(base URL, served directory): a plain static server (no Range support needed here)."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def test_help_explains_options():
    res = run_cli("--help")
    assert res.returncode == 0
    for word in ("--accept-licence", "--check", "--convert", "--feature", "--mirror", "NERFFS_WEIGHTS", ".part"):
        assert word in res.stdout


def test_list_shows_every_asset():
    res = run_cli("--list")
    assert res.returncode == 0
    rows = {line.split()[0] for line in res.stdout.splitlines() if line.strip()}
    assert set(REGISTRY) <= {r.rstrip("*") for r in rows}
    assert "sadtalker*" in rows and "audio2exp_pth" in rows  # default provider marked


@pytest.mark.parametrize("args", [(), ("no_such_asset",), ("--feature", "teleport"),
                                  ("sadtalker", "--accept-licence", "nope"), ("--check", "--retries", "-1")])
def test_usage_errors_exit_2(args, tmp_path):
    res = run_cli(*args, "--dir", str(tmp_path))
    assert res.returncode == 2 and "error" in res.stderr


def _place_assets(root: Path) -> None:
    """audio2exp_pth: a readable torch file (present); sadtalker: wrong size; deep3d: unreadable."""
    good = asset_path("audio2exp_pth", root)
    good.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(2)}}, good)
    asset_path("sadtalker", root).write_bytes(b"\0" * 100)
    bad = asset_path("deep3d", root)
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"<html>not a checkpoint</html>")


def _rows(stdout: str) -> dict[str, str]:
    names = set(REGISTRY)
    return {p[0]: p[1] for p in (line.split() for line in stdout.splitlines()) if len(p) >= 3 and p[0] in names}


def test_check_reports_present_missing_corrupt(tmp_path):
    _place_assets(tmp_path)
    res = run_cli("--check", "--dir", str(tmp_path))
    assert res.returncode == 1, res.stderr  # corrupt files fail the check
    rows = _rows(res.stdout)
    assert rows["audio2exp_pth"] == "present"
    assert rows["sadtalker"] == "corrupt" and rows["deep3d"] == "corrupt"
    assert rows["stylenerf_ffhq512"] == "missing" and rows["bfm_front"] == "missing"
    assert set(rows) == set(REGISTRY)
    assert "available features: audio2exp" in res.stdout
    assert "expected 725066984 B" in res.stdout  # the reason is shown


def test_check_exit_status_depends_on_named_assets(tmp_path):
    good = asset_path("audio2exp_pth", tmp_path)
    good.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(2)}}, good)
    assert run_cli("--check", env_dir=tmp_path).returncode == 0  # missing optional assets alone are fine
    assert run_cli("--check", "audio2exp_pth", env_dir=tmp_path).returncode == 0
    res = run_cli("--check", "--feature", "fid", env_dir=tmp_path)
    assert res.returncode == 1 and _rows(res.stdout) == {"inception_fid": "missing"}
    res = run_cli("--check", "--feature", "audio2exp", env_dir=tmp_path)  # one usable provider is enough
    assert res.returncode == 0 and _rows(res.stdout) == {"sadtalker": "missing", "audio2exp_pth": "present"}
    assert run_cli("--check", "sadtalker", "audio2exp_pth", env_dir=tmp_path).returncode == 1  # named: all needed


def test_licence_refusal_is_one_line_and_writes_nothing(tmp_path):
    root = tmp_path / "weights"
    res = run_cli("stylenerf_ffhq256", "--dir", str(root))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "--accept-licence stylenerf_ffhq256" in lines[0] and REGISTRY["stylenerf_ffhq256"].terms_url in lines[0]
    assert not root.exists()


def test_manual_asset_prints_how_to_get_it(tmp_path):
    res = run_cli("bisenet_seg16", "--dir", str(tmp_path), "-q")
    assert res.returncode == 1
    assert "drive.google.com" in res.stderr and str(asset_path("bisenet_seg16", tmp_path)) in res.stderr


def test_download_from_mirror_then_convert(static_server, tmp_path):
    base, served = static_server
    model = {"conv.weight": torch.randn(2, 3, 1, 1)}
    source = served / REGISTRY["audio2exp_pth"].filename
    source.parent.mkdir(parents=True)
    torch.save({"model": model, "epoch": 300}, source)
    root = tmp_path / "weights"
    res = run_cli("audio2exp_pth", "--dir", str(root), "--mirror", base, "--convert", "-q", "--timeout", "10")
    assert res.returncode == 0, res.stderr
    target = asset_path("audio2exp_pth", root)
    assert target.read_bytes() == source.read_bytes()
    from safetensors.torch import load_file

    converted = load_file(str(target.with_suffix(".safetensors")))
    assert list(converted) == ["audio2exp.conv.weight"]
    assert torch.equal(converted["audio2exp.conv.weight"], model["conv.weight"])


def test_fetch_command_parses_as_cli_arguments(tmp_path):
    from scripts.download_weights import build_parser

    command = fetch_command(["stylenerf_ffhq512", "syncnet", "deep3d"], tmp_path / "w d")
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "scripts.download_weights"]
    args = build_parser().parse_args(argv[3:])
    assert args.names == ["stylenerf_ffhq512", "syncnet", "deep3d"]
    assert args.accept == ["stylenerf_ffhq512", "syncnet"] and args.dir == str(tmp_path / "w d")


def test_feature_download_skips_features_already_present(tmp_path):
    good = asset_path("audio2exp_pth", tmp_path)
    good.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(2)}}, good)
    res = run_cli("--feature", "audio2exp", "--dir", str(tmp_path), "-q")  # provided: nothing to fetch
    assert res.returncode == 2 and "nothing to do" in res.stderr
    res = run_cli("--feature", "bfm", "--dir", str(tmp_path), "-q")  # default provider: manual-only asset
    assert res.returncode == 1 and "bfm_front" in res.stderr and "bfm09_fitting" not in res.stderr


def test_sha256_is_printed_recorded_and_a_changed_file_reported(static_server, tmp_path):
    import hashlib
    import json

    base, served = static_server
    source = served / REGISTRY["audio2exp_pth"].filename
    source.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.randn(4)}, "epoch": 300}, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    root = tmp_path / "weights"
    args = ("--dir", str(root), "--mirror", base, "-q", "--timeout", "10")
    res = run_cli("audio2exp_pth", *args)  # first download: printed and recorded
    assert res.returncode == 0, res.stderr
    assert f"audio2exp_pth: sha256 {digest} (recorded in {root / 'checksums.json'})" in res.stdout
    ledger = json.loads((root / "checksums.json").read_text())
    entry = ledger["files"][REGISTRY["audio2exp_pth"].filename]
    assert entry["sha256"] == digest and entry["source"] == f"{base}/{REGISTRY['audio2exp_pth'].filename}"
    res = run_cli("--check", "audio2exp_pth", "--dir", str(root))  # later check: compared, nothing new
    assert res.returncode == 0 and "matches the one recorded" in res.stdout and "first check" not in res.stdout
    target = asset_path("audio2exp_pth", root)
    torch.save({"model": {"w": torch.zeros(4)}, "epoch": 301}, target)  # replaced behind our back
    res = run_cli("--check", "--dir", str(root))
    assert res.returncode == 1 and _rows(res.stdout)["audio2exp_pth"] == "changed"
    detail = [line for line in res.stdout.splitlines() if line.startswith("  audio2exp_pth:")]
    assert len(detail) == 1 and str(target) in detail[0] and "--force" in detail[0]
    res = run_cli("audio2exp_pth", *args)  # a plain download does not overwrite it: one line with the fix
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 1 and len(lines) == 1 and str(target) in lines[0] and "--forget-checksum" in lines[0]
    res = run_cli("audio2exp_pth", "--force", *args)  # the fix: the original again, matching the record
    assert res.returncode == 0, res.stderr
    assert target.read_bytes() == source.read_bytes() and "matches the one recorded" in res.stdout


def test_first_check_of_a_placed_file_prints_and_records_it(tmp_path):
    import hashlib

    good = asset_path("lipaintnet", tmp_path)
    good.parent.mkdir(parents=True)
    torch.save({"model_state_dict": {"fc1.weight": torch.zeros(2, 2)}}, good)
    digest = hashlib.sha256(good.read_bytes()).hexdigest()
    res = run_cli("--check", "lipaintnet", "--dir", str(tmp_path))
    assert res.returncode == 0 and f"lipaintnet: sha256 {digest} recorded in" in res.stdout
    torch.save({"model_state_dict": {"fc1.weight": torch.ones(2, 2)}}, good)  # replaced on purpose
    assert run_cli("--check", "lipaintnet", "--dir", str(tmp_path)).returncode == 1
    res = run_cli("lipaintnet", "--check", "--forget-checksum", "lipaintnet", "--dir", str(tmp_path))
    new = hashlib.sha256(good.read_bytes()).hexdigest()
    assert res.returncode == 0 and "recorded sha256 dropped" in res.stdout and f"sha256 {new} recorded" in res.stdout
    (tmp_path / "checksums.json").write_text("garbage")
    res = run_cli("--check", "--dir", str(tmp_path))
    assert res.returncode == 1 and res.stderr.strip().count("\n") == 0 and "checksums.json" in res.stderr
