"""Shared pytest configuration: markers, deterministic numerics, device and weights helpers.

Markers (registered here because the fixed top level has no pyproject.toml):

* ``cuda``: needs a CUDA device; skipped cleanly when ``torch.cuda.is_available()`` is false.
* ``weights(*names)``: needs official weight files (names relative to the weights directory,
  ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights``); skipped when any is missing.
* ``slow``: takes more than a few seconds on 2 CPU cores; runs by default, deselect with ``-m "not slow"``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")
    config.addinivalue_line("markers", "weights(*names): needs official weight files (skipped when absent)")
    config.addinivalue_line("markers", "slow: slow on CPU; deselect with -m 'not slow'")


def weights_dir() -> Path:
    """The directory official weights are looked up in (same rule as the library's registry)."""
    return Path(os.environ.get("NERFFS_WEIGHTS", Path.home() / ".cache" / "nerffs" / "weights")).expanduser()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    for item in items:
        if item.get_closest_marker("cuda") is not None and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        marker = item.get_closest_marker("weights")
        if marker is not None:
            missing = [n for n in marker.args if not (weights_dir() / n).exists()]
            if missing or not marker.args:
                item.add_marker(pytest.mark.skip(reason=f"official weights missing: {missing or 'unnamed'}"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Caches (per-face results, op builds) go to a per-session temporary directory, never the user's."""
    old = os.environ.get("NERFFS_CACHE")
    os.environ["NERFFS_CACHE"] = str(tmp_path_factory.mktemp("nerffs_cache"))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("NERFFS_CACHE", None)
        else:
            os.environ["NERFFS_CACHE"] = old


@pytest.fixture(autouse=True)
def _deterministic_numerics():
    """TF32 off and fixed seeds so float tolerances in tests mean what they say."""
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    np.random.seed(0)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for a module of many tiny ops (on a busy 2-core box OpenMP spin-waits made such loops
    up to 10x slower); the previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def cuda_device() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    return torch.device("cuda")
