"""CPBD ranks a sharp photo above its blurred copies."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

pytest.importorskip("cpbd", reason="pip install --no-deps cpbd-py312==1.0.3")

from nerffs.examples import example_photo  # noqa: E402
from nerffs.metrics.cpbd import cpbd_score, sample_indices, video_cpbd  # noqa: E402
from nerffs.preprocess.image import load_image  # noqa: E402


def test_sharp_above_blurred():
    img = load_image(example_photo())[64:320, 128:384]  # 256^2 around the face: 16 CPBD blocks
    blurred = [np.stack([gaussian_filter(img[..., c].astype(float), s) for c in range(3)], -1).astype(np.uint8)
               for s in (1.0, 2.0)]
    sharp, b1, b2 = cpbd_score(img), cpbd_score(blurred[0]), cpbd_score(blurred[1])
    assert sharp > b1 > b2
    assert 0.0 <= b2 and sharp <= 1.0


def test_video_cpbd_samples_frames():
    assert sample_indices(30, 4).tolist() == [0, 10, 19, 29]
    frames = np.zeros((5, 32, 32, 3), np.uint8)  # smaller than one block: defined as 0
    assert video_cpbd(frames, 2) == 0.0
