"""Fixtures shared by the preprocess tests: the public-domain astronaut photo and one loaded dlib detector."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from nerffs.preprocess import DlibLandmarks, FaceLandmarks


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut photo (Eileen Collins, NASA, public domain), [512, 512, 3] uint8."""
    img = data.astronaut()
    img.setflags(write=False)
    return img


@pytest.fixture(scope="session")
def dlib_detector() -> DlibLandmarks:
    """One dlib detector for the session (loading the 68-point model takes about a second)."""
    return DlibLandmarks().load()


@pytest.fixture(scope="session")
def astronaut_face(astronaut: np.ndarray, dlib_detector: DlibLandmarks) -> FaceLandmarks:
    return dlib_detector.detect(astronaut)
