"""--resume never mixes two jobs: the frames folder's manifest (issue #16, item 2)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nerffs.config import get_config
from nerffs.errors import InputError
from nerffs.render.manifest import JobManifest, check_same_job, frame_settings, read_manifest

ROOT = Path(__file__).resolve().parents[2]


def _job(**settings) -> JobManifest:
    base = frame_settings(get_config("smoke"), seed=0)
    return JobManifest(inputs={"photo": "a" * 64, "speech": "b" * 64}, settings={**base, **settings},
                       models={"set": "smoke", "fingerprint": "f"}, frame_size=[128, 128], num_frames=40)


def test_manifest_names_what_differs_and_ignores_what_does_not_change_frames():
    cfg = get_config("smoke")
    same = frame_settings(cfg.replace(quality=3, preview_sheet=True, batch_size=2, frames_dir="x", resume=True), 0)
    assert same == frame_settings(cfg, 0)  # encoding, previews, batching and paths never change a frame
    assert "render.camera" in same and "seed" in same and "identity.face_index" in same
    recorded = _job()
    assert _job().differences(recorded) == []
    diff = _job(**{"render.camera": "orbit"}).differences(recorded)
    assert diff == ["camera ('input' -> 'orbit')"]
    other = JobManifest(inputs={"photo": "c" * 64, "speech": "b" * 64}, settings=recorded.settings,
                        models={"set": "offline", "fingerprint": "g"}, frame_size=[512, 512], num_frames=40)
    text = "; ".join(other.differences(recorded))
    assert "the photo" in text and "model set (smoke -> offline)" in text and "frame size (128x128 -> 512x512)" in text
    early = JobManifest(inputs=recorded.inputs, settings=recorded.settings, models=recorded.models)
    assert early.differences(recorded) == []  # frame size / count not known yet: not compared
    with pytest.raises(InputError, match=r"belong to another job: camera \('input' -> 'orbit'\).*--restart"):
        check_same_job("frames", _job(**{"render.camera": "orbit"}), recorded)
    with pytest.raises(InputError, match="without a job manifest"):
        check_same_job("frames", recorded, None)
    assert JobManifest.from_json(recorded.to_json()) == recorded


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    from nerffs.examples import example_speech

    return example_speech(tmp_path_factory.mktemp("speech") / "hi.wav", text="Hi there, how are you?")


@pytest.fixture(scope="module")
def pipe():
    from nerffs.pipeline import TalkingHeadPipeline

    return TalkingHeadPipeline.from_pretrained("smoke")


def _state(frames: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(frames.iterdir())}


@pytest.mark.slow
def test_resume_with_other_settings_is_refused_before_anything_is_written(pipe, speech, tmp_path):
    """A job stopped part-way, resumed with another camera or another frame size: refused in one line naming
    the difference, with nothing written; --restart discards the old frames; a same-job resume continues."""
    from nerffs.examples import example_photo
    from nerffs.render.video import read_video

    frames = tmp_path / "frames"
    first = pipe(example_photo(), speech, tmp_path / "a.mp4", show_progress=False, frames_dir=str(frames))
    manifest = read_manifest(frames)
    assert manifest.num_frames == first.num_frames and manifest.frame_size == [128, 128]
    for p in sorted(frames.glob("frame_*.png"))[first.num_frames // 2:]:  # "stopped" half-way
        p.unlink()
    before = _state(frames)
    for options, needle in (({"camera": "orbit"}, "camera ('input' -> 'orbit')"),
                            ({"paste_back": True}, "paste_back (False -> True)"),
                            ({"seed": 3}, "seed (0 -> 3)")):
        seed = options.pop("seed", 0)
        with pytest.raises(InputError, match=re.escape(needle)) as info:
            pipe(example_photo(), speech, tmp_path / "b.mp4", show_progress=False, frames_dir=str(frames),
                 resume=True, seed=seed, **options)
        assert "--restart" in str(info.value) and "\n" not in str(info.value)
        assert _state(frames) == before and not (tmp_path / "b.mp4").exists()
    with pytest.raises(InputError, match="already holds .* frames of a job; continue them with --resume"):
        pipe(example_photo(), speech, tmp_path / "b.mp4", show_progress=False, frames_dir=str(frames))
    assert _state(frames) == before
    # The same job resumes (only the missing half is rendered) ...
    resumed = pipe(example_photo(), speech, tmp_path / "c.mp4", show_progress=False, frames_dir=str(frames),
                   resume=True)
    a, b = read_video(first.video)[0], read_video(resumed.video)[0]
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() < 1.0
    # ... and --restart starts another job from scratch.
    orbit = pipe(example_photo(), speech, tmp_path / "d.mp4", show_progress=False, frames_dir=str(frames),
                 restart=True, camera="orbit")
    assert read_manifest(frames).settings["render.camera"] == "orbit"
    assert len(list(frames.glob("frame_*.png"))) == orbit.num_frames


@pytest.mark.slow
def test_cli_resume_with_another_camera_is_one_line(tmp_path, speech):
    from nerffs.examples import example_photo

    def talk(*args):
        return subprocess.run([sys.executable, "-m", "scripts.talk", str(example_photo()), str(speech), "--models",
                               "smoke", "--quiet", "--frames-dir", str(tmp_path / "f"), *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)

    assert talk("--out", str(tmp_path / "a.mp4")).returncode == 0
    res = talk("--out", str(tmp_path / "b.mp4"), "--resume", "--camera", "fixed:yaw=10deg")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "camera ('input' -> 'fixed:yaw=10deg')" in errors[0], res.stderr
    both = talk("--out", str(tmp_path / "b.mp4"), "--resume", "--restart")
    assert both.returncode == 1 and "--resume and --restart exclude each other" in both.stderr

