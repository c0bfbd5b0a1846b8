"""What a run writes: pasted-back videos bounded by max_size (issue #16, item 8) and the animation .npz
(item 11)."""
from __future__ import annotations

import logging
import subprocess

import numpy as np
import pytest
from PIL import Image

from nerffs.preprocess.align import AlignConfig, align_face, fit_photo, paste_back


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from nerffs.examples import example_speech

    return example_speech(tmp_path_factory.mktemp("speech") / "hi.wav", text="Hi there.")


@pytest.fixture(scope="module")
def pipe():
    from nerffs.pipeline import TalkingHeadPipeline

    return TalkingHeadPipeline.from_pretrained("smoke")


def _big_photo(width: int, height: int) -> np.ndarray:
    """The astronaut (upscaled 1.5x) on a larger grey canvas: a photo far larger than the face."""
    from nerffs.examples import example_photo
    from nerffs.preprocess.image import load_image

    face = np.asarray(Image.fromarray(load_image(example_photo())).resize((768, 768), Image.Resampling.LANCZOS))
    canvas = np.full((height, width, 3), 120, np.uint8)
    canvas[100:868, 300:1068] = face
    return canvas


def test_fit_photo_moves_the_alignment_with_the_photo():
    from nerffs.preprocess.landmarks import DlibLandmarks

    photo = _big_photo(1500, 1000)
    aligned = align_face(photo, DlibLandmarks().detect(photo), AlignConfig(output_size=128, min_face_size=64))
    small, moved = fit_photo(photo, aligned, 600)
    assert small.shape == (400, 600, 3) and moved.source_shape == (400, 600)
    assert fit_photo(photo, aligned, 1500)[0] is photo and fit_photo(photo, aligned, None)[1] is aligned
    render = aligned.image
    full = np.asarray(Image.fromarray(paste_back(photo, render, aligned)).resize((600, 400), Image.Resampling.LANCZOS))
    direct = paste_back(small, render, moved)
    assert np.abs(full.astype(int) - direct.astype(int)).mean() < 2.0  # the same picture, pasted at the small size
    eye = aligned.to_original(aligned.points[36:42]).mean(axis=0)
    assert np.allclose(moved.to_original(aligned.points[36:42]).mean(axis=0), (eye + 0.5) * 0.4 - 0.5, atol=1e-6)


def _h264_level(path) -> str:
    from nerffs.render.video import ffmpeg_exe

    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return res.stderr


@pytest.mark.slow
def test_paste_back_of_a_huge_photo_is_bounded_by_max_size(pipe, speech, tmp_path, caplog):
    from nerffs.render.video import read_video

    photo = tmp_path / "big.png"
    Image.fromarray(_big_photo(2400, 1600)).save(photo)
    with caplog.at_level(logging.INFO, logger="nerffs.pipeline"):
        out = pipe(photo, speech, tmp_path / "p.mp4", show_progress=False, paste_back=True)
    frames, _ = read_video(out.video)
    assert frames.shape[1:] == (1280, 1920, 3)  # default max_size 1920, aspect kept, even sides
    assert "the 2400x1600 photo is larger than max_size 1920; frames are 1920x1280" in caplog.text
    assert "1920x1280" in _h264_level(out.video)
    small = pipe(photo, speech, tmp_path / "s.mp4", show_progress=False, paste_back=True, max_size=301)
    assert read_video(small.video)[0].shape[1:] == (200, 300, 3)


@pytest.mark.slow
def test_save_coefficients_matches_the_returned_output(pipe, speech, tmp_path):
    from nerffs.examples import example_photo

    path = tmp_path / "anim" / "talk.npz"
    out = pipe(example_photo(), speech, tmp_path / "t.mp4", show_progress=False, save_coefficients=str(path),
               save_control_points=True, pose="audio")
    assert out.coefficients == path and [p.name for p in path.parent.iterdir()] == ["talk.npz"]  # atomic
    data = np.load(path)  # plain arrays: no pickle needed
    t = out.num_frames
    assert np.array_equal(data["exp"], out.exp.cpu().numpy()) and data["exp"].shape == (t, 64)
    assert np.array_equal(data["cams"], out.cams.cpu().numpy()) and data["cams"].shape == (t, 4, 4)
    assert out.pose is not None and np.array_equal(data["pose"], out.pose.cpu().numpy())
    assert float(data["fps"]) == out.fps and int(data["num_frames"]) == t and str(data["models"]) == "smoke"
    points = data["control_points"]
    assert points.shape[0] == t and points.shape[2] == 2 and points.shape[1] > 100
    assert np.abs(points[1:] - points[:1]).max() > 0  # the driven points move with the speech
    still = pipe(example_photo(), speech, tmp_path / "u.mp4", show_progress=False,
                 save_coefficients=str(tmp_path / "still.npz"))
    assert set(np.load(tmp_path / "still.npz").files) == {"exp", "cams", "fps", "num_frames", "models"}
    assert still.pose is None
