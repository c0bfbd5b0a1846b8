"""Which face is animated, and how to pick another (issue #16, item 3): ranking, RGBA photos, warnings,
face_index in the library / CLI / app."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerffs.errors import InputError
from nerffs.preprocess.faces import choose_face, detect_faces, face_overlay
from nerffs.preprocess.image import load_image, load_image_layers
from nerffs.utils.packages import package_dir

ROOT = Path(__file__).resolve().parents[3]
FACE_CENTRE = np.array([220.0, 121.0])  # the astronaut's face box centre (HOG), offline-assets.md section 1


def faded_face(astronaut: np.ndarray) -> np.ndarray:
    """RGBA variant of the astronaut: nearly transparent over the face (alpha 8/255 at its centre, opaque 50 px
    out), opaque elsewhere. Over white the face washes out; the mission patch on the suit stays."""
    yy, xx = np.mgrid[:512, :512]
    d = np.hypot(xx - FACE_CENTRE[0], yy - FACE_CENTRE[1]) / 50.0
    alpha = (8 + 247 * np.clip(d, 0, 1) ** 2).astype(np.uint8)
    return np.dstack([astronaut, alpha])


def _centre(face) -> np.ndarray:
    return (face.box[:2] + face.box[2:]) / 2


@pytest.fixture(scope="module")
def t1() -> Path:
    """insightface's t1.jpg (six people), read from the installed package at run time (never committed)."""
    root = package_dir("insightface")
    path = None if root is None else root / "data" / "images" / "t1.jpg"
    if path is None or not path.is_file():
        pytest.skip("needs `pip install --no-deps insightface==2.1` (requirements-dev-nodeps.txt) for t1.jpg")
    return path


def test_rgba_mission_patch_does_not_win(tmp_path, astronaut, dlib_detector):
    rgba = faded_face(astronaut)
    path = tmp_path / "astronaut_rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    # The problem: composited over white, only the mission patch is left to detect.
    composite = dlib_detector.detect_all(load_image(path))
    assert len(composite) == 1 and _centre(composite[0])[1] > 300
    layers = load_image_layers(path)
    assert np.array_equal(layers.rgb, load_image(path)) and layers.alpha is not None
    faces = detect_faces(dlib_detector, layers.rgb, layers.straight, layers.alpha)
    assert np.abs(_centre(faces[0]) - FACE_CENTRE).max() < 6  # the face, found in the colour channels
    assert all(_centre(f)[1] > 300 for f in faces[1:])
    # The pipeline aligns the face, not the patch.
    from nerffs.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    _, aligned = pipe.align(path)
    eyes = aligned.to_original(aligned.points[36:48]).mean(axis=0)
    assert np.abs(eyes - FACE_CENTRE).max() < 25
    opaque = np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)])
    assert load_image_layers(opaque).alpha is None  # opaque RGBA: exactly the old path


def test_demo_photo_is_one_face_and_no_warning(astronaut, dlib_detector, caplog):
    faces = detect_faces(dlib_detector, astronaut)
    with caplog.at_level(logging.INFO, logger="nerffs"):
        choice = choose_face(faces, dlib_detector.confident_score)
    assert np.abs(_centre(choice.face) - FACE_CENTRE).max() < 6
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "animating face 0 of 2 detections" in caplog.text and "[doubtful]" in caplog.text


def test_doubtful_face_warns(astronaut, dlib_detector, caplog):
    semi = np.dstack([astronaut, np.full(astronaut.shape[:2], 20, np.uint8)])  # uniformly 8 % opaque
    layers = load_image_layers(semi)
    faces = detect_faces(dlib_detector, layers.rgb, layers.straight, layers.alpha)
    with caplog.at_level(logging.WARNING, logger="nerffs"):
        choose_face([f for f in faces if f.score < dlib_detector.confident_score], dlib_detector.confident_score)
    assert "doubtful detection" in caplog.text and "--face-index" in caplog.text


def test_group_photo_prefers_a_frontal_face_warns_and_lets_you_pick(t1, dlib_detector, caplog):
    rgb = load_image(t1)
    faces = detect_faces(dlib_detector, rgb)
    assert len(faces) == 6 and all(f.score >= dlib_detector.confident_score for f in faces)
    from nerffs.preprocess.landmarks import frontality

    sizes = [f.area for f in faces]
    assert max(sizes) / min(sizes[:5]) < 1.05  # five faces of about the same size ...
    assert frontality(faces[0]) == max(frontality(f) for f in faces[:5])  # ... face 0 is the most frontal
    with caplog.at_level(logging.WARNING, logger="nerffs"):
        choice = choose_face(faces, dlib_detector.confident_score)
    assert "6 faces found" in caplog.text and "--face-index" in caplog.text and "3 at (" in caplog.text
    assert choice.index == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nerffs"):
        assert choose_face(faces, dlib_detector.confident_score, face_index=3).face is faces[3]
    assert not caplog.records  # asked for: no warning
    with pytest.raises(InputError, match=r"face index 6 is out of range: the photo has 6 face\(s\), numbered 0 to 5"):
        choose_face(faces, dlib_detector.confident_score, face_index=6)
    overlay = face_overlay(rgb, faces, dlib_detector.confident_score, chosen=3)
    assert overlay.shape == rgb.shape and not np.array_equal(overlay, rgb)


@pytest.mark.slow
def test_face_index_reaches_the_pipeline_cli_and_app(t1, tmp_path):
    from nerffs.app_support import face_number, faces_preview, run_options
    from nerffs.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    _, first = pipe.align(t1)
    _, other = pipe.align(t1, face_index=2)
    assert np.abs(first.quad - other.quad).max() > 50  # another person
    pipe.config = pipe.config.replace(face_index=2)  # the library option (as __call__ installs it)
    assert np.array_equal(pipe.align(t1)[1].quad, other.quad)
    overlay, count = faces_preview(pipe, t1, face_index=2)
    assert count == 6 and overlay.shape[2] == 3
    assert face_number(0) is None and face_number(4) == 4 and run_options(
        exp_scale=1.5, momentum=0.5, mask_window=7, blink=True, camera="input", face_index=4)["face_index"] == 4
    with pytest.raises(InputError):
        face_number(-1)
    res = subprocess.run([sys.executable, "-m", "scripts.talk", str(t1), str(t1), "--out", str(tmp_path / "x.mp4"),
                          "--models", "smoke", "--face-index", "-1", "--quiet"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 1 and res.stderr.strip() == \
        "error: --face-index must be a whole number >= 0 (0 = the best face), got -1"
