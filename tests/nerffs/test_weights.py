"""Weights registry, verified resumable download, licence gating, conversion and checks (nerffs.weights).

Network tests talk only to a server started here on 127.0.0.1 (random port, daemon thread, shut down after
each test) that serves synthetic bytes, honours Range requests and can drop a connection mid-file, ignore
Range, or serve wrong bytes.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from nerffs.errors import CheckpointError, WeightsMissingError
from nerffs.weights import (DEFAULT_PROVIDERS, FEATURES, REGISTRY, Asset, ChecksumError, DownloadError, LedgerError,
                            LicenceNotAcceptedError, asset_path, available_features, check, convert, download,
                            fetch_command, forget, ledger_path, missing, read_ledger, resolve, weights_dir)

TESTS = Path(__file__).resolve().parents[1]


# ---- local HTTP server --------------------------------------------------------------------------------------------
@dataclass
class Served:
    """One file of the test server."""

    data: bytes
    drop_after: int | None = None
    """On the first GET, announce the full length but close the connection after this many body bytes."""
    wrong: bool = False
    """Serve the bytes with the first one flipped (same length)."""
    ignore_range: bool = False
    """Answer every request with 200 and the whole file."""
    dropped: bool = False


@dataclass
class LocalServer:
    """Files by URL path, and the log of (path, Range header) of every GET received."""

    base: str
    files: dict[str, Served] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


def _handler(server: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            server.requests.append((self.path, self.headers.get("Range")))
            served = server.files.get(self.path)
            if served is None:
                self.send_error(404)
                return
            data = bytes([served.data[0] ^ 0xFF]) + served.data[1:] if served.wrong else served.data
            start = 0
            rng = self.headers.get("Range")
            if rng and not served.ignore_range:
                start = int(rng.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            partial = bool(rng) and not served.ignore_range
            self.send_response(206 if partial else 200)
            if partial:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if served.drop_after is not None and not served.dropped:
                served.dropped = True
                body = body[:served.drop_after]
                self.close_connection = True
            self.wfile.write(body)
            self.wfile.flush()

    return Handler


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    state = LocalServer(base="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- helpers ---------------------------------------------------------------------------------------------------------
def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return bytes((i * 131 + seed * 7 + (i >> 8)) % 251 for i in range(n))


def make_asset(name: str, filename: str, urls: tuple[str, ...] = (), *, data: bytes | None = None,
               with_hash: bool = True, with_size: bool = False, gated: bool = False,
               features: tuple[str, ...] = ("generator",), **extra) -> Asset:
    return Asset(name=name, filename=filename, urls=urls, manual=f"ask the authors for {filename}",
                 size=len(data) if (data is not None and with_size) else None,
                 sha256=hashlib.sha256(data).hexdigest() if (data is not None and with_hash) else None,
                 licence="test terms (non-commercial)" if gated else "test terms (open)",
                 terms_url="https://example.invalid/terms", needs_acceptance=gated, features=features,
                 description="synthetic test asset", **extra)


def save_torch_zip(path: Path, obj) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path.read_bytes()


def no_partials(root: Path) -> bool:
    return not any(p.name.endswith(".part") for p in root.rglob("*")) if root.exists() else True


# ---- registry --------------------------------------------------------------------------------------------------------
def test_registry_names_features_and_licences():
    assert set(REGISTRY) == {
        "stylenerf_ffhq256", "stylenerf_ffhq512", "stylenerf_ffhq1024", "sadtalker", "audio2exp_pth", "deep3d",
        "bfm_front", "bfm09_fitting", "bisenet_seg16", "bisenet_79999", "lipaintnet", "lpips_vgg16_backbone",
        "lpips_alexnet_backbone", "syncnet", "inception_fid"}
    assert {f for a in REGISTRY.values() for f in a.features} == set(FEATURES)
    assert len({a.filename for a in REGISTRY.values()}) == len(REGISTRY)
    gated = {n for n, a in REGISTRY.items() if a.needs_acceptance}
    assert {"stylenerf_ffhq256", "stylenerf_ffhq512", "stylenerf_ffhq1024", "bfm_front", "bfm09_fitting",
            "syncnet"} <= gated
    assert "sadtalker" not in gated
    assert REGISTRY["sadtalker"].size == 725_066_984
    assert not REGISTRY["bfm_front"].urls and "unibas" in REGISTRY["bfm_front"].manual
    assert all(u.startswith("https://") for a in REGISTRY.values() for u in a.urls)
    assert "default_1.pt" in REGISTRY["inception_fid"].manual
    assert set(DEFAULT_PROVIDERS) == set(FEATURES)
    assert all(f in REGISTRY[name].features for f, name in DEFAULT_PROVIDERS.items())
    with pytest.raises(TypeError):
        REGISTRY["x"] = REGISTRY["deep3d"]  # read-only


@pytest.mark.parametrize("bad", [{"sha256": "abc"}, {"filename": "../escape.pth"}, {"filename": "/abs.pth"},
                                 {"name": "Bad-Name"}, {"manual": " "}, {"urls": ("ftp://x/y",)}])
def test_asset_rejects_malformed_entries(bad):
    fields = dict(name="ok", filename="a/b.pth", urls=(), manual="by hand", size=None, sha256=None, licence="l",
                  terms_url="https://t", needs_acceptance=False, features=("fid",), description="d")
    fields.update(bad)
    with pytest.raises(ValueError, match="invalid registry entry"):
        Asset(**fields)


def test_weights_dir_rule(monkeypatch, tmp_path):
    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path / "env"))
    assert weights_dir() == tmp_path / "env"
    assert weights_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("NERFFS_WEIGHTS")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / ".cache" / "nerffs" / "weights"
    assert asset_path("deep3d", tmp_path) == tmp_path / "deep3d" / "epoch_20.pth"


# ---- download --------------------------------------------------------------------------------------------------------
def test_full_download_verifies_checksum(http_server, tmp_path):
    data = payload()
    http_server.files["/m.bin"] = Served(data)
    reg = {"m": make_asset("m", "sub/m.bin", (http_server.url("m.bin"),), data=data)}
    path = download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    assert path == tmp_path / "sub" / "m.bin" and path.read_bytes() == data
    assert http_server.requests == [("/m.bin", None)]
    assert no_partials(tmp_path)


def test_resume_after_connection_drop_uses_range(http_server, tmp_path):
    data = payload(seed=1)
    http_server.files["/m.bin"] = Served(data, drop_after=100_000)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}
    path = download("m", tmp_path, registry=reg, timeout=5, show_progress=False, retries=2)
    assert path.read_bytes() == data
    assert http_server.requests == [("/m.bin", None), ("/m.bin", "bytes=100000-")]
    assert no_partials(tmp_path)


def test_resume_from_leftover_part_file(http_server, tmp_path):
    data = payload(seed=2)
    http_server.files["/m.bin"] = Served(data)
    (tmp_path / "m.bin.part").write_bytes(data[:12_345])  # an earlier, interrupted run
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}
    assert download("m", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == data
    assert http_server.requests == [("/m.bin", "bytes=12345-")]


def test_server_ignoring_range_restarts_cleanly(http_server, tmp_path):
    data = payload(seed=3)
    http_server.files["/m.bin"] = Served(data, drop_after=50_000, ignore_range=True)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}
    assert download("m", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == data
    assert len(http_server.requests) == 2


def test_too_many_drops_keep_the_part_for_later(http_server, tmp_path):
    data = payload(seed=4)
    http_server.files["/m.bin"] = Served(data, drop_after=1_000)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}
    with pytest.raises(DownloadError, match="dropped 1 times"):
        download("m", tmp_path, registry=reg, timeout=5, show_progress=False, retries=0)
    assert not (tmp_path / "m.bin").exists()
    assert (tmp_path / "m.bin.part").stat().st_size == 1_000
    assert download("m", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == data


def test_checksum_mismatch_leaves_nothing(http_server, tmp_path):
    data = payload(seed=5)
    http_server.files["/m.bin"] = Served(data, wrong=True)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}
    with pytest.raises(ChecksumError, match="does not match") as info:
        download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    assert len(str(info.value).splitlines()) == 1
    assert not (tmp_path / "m.bin").exists() and no_partials(tmp_path)


def test_size_mismatch_is_rejected_without_hash(http_server, tmp_path):
    data = payload(seed=6)
    http_server.files["/m.bin"] = Served(data[:-10])
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data, with_hash=False, with_size=True)}
    with pytest.raises(ChecksumError, match="expected"):
        download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    assert not (tmp_path / "m.bin").exists() and no_partials(tmp_path)


def test_unverifiable_download_must_read_in_its_format(http_server, tmp_path):
    http_server.files["/w.pth"] = Served(b"<html>quota exceeded</html>")
    reg = {"w": make_asset("w", "w.pth", (http_server.url("w.pth"),))}
    with pytest.raises(ChecksumError, match="does not read"):
        download("w", tmp_path, registry=reg, timeout=5, show_progress=False)
    good = save_torch_zip(tmp_path / "src" / "w.pth", {"a": torch.ones(3)})
    http_server.files["/w.pth"] = Served(good)
    assert download("w", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == good


def test_licence_refused_before_any_request_or_write(http_server, tmp_path, caplog):
    data = payload(seed=7)
    http_server.files["/g.bin"] = Served(data)
    reg = {"g": make_asset("g", "deep/dir/g.bin", (http_server.url("g.bin"),), data=data, gated=True)}
    root = tmp_path / "weights"
    with pytest.raises(LicenceNotAcceptedError) as info:
        download("g", root, registry=reg, accept_licences=["other"], timeout=5, show_progress=False)
    message = str(info.value)
    assert "https://example.invalid/terms" in message and "--accept-licence g" in message
    assert http_server.requests == [] and not root.exists()
    with caplog.at_level(logging.WARNING, logger="nerffs.weights"):
        path = download("g", root, registry=reg, accept_licences=["g"], timeout=5, show_progress=False)
    assert path.read_bytes() == data
    assert "https://example.invalid/terms" in caplog.text  # accepted terms are still stated


def test_sources_tried_in_order_first_404(http_server, tmp_path):
    data = payload(seed=8)
    http_server.files["/good/m.bin"] = Served(data)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("gone/m.bin"), http_server.url("good/m.bin")), data=data)}
    assert download("m", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == data
    assert [p for p, _ in http_server.requests] == ["/gone/m.bin", "/good/m.bin"]


def test_mirror_base_url_is_tried_first(http_server, tmp_path):
    data = payload(seed=9)
    http_server.files["/mirror/sub/m.bin"] = Served(data)
    reg = {"m": make_asset("m", "sub/m.bin", (http_server.url("official/m.bin"),), data=data)}
    path = download("m", tmp_path, registry=reg, mirrors=[http_server.url("mirror/")], timeout=5,
                    show_progress=False)
    assert path.read_bytes() == data and [p for p, _ in http_server.requests] == ["/mirror/sub/m.bin"]


def test_bad_mirror_falls_back_after_checksum_failure(http_server, tmp_path):
    data = payload(seed=10)
    http_server.files["/mirror/m.bin"] = Served(data, wrong=True)
    http_server.files["/official/m.bin"] = Served(data)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("official/m.bin"),), data=data)}
    path = download("m", tmp_path, registry=reg, mirrors=[http_server.url("mirror")], timeout=5,
                    show_progress=False)
    assert path.read_bytes() == data


def test_offline_explains_manual_placement(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/m.bin"
    reg = {"m": make_asset("m", "sub/m.bin", (url,), data=b"x")}
    with pytest.raises(DownloadError) as info:
        download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert "offline" in message and "by hand" in message and str(tmp_path / "sub" / "m.bin") in message
    assert not (tmp_path / "sub").exists()  # nothing written, not even the directory


def test_asset_without_url_gives_manual_note(tmp_path):
    reg = {"h": make_asset("h", "h.mat", gated=True)}
    with pytest.raises(WeightsMissingError, match="ask the authors for h.mat") as info:
        download("h", tmp_path, registry=reg, show_progress=False)
    assert str(tmp_path / "h.mat") in str(info.value)


def test_existing_files_kept_or_replaced(http_server, tmp_path):
    data = payload(seed=11)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}
    (tmp_path / "m.bin").write_bytes(data)
    assert download("m", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == data
    assert http_server.requests == []  # valid already: no request
    (tmp_path / "m.bin").write_bytes(b"broken")
    http_server.files["/m.bin"] = Served(data)
    assert download("m", tmp_path, registry=reg, timeout=5, show_progress=False).read_bytes() == data


# ---- check -----------------------------------------------------------------------------------------------------------
def test_check_reports_each_state_and_features(tmp_path):
    good, other = payload(1000, 1), payload(1000, 2)
    reg = {
        "valid_hash": make_asset("valid_hash", "a.bin", data=good, features=("generator",)),
        "bad_hash": make_asset("bad_hash", "b.bin", data=good, features=("audio2exp",)),
        "bad_size": make_asset("bad_size", "c.bin", data=good, with_hash=False, with_size=True, features=("bfm",)),
        "readable": make_asset("readable", "d.pth", features=("deep3d",)),
        "unreadable": make_asset("unreadable", "e.pth", features=("parsing",)),
        "absent": make_asset("absent", "f.bin", ("https://example.invalid/f.bin",), features=("fid",)),
    }
    (tmp_path / "a.bin").write_bytes(good)
    (tmp_path / "b.bin").write_bytes(other)
    (tmp_path / "c.bin").write_bytes(good[:-1])
    save_torch_zip(tmp_path / "d.pth", {"w": torch.zeros(2)})
    (tmp_path / "e.pth").write_bytes(b"not a torch file")
    states = {s.name: s.state for s in check(tmp_path, registry=reg)}
    assert states == {"valid_hash": "valid", "bad_hash": "corrupt", "bad_size": "corrupt", "readable": "present",
                      "unreadable": "corrupt", "absent": "missing"}
    statuses = check(tmp_path, registry=reg)
    assert "python -m scripts.download_weights absent" in statuses[-1].detail
    assert available_features(statuses) == {"generator": True, "audio2exp": False, "bfm": False, "deep3d": True,
                                            "parsing": False, "fid": False}
    fast = {s.name: s.state for s in check(tmp_path, verify_hash=False, registry=reg)}
    assert fast["bad_hash"] == "present" and fast["bad_size"] == "corrupt"


def test_truncated_safetensors_is_corrupt(tmp_path):
    from safetensors.torch import save_file

    reg = {"s": make_asset("s", "s.safetensors")}
    save_file({"x": torch.arange(100.0)}, str(tmp_path / "s.safetensors"))
    assert check(tmp_path, registry=reg)[0].state == "present"
    data = (tmp_path / "s.safetensors").read_bytes()
    (tmp_path / "s.safetensors").write_bytes(data[:-8])
    assert check(tmp_path, registry=reg)[0].state == "corrupt"


# ---- checksum ledger -------------------------------------------------------------------------------------------------
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_first_download_records_sha256_and_later_downloads_must_match(http_server, tmp_path):
    data = payload(seed=20)
    http_server.files["/m.bin"] = Served(data)
    reg = {"m": make_asset("m", "sub/m.bin", (http_server.url("m.bin"),), with_hash=False)}  # nothing published
    path = download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    rec = read_ledger(tmp_path)["sub/m.bin"]
    assert (rec.asset, rec.sha256, rec.size, rec.source) == ("m", _sha(data), len(data), http_server.url("m.bin"))
    assert ledger_path(tmp_path) == tmp_path / "checksums.json"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic write left no temp file
    # The source now serves other bytes: a forced re-download is refused and the recorded file is kept.
    http_server.files["/m.bin"] = Served(data, wrong=True)
    with pytest.raises(ChecksumError) as info:
        download("m", tmp_path, registry=reg, timeout=5, show_progress=False, force=True)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert _sha(data)[:16] in message and "sub/m.bin" in message and f"--forget-checksum m --dir {tmp_path}" in message
    assert path.read_bytes() == data and no_partials(tmp_path)
    # Accepting the change: forget the record, download again, the new checksum is recorded.
    assert forget([reg["m"]], tmp_path) == ["m"] and "sub/m.bin" not in read_ledger(tmp_path)
    download("m", tmp_path, registry=reg, timeout=5, show_progress=False, force=True)
    assert read_ledger(tmp_path)["sub/m.bin"].sha256 == _sha(path.read_bytes()) != _sha(data)


def test_forced_download_matching_the_record_keeps_it(http_server, tmp_path):
    data = payload(seed=21)
    http_server.files["/m.bin"] = Served(data)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), with_hash=False)}
    download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    first = read_ledger(tmp_path)["m.bin"]
    download("m", tmp_path, registry=reg, timeout=5, show_progress=False, force=True)
    assert read_ledger(tmp_path)["m.bin"] == first  # same file: the original record stays
    assert len(http_server.requests) == 2


def test_check_records_on_first_check_then_reports_a_changed_file(http_server, tmp_path):
    data = payload(2000, seed=22)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), with_hash=False)}
    (tmp_path / "m.bin").write_bytes(data)
    assert not ledger_path(tmp_path).exists()
    (plain,) = check(tmp_path, registry=reg)  # the library's check records only when asked
    assert not plain.newly_recorded and not ledger_path(tmp_path).exists() and plain.sha256 == _sha(data)
    (first,) = check(tmp_path, registry=reg, record_new=True)
    assert first.state == "present" and first.newly_recorded and first.sha256 == _sha(data)
    assert read_ledger(tmp_path)["m.bin"].source == "found in place"
    (again,) = check(tmp_path, registry=reg, record_new=True)
    assert again.state == "present" and not again.newly_recorded and "matches the one recorded" in again.detail
    (tmp_path / "m.bin").write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, other content
    (changed,) = check(tmp_path, registry=reg, record_new=True)
    assert changed.state == "changed" and not changed.usable and not changed.newly_recorded
    assert len(changed.detail.splitlines()) == 1 and str(tmp_path / "m.bin") in changed.detail
    assert f"download_weights m --force --dir {tmp_path}" in changed.detail
    assert f"--forget-checksum m --check m --dir {tmp_path}" in changed.detail
    assert read_ledger(tmp_path)["m.bin"].sha256 == _sha(data)  # a changed file never overwrites its record
    assert check(tmp_path, verify_hash=False, registry=reg)[0].state == "present"  # same size: not visible
    (tmp_path / "m.bin").write_bytes(data + b"x")
    assert check(tmp_path, verify_hash=False, registry=reg)[0].state == "changed"  # size differs: visible
    # A plain download refuses to overwrite a changed file (it may have been replaced on purpose).
    with pytest.raises(ChecksumError, match="changed since its checksum was recorded"):
        download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    assert http_server.requests == [] and (tmp_path / "m.bin").read_bytes() == data + b"x"


def test_download_of_a_present_file_records_it(http_server, tmp_path):
    data = payload(seed=23)
    reg = {"m": make_asset("m", "m.bin", (http_server.url("m.bin"),), data=data)}  # published sha256
    (tmp_path / "m.bin").write_bytes(data)
    download("m", tmp_path, registry=reg, timeout=5, show_progress=False)
    assert http_server.requests == [] and read_ledger(tmp_path)["m.bin"].sha256 == _sha(data)
    (valid,) = check(tmp_path, registry=reg)
    assert valid.state == "valid"


def test_unreadable_ledger_is_one_line_naming_it(tmp_path):
    reg = {"m": make_asset("m", "m.bin", with_hash=False)}
    (tmp_path / "m.bin").write_bytes(b"data")
    ledger_path(tmp_path).write_text("{not json")
    with pytest.raises(LedgerError) as info:
        check(tmp_path, registry=reg)
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(ledger_path(tmp_path)) in message and "delete it" in message


# ---- resolve / missing / fetch_command -------------------------------------------------------------------------------
def test_resolve_error_names_file_dir_and_exact_command(tmp_path):
    with pytest.raises(WeightsMissingError) as info:
        resolve("stylenerf_ffhq512", tmp_path)
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "stylenerf" / "ffhq_512.pkl") in message
    expected = (f"python -m scripts.download_weights stylenerf_ffhq512 --dir {tmp_path} "
                "--accept-licence stylenerf_ffhq512")
    assert f"`{expected}`" in message
    assert fetch_command(["stylenerf_ffhq512"], tmp_path) == expected
    with pytest.raises(FileNotFoundError, match="unibas"):  # WeightsMissingError is a FileNotFoundError
        resolve("bfm_front", tmp_path)


def test_fetch_command_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path))
    assert fetch_command(["sadtalker", "syncnet", "sadtalker"]) == \
        "python -m scripts.download_weights sadtalker syncnet --accept-licence syncnet"
    save_torch_zip(asset_path("deep3d"), {"net_recon": {"w": torch.zeros(1)}})
    assert missing(["deep3d", "sadtalker", "syncnet"]) == ["sadtalker", "syncnet"]
    assert resolve("deep3d") == tmp_path / "deep3d" / "epoch_20.pth"


# ---- conversion ------------------------------------------------------------------------------------------------------
def test_pth_conversion_round_trip_and_freshness(tmp_path):
    from nerffs.face3d.recon import read_deep3d_state_dict

    state = {"fc.weight": torch.randn(4, 3), "fc.bias": torch.randn(4)}
    original = asset_path("deep3d", tmp_path)
    save_torch_zip(original, {"net_recon": state, "epoch": 20, "opt": {"lr": 1e-4}})
    out = convert("deep3d", tmp_path)
    assert out == original.with_name("epoch_20.safetensors")
    record = json.loads(original.with_name("epoch_20.convert.json").read_text())
    assert record["source_key"] == "net_recon" and record["source_size"] == str(original.stat().st_size)
    assert record["source_sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    loaded = read_deep3d_state_dict(out)  # the project's loader accepts the converted file
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert resolve("deep3d", tmp_path) == out
    assert convert("deep3d", tmp_path) == out  # fresh: not redone
    save_torch_zip(original, {"net_recon": {**state, "extra": torch.ones(5)}})  # a different file now
    assert resolve("deep3d", tmp_path) == original  # stale conversion is not preferred
    convert("deep3d", tmp_path)
    assert resolve("deep3d", tmp_path) == out
    original.unlink()
    assert resolve("deep3d", tmp_path) == out  # only the converted form left: still usable
    assert check(tmp_path, names=["deep3d"])[0].state == "present"


def test_audio2exp_pth_converts_to_the_bundle_layout(tmp_path):
    from nerffs.audio.audio2exp import Audio2Exp, load_audio2exp

    model = Audio2Exp()
    save_torch_zip(asset_path("audio2exp_pth", tmp_path), {"model": model.state_dict(), "epoch": 300})
    out = convert("audio2exp_pth", tmp_path)
    assert out.suffix == ".safetensors"
    loaded = load_audio2exp(out)  # read as a SadTalker bundle: every name carries 'audio2exp.'
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_unsafe_pth_is_refused_and_nothing_written(tmp_path):
    original = asset_path("lipaintnet", tmp_path)
    save_torch_zip(original, {"model_state_dict": {"w": torch.zeros(1)}, "cfg": Path("needs/code")})
    with pytest.raises(CheckpointError, match="unsafe"):
        convert("lipaintnet", tmp_path)
    assert sorted(p.name for p in original.parent.iterdir()) == ["LipaintNet.pt"]


def test_mat_and_safetensors_are_kept_as_is(tmp_path):
    from scipy.io import savemat

    path = asset_path("bfm_front", tmp_path)
    path.parent.mkdir(parents=True)
    savemat(str(path), {"meanshape": [[1.0, 2.0, 3.0]]})
    assert convert("bfm_front", tmp_path) is None
    assert resolve("bfm_front", tmp_path) == path
    assert check(tmp_path, names=["bfm_front"])[0].state == "present"
    with pytest.raises(WeightsMissingError, match="download_weights sadtalker"):
        convert("sadtalker", tmp_path)


def _official_pickle_helper():
    """tests/stylenerf/official_pickle.py, loaded by file location (no sys.path change)."""
    if "official_pickle" in sys.modules:
        return sys.modules["official_pickle"]
    spec = importlib.util.spec_from_file_location("official_pickle", TESTS / "stylenerf" / "official_pickle.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["official_pickle"] = module  # dataclasses in the helper look their module up here
    spec.loader.exec_module(module)
    return module


def test_stylenerf_pickle_conversion_round_trip(tmp_path):
    from stylenerf.io import load_generator_state

    pkl = asset_path("stylenerf_ffhq256", tmp_path)
    pkl.parent.mkdir(parents=True)
    values = _official_pickle_helper().write_official_pickle(pkl, "ffhq256-pixelshuffle-F64", seed=4)
    assert check(tmp_path, names=["stylenerf_ffhq256"])[0].state == "present"  # reads through stylenerf.legacy
    assert resolve("stylenerf_ffhq256", tmp_path) == pkl
    out = convert("stylenerf_ffhq256", tmp_path)
    assert out == pkl.with_name("ffhq_256.converted") and (out / "config.json").is_file()
    assert resolve("stylenerf_ffhq256", tmp_path) == out
    cfg, state = load_generator_state(out)
    assert cfg.img_resolution == 256 and set(state) == set(values)
    assert all(torch.equal(state[k], values[k]) for k in values)
    with open(pkl, "ab") as f:  # a different pickle now (size changed): the conversion is stale
        f.write(b"\0")
    assert resolve("stylenerf_ffhq256", tmp_path) == pkl


def test_interrupted_stylenerf_conversion_is_ignored(tmp_path):
    from safetensors.torch import save_file

    pkl = asset_path("stylenerf_ffhq512", tmp_path)
    pkl.parent.mkdir(parents=True)
    pkl.write_bytes(b"stand-in pickle")
    out = pkl.with_name("ffhq_512.converted")
    out.mkdir()
    save_file({"x": torch.zeros(1)}, str(out / "model.safetensors"), metadata={"source_size": str(pkl.stat().st_size)})
    assert resolve("stylenerf_ffhq512", tmp_path) == pkl  # no config.json yet: the conversion did not finish
    (out / "config.json").write_text("{}")
    assert resolve("stylenerf_ffhq512", tmp_path) == out
