"""Fixtures of the offline-model tests: the astronaut photo aligned at 512, its fitted portrait and models.

mediapipe is a requirement of the project; the tests skip (with the install command) only where it is absent.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from nerffs.examples import example_photo
from nerffs.preprocess.align import AlignConfig, AlignedFace, align_photo

if importlib.util.find_spec("mediapipe") is None:
    pytest.skip("mediapipe is not installed (pip install --no-deps mediapipe==0.10.21)", allow_module_level=True)


@pytest.fixture(scope="session")
def aligned() -> AlignedFace:
    """The astronaut, FFHQ-aligned at 512 px (the offline field's resolution)."""
    return align_photo(example_photo(), AlignConfig(output_size=512))


@pytest.fixture(scope="session")
def mesh_points(aligned) -> np.ndarray:
    from nerffs.offline.mesh import MediaPipeFace

    return MediaPipeFace().landmarks(aligned.image)


@pytest.fixture(scope="session")
def portrait(aligned):
    from nerffs.offline.portrait import fit_portrait

    return fit_portrait(aligned.image)


@pytest.fixture(scope="session")
def offline(tmp_path_factory):
    from nerffs.offline.models import OfflineModels

    return OfflineModels()


@pytest.fixture(scope="session")
def personal(offline, aligned):
    """The loop's networks fitted to the astronaut (no cache)."""
    return offline.personalise(aligned)
