"""Driving frames: reading folders and videos, and per-frame Deep3D estimates with the hold-previous rule.

Uses the real dlib detector, the real ffmpeg, and a Deep3D regressor with seeded random weights (so only
shapes, validity flags and the hold rule are checked, not pose accuracy).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from nerffs.driving import (DrivingSequence, count_driving_frames, driving_fps, estimate_driving,
                            list_driving_images, natural_key, read_driving_frames)
from nerffs.errors import InputError, NoFaceError
from nerffs.face3d.recon import Deep3DConfig, Deep3DRegressor
from nerffs.face3d.resnet import ResNetConfig
from nerffs.preprocess import DlibLandmarks
from nerffs.render.video import write_video

VALID = [False, True, True, True, False, True]  # which of the test frames show a face


def _shift(img: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.full_like(img, 128)
    h, w = img.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = img[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """Blank, astronaut, shifted, rotated, blank, mirrored: [512, 512, 3] uint8 each."""
    face = data.astronaut()
    blank = np.full_like(face, 128)
    rotated = np.asarray(Image.fromarray(face).rotate(12, resample=Image.Resampling.BILINEAR,
                                                       fillcolor=(128, 128, 128)))
    return [blank, face, _shift(face, 40, 24), rotated, blank.copy(), face[:, ::-1].copy()]


@pytest.fixture(scope="module")
def detector() -> DlibLandmarks:
    return DlibLandmarks().load()


@pytest.fixture(scope="module")
def regressor() -> Deep3DRegressor:
    """ResNet-18 trunk (fast on CPU) with the official seven heads; seeded random weights, training mode."""
    torch.manual_seed(1234)
    return Deep3DRegressor(Deep3DConfig(backbone=ResNetConfig.resnet18()))


@pytest.fixture(scope="module")
def estimate(frames: list[np.ndarray], detector: DlibLandmarks, regressor: Deep3DRegressor) -> DrivingSequence:
    return estimate_driving(frames, detector, regressor, fps=30.0, show_progress=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, frames: list[np.ndarray]) -> Path:
    """The frames as frame_8.png .. frame_13.png (natural order differs from string order), plus a note."""
    root = tmp_path_factory.mktemp("driving")
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(root / f"frame_{i + 8}.png")
    (root / "notes.txt").write_text("not a frame")
    return root


def test_estimate_shapes_flags_and_hold_previous(estimate: DrivingSequence) -> None:
    assert len(estimate) == 6 and estimate.fps == 30.0
    assert estimate.angles.shape == (6, 3) and estimate.exp.shape == (6, 64) and estimate.trans.shape == (6, 3)
    assert estimate.valid.tolist() == VALID
    assert all(torch.isfinite(t).all() for t in (estimate.angles, estimate.exp, estimate.trans))
    # Frames with faces get their own (distinct) estimates, so equal rows below are the hold rule, not chance.
    faces = estimate.exp[[1, 2, 3, 5]]
    assert torch.cdist(faces, faces).add(torch.eye(4)).min() > 0
    for name in ("angles", "exp", "trans"):
        values = getattr(estimate, name)
        assert torch.equal(values[0], values[1])  # leading blank takes the first valid frame
        assert torch.equal(values[4], values[3])  # blank takes the previous frame
    assert not estimate.angles.requires_grad


def test_estimate_is_batch_independent_and_restores_mode(frames: list[np.ndarray], detector: DlibLandmarks,
                                                         regressor: Deep3DRegressor,
                                                         estimate: DrivingSequence) -> None:
    assert regressor.training  # estimate_driving ran it in eval mode and gave the mode back
    again = estimate_driving(iter(frames), detector, regressor, batch_size=2, show_progress=False)
    torch.testing.assert_close(again.exp, estimate.exp, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(again.angles, estimate.angles, atol=1e-5, rtol=1e-4)


def test_no_face_anywhere_and_no_frames(frames: list[np.ndarray], detector: DlibLandmarks,
                                        regressor: Deep3DRegressor) -> None:
    with pytest.raises(NoFaceError, match="2 driving frames") as info:
        estimate_driving([frames[0], frames[4]], detector, regressor, show_progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="no driving frames"):
        estimate_driving([], detector, regressor, show_progress=False)
    with pytest.raises(InputError, match="fps"):
        estimate_driving(frames, detector, regressor, fps=0.0, show_progress=False)


def test_folder_reads_images_in_natural_order(folder: Path, frames: list[np.ndarray]) -> None:
    assert [p.name for p in list_driving_images(folder)] == [f"frame_{i}.png" for i in range(8, 14)]
    got = list(read_driving_frames(folder))
    assert len(got) == count_driving_frames(folder) == 6
    for a, b in zip(got, frames):
        assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert driving_fps(folder) == 25.0
    assert sorted(["f10", "f9", "F1"], key=natural_key) == ["F1", "f9", "f10"]


def test_video_reads_back_the_same_frames(tmp_path: Path, frames: list[np.ndarray]) -> None:
    video = write_video(frames, tmp_path / "clip.mp4", fps=30.0)
    assert count_driving_frames(video) == 6
    assert driving_fps(video) == pytest.approx(30.0)
    got = list(read_driving_frames(video))
    assert len(got) == 6 and all(f.shape == (512, 512, 3) and f.dtype == np.uint8 for f in got)
    # Lossy, but frame i is still frame i: closest to its own source among all frames.
    for i, frame in enumerate(got):
        errors = [np.abs(frame.astype(np.int16) - src).mean() for src in frames]
        assert int(np.argmin(errors)) == i or errors[i] == min(errors)


def test_single_image_is_a_one_frame_clip(folder: Path) -> None:
    path = folder / "frame_9.png"
    assert count_driving_frames(path) == 1 and len(list(read_driving_frames(path))) == 1


def test_bad_sources_raise_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no frames here")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video")
    cases = [(empty, "no .jpg"), (text, "cannot read driving video"), (tmp_path / "missing.mp4", "does not exist")]
    for path, message in cases:
        for call in (read_driving_frames, count_driving_frames):
            with pytest.raises(InputError, match=message) as info:
                call(path)
            assert "\n" not in str(info.value), str(info.value)
