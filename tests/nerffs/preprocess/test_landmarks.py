"""Landmark detection with the real dlib model on the astronaut photo, face choice, errors and the FAN adapter."""
from __future__ import annotations

import importlib.machinery
import sys
import types

import numpy as np
import pytest
from PIL import Image
from skimage import data

from nerffs.errors import InputError, NoFaceError, WeightsMissingError
from nerffs.preprocess import (DlibConfig, DlibLandmarks, FaceLandmarks, FanLandmarks, MissingDependencyError,
                               create_detector, detect_landmarks)
from nerffs.preprocess import landmarks as landmarks_module

# Where the HOG detector puts the astronaut's face (offline-assets.md section 1).
ASTRONAUT_FACE_BOX = np.array([175, 76, 265, 166])


def _two_faces(astronaut: np.ndarray) -> np.ndarray:
    """A 300 x 525 picture: the astronaut's head at full size (left) and at 3/4 size (right); no mission patch."""
    head = astronaut[:300, 100:400]
    small = np.asarray(Image.fromarray(head).resize((225, 225), Image.Resampling.LANCZOS))
    canvas = np.full((300, 525, 3), 200, np.uint8)
    canvas[:, :300] = head
    canvas[40:265, 300:] = small
    return canvas


def test_astronaut_68_points_in_face(astronaut_face):
    f = astronaut_face
    assert f.points.shape == (68, 2) and f.points.dtype == np.float64
    np.testing.assert_allclose(f.box, ASTRONAUT_FACE_BOX, atol=4)
    # The jaw line may leave dlib's tight box slightly; everything must lie in the box grown by 20 %.
    lo, hi = f.box[:2], f.box[2:]
    margin = 0.2 * (hi - lo)
    assert ((f.points >= lo - margin) & (f.points <= hi + margin)).all()
    inner = f.points[17:68]  # brows, nose, eyes, mouth
    assert ((inner >= lo) & (inner <= hi + 0.05 * (hi - lo))).all()


def test_astronaut_left_right_and_top_bottom_order(astronaut_face):
    p = astronaut_face.points
    assert p[0, 0] < p[8, 0] < p[16, 0]  # jaw runs left to right through the chin
    left_eye, right_eye = astronaut_face.eye_centers
    assert left_eye[0] < p[30, 0] < right_eye[0]  # nose tip between the eyes
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]  # eye corners left to right
    assert p[48, 0] < p[54, 0]  # mouth corners left to right
    eye_y = (left_eye[1] + right_eye[1]) / 2
    mouth_y = astronaut_face.mouth_corners[:, 1].mean()
    assert p[19, 1] < eye_y < p[30, 1] < mouth_y < p[8, 1]  # brow, eyes, nose tip, mouth, chin
    eye_dist = np.hypot(*(right_eye - left_eye))
    assert 30 < eye_dist < 60  # a plausible inter-ocular distance for a 90 px face


def test_five_points_layout(astronaut_face):
    five = astronaut_face.five_points()
    p = astronaut_face.points
    assert five.shape == (5, 2)
    np.testing.assert_allclose(five[0], (p[36] + p[39]) / 2)
    np.testing.assert_allclose(five[2], p[30])
    assert five[0, 0] < five[2, 0] < five[1, 0] and five[3, 0] < five[4, 0]
    assert five[2, 1] < five[3, 1]


def test_astronaut_false_positive_is_ranked_after_the_face(astronaut, dlib_detector):
    faces = dlib_detector.detect_all(astronaut)
    assert len(faces) >= 1
    np.testing.assert_allclose(faces[0].box, ASTRONAUT_FACE_BOX, atol=4)
    assert all(f.score <= faces[0].score for f in faces)


