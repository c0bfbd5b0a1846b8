"""Shared pytest configuration: markers, deterministic numerics, device and weights helpers.

Markers (registered here because the fixed top level has no pyproject.toml):

* ``cuda``: needs a CUDA device; skipped cleanly when ``torch.cuda.is_available()`` is false, with a reason
  that says how to run them (``pytest -m cuda`` on a GPU machine with the CUDA build of the pinned torch).
* ``weights(*names)``: needs official weight files (names relative to the weights directory,
  ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights``); skipped when any is missing.
* ``slow``: takes more than a few seconds on 2 CPU cores; runs by default, deselect with ``-m "not slow"``.

Fixtures beyond the usual: ``official_files`` (session) writes a complete weights directory of synthetic files
in every official format (``tests/official_files.py``) for tests of the official-weights path.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nerffs.weights import weights_dir  # the library's rule: $NERFFS_WEIGHTS, else ~/.cache/nerffs/weights


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one; run them with "
                                       "`pytest -m cuda` on a GPU machine with the CUDA build of torch)")
    config.addinivalue_line("markers", "weights(*names): needs official weight files (skipped when absent)")
    config.addinivalue_line("markers", "slow: slow on CPU; deselect with -m 'not slow'")


CUDA_SKIP_REASON = (f"needs a CUDA device: run `pytest -m cuda` on a machine with a GPU and the CUDA build of "
                    f"torch=={torch.__version__.split('+')[0]} (pip install torch=={torch.__version__.split('+')[0]} "
                    "--index-url https://download.pytorch.org/whl/cu128)")
"""Why ``cuda`` tests skip here, and how to run them."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    has_cuda = torch.cuda.is_available()
    for item in items:
        if item.get_closest_marker("cuda") is not None and not has_cuda:
            item.add_marker(pytest.mark.skip(reason=CUDA_SKIP_REASON))
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
        pytest.skip(CUDA_SKIP_REASON)
    return torch.device("cuda")


@pytest.fixture(scope="session")
def official_files(tmp_path_factory):
    """A complete weights directory of synthetic files in every official format at the registry's paths
    (``tests/official_files.py``; about 170 MB, written once per session in about 2 s)."""
    from tests.official_files import build_official_dir

    return build_official_dir(tmp_path_factory.mktemp("official_weights"))
