"""The weights tool as a library call (nerffs.weights.manage): asset selection, the --list table, and a run that
reports through callbacks, goes on after one asset fails, and returns the exit status."""
from __future__ import annotations

import pytest
import torch

from nerffs.errors import InputError, NerffsError
from nerffs.weights import DEFAULT_PROVIDERS, REGISTRY, asset_path, names_for_features
from nerffs.weights.manage import WeightsJob, asset_table, manage_weights, select_assets


def _place_audio2exp(root) -> None:
    path = asset_path("audio2exp_pth", root)
    path.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(2)}}, path)


def test_select_names_all_and_features(tmp_path):
    assert select_assets(["all"], [], check=False, root=tmp_path) == list(REGISTRY)
    assert select_assets(["sadtalker", "sadtalker"], [], check=False, root=tmp_path) == ["sadtalker"]
    # --check: every provider of the feature; a download: its default provider, unless one is present
    assert select_assets([], ["audio2exp"], check=True, root=tmp_path) == names_for_features(["audio2exp"])
    assert select_assets([], ["audio2exp"], check=False, root=tmp_path) == [DEFAULT_PROVIDERS["audio2exp"]]
    _place_audio2exp(tmp_path)
    assert select_assets([], ["audio2exp"], check=False, root=tmp_path) == []
    for bad in ({"names": ["no_such_asset"]}, {"features": ["teleport"]}, {"also_known": ["nope"]}):
        with pytest.raises(InputError):
            select_assets(bad.get("names", []), bad.get("features", []), check=False, root=tmp_path,
                          also_known=bad.get("also_known", ()))


def test_asset_table_lists_every_asset_and_marks_defaults():
    rows = {line.split()[0] for line in asset_table()[1:] if line.strip() and not line.startswith("*")}
    assert {r.rstrip("*") for r in rows} == set(REGISTRY)
    assert {r[:-1] for r in rows if r.endswith("*")} == set(DEFAULT_PROVIDERS.values())


def test_check_reports_through_emit_and_fails_only_for_named_missing(tmp_path):
    _place_audio2exp(tmp_path)
    lines: list[str] = []
    status = manage_weights(WeightsJob(check=True, root=str(tmp_path)), lines.append, pytest.fail)
    assert status == 0 and lines[0] == f"weights directory: {tmp_path}"
    assert ["audio2exp_pth", "present"] in [line.split()[:2] for line in lines]
    assert any(line.startswith("audio2exp_pth: sha256 ") and line.endswith("(first check)") for line in lines)
    assert any(line.startswith("available features: ") and "audio2exp" in line for line in lines)
    named = WeightsJob(names=["sadtalker"], named=["sadtalker"], check=True, root=str(tmp_path))
    assert manage_weights(named, [].append, pytest.fail) == 1


def test_one_failed_asset_is_reported_and_the_next_goes_on(tmp_path):
    _place_audio2exp(tmp_path)
    lines, errors = [], []
    job = WeightsJob(names=["lipaintnet", "audio2exp_pth"], root=str(tmp_path), show_progress=False)
    assert manage_weights(job, lines.append, errors.append) == 1
    assert len(errors) == 1 and isinstance(errors[0], NerffsError)  # lipaintnet has no URL: how to get it by hand
    assert any(line.startswith("audio2exp_pth: ") for line in lines)  # the present asset was still handled