def test_two_faces_default_index_and_out_of_range(astronaut, dlib_detector):
    canvas = _two_faces(astronaut)
    faces = dlib_detector.detect_all(canvas)
    assert len(faces) == 2
    big = dlib_detector.detect(canvas)
    other = dlib_detector.detect(canvas, face_index=1)
    assert big.box[2] <= 300 and other.box[0] >= 300  # default: the larger face, on the left
    assert big.area > other.area
    np.testing.assert_array_equal(dlib_detector.detect(canvas, face_index=0).points, big.points)
    with pytest.raises(InputError, match=r"face_index=2 is out of range: 2 face\(s\) found; use 0 to 1"):
        dlib_detector.detect(canvas, face_index=2)
    with pytest.raises(InputError, match="out of range"):
        dlib_detector.detect(canvas, face_index=-1)


@pytest.mark.parametrize("image", [
    data.coffee(),
    np.broadcast_to(np.linspace(0, 255, 400, dtype=np.float64).astype(np.uint8)[None, :, None], (300, 400, 3)),
], ids=["coffee", "gradient"])
def test_no_face_is_a_clear_error(image, dlib_detector):
    with pytest.raises(NoFaceError, match="no face found") as info:
        dlib_detector.detect(image)
    assert "\n" not in str(info.value) and "px wide" in str(info.value)


def test_no_face_error_is_an_input_error(dlib_detector):
    assert dlib_detector.detect_all(np.zeros((64, 64, 3), np.uint8)) == []
    with pytest.raises(InputError):
        detect_landmarks(np.zeros((64, 64, 3), np.uint8), detector=dlib_detector)


def test_grayscale_and_file_inputs_match_rgb(tmp_path, astronaut, astronaut_face, dlib_detector):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    f_gray = dlib_detector.detect(gray)
    assert np.abs(f_gray.points - astronaut_face.points).max() <= 3
    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    np.testing.assert_array_equal(dlib_detector.detect(path).points, astronaut_face.points)


def test_large_image_is_detected_downscaled_but_fitted_at_full_resolution(astronaut, astronaut_face,
                                                                          dlib_detector):
    big = np.asarray(Image.fromarray(astronaut).resize((1536, 1536), Image.Resampling.LANCZOS))
    f = dlib_detector.detect(big)  # detection runs at 1024 (max_detect_side)
    # Pixel centres scale as (x + 0.5) * 3 - 0.5.
    expected = (astronaut_face.points + 0.5) * 3 - 0.5
    assert np.median(np.abs(f.points - expected)) < 3.0
    assert f.box[2] - f.box[0] > 200


def test_model_is_loaded_once_and_cached_on_the_object(dlib_detector):
    predictor = dlib_detector._predictor
    assert predictor is not None
    assert dlib_detector.load() is dlib_detector and dlib_detector._predictor is predictor


def test_missing_predictor_file_is_weights_error(tmp_path):
    det = DlibLandmarks(DlibConfig(predictor_path=tmp_path / "absent.dat"))
    with pytest.raises(WeightsMissingError, match="absent.dat"):
        det.load()


def test_missing_models_package_is_weights_error(monkeypatch):
    monkeypatch.setattr(landmarks_module, "package_dir", lambda name: None)
    with pytest.raises(WeightsMissingError, match="pip install face-recognition-models"):
        DlibLandmarks().load()


def test_bad_dlib_config():
    with pytest.raises(InputError, match="upsample"):
        DlibLandmarks(DlibConfig(upsample=-1))
    with pytest.raises(InputError, match="unknown dlib detector"):
        DlibLandmarks(DlibConfig(detector="mtcnn")).load()


def test_landmarks_dataclass_validates_shapes():
    with pytest.raises(InputError, match=r"\[68, 2\]"):
        FaceLandmarks(points=np.zeros((5, 2)), box=np.zeros(4), score=1.0)


@pytest.mark.slow
def test_cnn_detector_agrees_with_hog(astronaut, astronaut_face):
    det = DlibLandmarks(DlibConfig(detector="cnn"))
    f = det.detect(astronaut)
    assert np.median(np.abs(f.points - astronaut_face.points)) < 3.0


# --- optional FAN backend -------------------------------------------------------------------------------------


