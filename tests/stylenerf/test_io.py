"""Converted generator files and the converter CLI (stylenerf.io, scripts/convert_stylenerf.py)."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from official_pickle import official_shapes, write_official_pickle

from stylenerf.config import get_preset
from stylenerf.io import (CONFIG_NAME, WEIGHTS_NAME, GeneratorCheckpointError, convert_official_pickle,
                          converted_dir_for, load_generator, load_generator_state, save_generator)
from stylenerf.legacy import load_official_generator_state
from torch_utils.files import file_sha256

REPO = Path(__file__).resolve().parents[2]
VARIANT = "ffhq256-pixelshuffle-F64"


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("io") / "ffhq_256.pkl"
    return path, write_official_pickle(path, VARIANT, seed=11)


@pytest.fixture
def converted(official, tmp_path) -> Path:
    return convert_official_pickle(official[0], tmp_path / "converted")


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


# ---- round trips -----------------------------------------------------------------------------------------------------
def test_convert_then_load_gives_identical_tensors_and_config(official, converted):
    pkl, values = official
    assert (converted / CONFIG_NAME).is_file() and (converted / WEIGHTS_NAME).is_file()
    cfg, state = load_generator_state(converted)
    ref_cfg, _ = load_official_generator_state(pkl)
    assert cfg == ref_cfg
    _assert_same(state, values)
    audit = json.loads((converted / "official.json").read_text())
    assert audit["source"]["source_sha256"] == file_sha256(pkl)
    assert audit["g_init_kwargs"]["mapping_kwargs"]["num_layers"] == 8
    assert not list(converted.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_safetensors_header_records_format_and_source(official, converted):
    from safetensors import safe_open

    with safe_open(str(converted / WEIGHTS_NAME), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "nerffs.stylenerf.generator" and meta["format_version"] == "1"
    assert meta["source_sha256"] == file_sha256(official[0]) and meta["source_file"] == "ffhq_256.pkl"


def test_safetensors_file_with_config_beside_it(official, converted):
    _, state = load_generator_state(converted / WEIGHTS_NAME)
    _assert_same(state, official[1])


def test_pickle_prefers_its_converted_directory(tmp_path, caplog):
    pkl = tmp_path / "ffhq_256.pkl"
    values = write_official_pickle(pkl, VARIANT, seed=2)
    out = convert_official_pickle(pkl)
    assert out == converted_dir_for(pkl) == tmp_path / "ffhq_256.converted"
    with caplog.at_level(logging.INFO, logger="stylenerf.io"):
        _, state = load_generator_state(pkl)
    assert "using converted generator" in caplog.text
    _assert_same(state, values)
    # A different pickle under the same name makes the conversion stale: it must be ignored.
    values = write_official_pickle(pkl, "ffhq256-nn_cat-F256", seed=4)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stylenerf.io"):
        cfg, state = load_generator_state(pkl)
    assert "converted from a different file" in caplog.text and cfg.upsampler.mode == "nn_cat"
    _assert_same(state, values)


def test_save_generator_overwrites_atomically(tmp_path):
    cfg = get_preset("tiny")
    first = {"a": torch.zeros(2, 3), "b": torch.arange(4.0)}
    save_generator(cfg, first, tmp_path)
    second = {"a": torch.ones(2, 3), "b": torch.arange(4.0).view(2, 2).t()}  # non-contiguous view is fine
    save_generator(cfg, second, tmp_path, metadata={"note": "x"})
    got_cfg, got = load_generator_state(tmp_path)
    assert got_cfg == cfg
    torch.testing.assert_close(got["b"], second["b"].contiguous())
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]


# ---- errors ----------------------------------------------------------------------------------------------------------
def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_generator_state(tmp_path / "absent")
    save_generator(get_preset("tiny"), {"a": torch.zeros(1)}, tmp_path / "d")
    (tmp_path / "d" / CONFIG_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_generator_state(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        load_generator_state(tmp_path)
    with pytest.raises(GeneratorCheckpointError, match="unsupported generator file type"):
        (tmp_path / "w.pt").write_bytes(b"x")
        load_generator_state(tmp_path / "w.pt")


def test_unreadable_safetensors_and_bad_config(tmp_path):
    save_generator(get_preset("tiny"), {"a": torch.zeros(8)}, tmp_path)
    weights = tmp_path / WEIGHTS_NAME
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(GeneratorCheckpointError, match="unreadable"):
        load_generator_state(tmp_path)
    weights.write_bytes(good)
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    cfg["upsampler"]["colour"] = 1
    (tmp_path / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(GeneratorCheckpointError, match="colour"):
        load_generator_state(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(GeneratorCheckpointError, match="not a valid generator config"):
        load_generator_state(tmp_path)


def test_load_generator_round_trip_and_mismatches(official, converted, tmp_path):
    model = load_generator(converted)
    assert not model.training
    _assert_same(model.state_dict(), official[1])
    _assert_same(load_generator(official[0]).state_dict(), official[1])  # straight from the pickle
    cfg, state = load_generator_state(converted)
    shapes = official_shapes(VARIANT)
    assert sorted(model.state_dict()) == sorted(shapes)

    partial = dict(state)
    del partial["mapping.fc3.bias"]
    save_generator(cfg, {**partial, "mapping.extra": torch.zeros(1)}, tmp_path / "partial")
    with pytest.raises(GeneratorCheckpointError, match=r"1 missing \(mapping\.fc3\.bias\); 1 unexpected"):
        load_generator(tmp_path / "partial")
    loose = load_generator(tmp_path / "partial", strict=False)
    torch.testing.assert_close(loose.state_dict()["mapping.fc2.bias"], state["mapping.fc2.bias"])

    save_generator(cfg, {**state, "synthesis.b64.torgb.bias": torch.zeros(4)}, tmp_path / "shape")
    with pytest.raises(GeneratorCheckpointError, match=r"wrong shape.*synthesis\.b64\.torgb\.bias \[4\] vs \[3\]"):
        load_generator(tmp_path / "shape", strict=False)


# ---- CLI ------------------------------------------------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.convert_stylenerf", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_help():
    result = _cli("--help")
    assert result.returncode == 0
    assert "--dump-sources" in result.stdout and "never executed" in result.stdout


def test_cli_bad_path_is_one_line_and_exit_1(tmp_path):
    result = _cli(str(tmp_path / "missing.pkl"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.pkl" in lines[0]


def test_cli_refuses_malicious_pickle(tmp_path):
    path, marker = tmp_path / "evil.pkl", tmp_path / "payload_ran"
    write_official_pickle(path, VARIANT, evil_global=("os", "system", (f"touch {marker}",)))
    result = _cli(str(path), "-q")
    assert result.returncode == 1 and "os.system" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()


def test_cli_converts_and_dumps_sources(official, tmp_path):
    out, sources = tmp_path / "out", tmp_path / "sources"
    result = _cli(str(official[0]), "--out", str(out), "--dump-sources", str(sources))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    _assert_same(load_generator_state(out)[1], official[1])
    index = json.loads((sources / "index.json").read_text())
    assert index["NeRFBlock"] == index["Style2Layer"] != index["SynthesisLayer"]  # one file per module source
    assert "never be executed" in (sources / index["NeRFBlock"]).read_text()
    assert not official[0].with_name(official[0].name + ".executed").exists()
