"""One default generator everywhere, --generator, and what `auto` says when it falls back (issue #16, item 4)."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from nerffs.errors import IncompleteWeightsError, InputError
from nerffs.models import GENERATORS, auto_models, generator_asset, official_models, official_names
from nerffs.weights import DEFAULT_PROVIDERS, fetch_command

ROOT = Path(__file__).resolve().parents[2]


def test_one_default_generator_everywhere():
    default = DEFAULT_PROVIDERS["generator"]
    assert default == "stylenerf_ffhq512" == generator_asset(None) == official_names()[0]
    res = subprocess.run([sys.executable, "-m", "scripts.download_weights", "--list"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    marked = [line.split()[0] for line in res.stdout.splitlines() if line.split() and line.split()[0].endswith("*")]
    assert [m for m in marked if m.startswith("stylenerf")] == [default + "*"]
    assert {generator_asset(r) for r in (256, "512", "1024px")} == set(GENERATORS.values())
    assert generator_asset("stylenerf_ffhq1024") == "stylenerf_ffhq1024"
    with pytest.raises(InputError, match="choose 256, 512 or 1024"):
        generator_asset(768)


def test_generator_choice_names_its_file(tmp_path):
    with pytest.raises(IncompleteWeightsError) as info:
        official_models(tmp_path, generator=1024)
    assert info.value.missing[0] == "stylenerf_ffhq1024" and "ffhq_1024.pkl" in str(info.value)
    from scripts import talk

    ns = talk.build_parser().parse_args(["--example", "--out", "o.mp4", "--generator", "1024"])
    assert generator_asset(ns.generator) == "stylenerf_ffhq1024"


def test_auto_fallback_lists_each_missing_file_and_what_it_does(tmp_path, monkeypatch, caplog):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("NERFFS_WEIGHTS", str(weights))
    with caplog.at_level(logging.WARNING, logger="nerffs.models"):
        models = auto_models()
    assert models.label == "offline"
    [record] = [r for r in caplog.records if "incomplete" in r.getMessage()]
    text = record.getMessage()
    lines = text.splitlines()
    assert "using the OFFLINE demo models instead" in lines[0] and "5 missing" in lines[0]
    names = official_names()
    assert len(lines) == 2 + len(names)  # the summary, one line per missing file, how to fetch them
    for name, line in zip(names, lines[1:]):
        assert line.startswith("  - ") and f"({name}):" in line
    assert "renders the face" in lines[1] and "Audio2Exp" in lines[2] and "LipaintNet" in lines[5]
    assert fetch_command(names) in lines[-1]
