"""dlib-ID: two views of the astronaut are more alike than the astronaut and a different person."""
import numpy as np
import pytest
import torch

from nerffs.errors import WeightsMissingError
from nerffs.examples import example_photo
from nerffs.metrics.identity import (DLIB_SAME_PERSON_L2, ArcFaceIResNet, DlibIdentity, arcface_or_none,
                                     load_arcface)
from nerffs.preprocess.image import load_image
from nerffs.utils.packages import package_dir


def _other_person() -> np.ndarray:
    # A different real person offline: insightface's t1.jpg (6 faces; copyrighted, so it is read from the
    # installed wheel and never committed). offline-assets.md section 1: astronaut vs those faces cos <= 0.894.
    root = package_dir("insightface")
    path = None if root is None else root / "data" / "images" / "t1.jpg"
    if path is None or not path.is_file():
        pytest.skip("needs `pip install --no-deps insightface==2.1` for a second person's photo (t1.jpg)")
    return load_image(path)


def test_dlib_id_same_person_above_different_person():
    ident = DlibIdentity()
    astro = load_image(example_photo())
    darker = (astro.astype(np.float32) * 0.7).astype(np.uint8)      # augmentation 1: exposure
    mirrored = np.ascontiguousarray(darker[:, ::-1])                 # augmentation 2: exposure + mirror
    same_cos, same_l2 = ident.similarity(darker, mirrored)
    other = _other_person()
    diff_cos, diff_l2 = ident.similarity(astro, other)
    assert same_cos > diff_cos
    assert same_l2 < DLIB_SAME_PERSON_L2 < diff_l2
    score = ident.score(astro, np.stack([darker, mirrored]))
    assert score.num_faces == 2 and score.label == "dlib-ID" and score.cosine > 0.95


def test_arcface_network_and_skip_message(tmp_path):
    model = ArcFaceIResNet(layers=(1, 1, 1, 1), width=8, embedding=16).eval()
    assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 16)
    with pytest.raises(WeightsMissingError, match="CSIM is skipped"):
        load_arcface(tmp_path / "missing.pth")
    assert arcface_or_none(tmp_path / "missing.pth") is None