def test_fan_without_package_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # makes `import face_alignment` fail
    with pytest.raises(MissingDependencyError, match="pip install face-alignment"):
        FanLandmarks().load()
    assert not FanLandmarks.available()


def _fake_face_alignment(tmp_path, calls: list) -> types.ModuleType:
    """A stand-in for the face_alignment package that returns two faces, the smaller first."""
    mod = types.ModuleType("face_alignment")
    mod.__spec__ = importlib.machinery.ModuleSpec("face_alignment", None, is_package=True)
    mod.__spec__.submodule_search_locations = [str(tmp_path)]
    mod.LandmarksType = types.SimpleNamespace(TWO_D=1)

    class FaceAlignment:
        def __init__(self, kind, device, flip_input, face_detector):
            calls.append((kind, device, face_detector))

        def get_landmarks_from_image(self, image, return_bboxes=False):
            small = np.tile([[10.0, 10.0]], (68, 1))
            large = np.tile([[100.0, 100.0]], (68, 1))
            boxes = [np.array([0, 0, 20, 20, 0.99]), np.array([50, 50, 150, 150, 0.98])]
            return [small, large], None, boxes

    mod.FaceAlignment = FaceAlignment
    return mod


def test_fan_without_weights_is_weights_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub_home"))
    monkeypatch.setitem(sys.modules, "face_alignment", _fake_face_alignment(tmp_path, []))
    assert not FanLandmarks.available()
    with pytest.raises(WeightsMissingError, match="2DFAN4"):
        FanLandmarks().load()


def test_fan_adapter_orders_faces_and_converts(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub_home"))
    monkeypatch.setitem(sys.modules, "face_alignment", _fake_face_alignment(tmp_path, calls))
    ckpt = FanLandmarks.checkpoint_dir()
    ckpt.mkdir(parents=True)
    (ckpt / "2DFAN4-cd938726ad.zip").write_bytes(b"x")
    (ckpt / "s3fd-619a316812.pth").write_bytes(b"x")
    assert FanLandmarks.available()
    assert isinstance(create_detector("auto"), FanLandmarks)
    faces = FanLandmarks().detect_all(np.zeros((200, 200, 3), np.uint8))
    assert calls == [(1, "cpu", "sfd")]
    assert [f.box.tolist() for f in faces] == [[50, 50, 150, 150], [0, 0, 20, 20]]  # largest first
    assert faces[0].points.shape == (68, 2) and faces[0].score == pytest.approx(0.98)


def test_create_detector_choices(monkeypatch):
    monkeypatch.setattr(FanLandmarks, "available", classmethod(lambda cls, config=None: False))
    assert isinstance(create_detector(), DlibLandmarks)
    assert isinstance(create_detector("auto"), DlibLandmarks)
    assert isinstance(create_detector("fan"), FanLandmarks)
    with pytest.raises(InputError, match="unknown landmark backend"):
        create_detector("mediapipe")



SHARED_DETECTOR_CHILD = """
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from PIL import Image
from skimage import data
from nerffs.preprocess import DlibLandmarks
detector = DlibLandmarks().load()
photo = data.astronaut()
images = [photo, np.asarray(Image.fromarray(photo).resize((800, 800))), photo[:300, 100:400].copy()]
serial = [detector.detect_all(image) for image in images]
with ThreadPoolExecutor(6) as pool:
    results = list(pool.map(lambda k: (k % 3, detector.detect_all(images[k % 3])), range(60)))
for k, faces in results:
    assert [f.points.tolist() for f in faces] == [f.points.tolist() for f in serial[k]], k
print("ok", len(results))
"""


@pytest.mark.slow
def test_one_detector_shared_by_threads_gives_the_serial_answer():
    """One pipeline serves concurrent calls with one detector. dlib run from several threads at once crashes the
    process (double free / segfault within about a second here), so detection takes turns; every thread must
    get exactly the serial result. Run in a child process so that a crash fails this test, not the session."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", SHARED_DETECTOR_CHILD], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-500:]}"
    assert out.stdout.split() == ["ok", "60"]
