"""Every CLI's --help works, and the main smoke job writes a playable video."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "scripts").glob("*.py") if p.stem != "__init__")


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_runs(script):
    res = _run(f"scripts.{script}", "--help")
    assert res.returncode == 0, res.stderr
    assert "usage" in res.stdout.lower()


def test_render_views_smoke_writes_video(tmp_path):
    from nerffs.render.video import read_video

    out = tmp_path / "views.mp4"
    res = _run("scripts.render_views", "--out", str(out), "--frames", "6", "--batch", "3")
    assert res.returncode == 0, res.stderr
    assert "SMOKE OUTPUT" in res.stderr
    frames, fps = read_video(out)
    assert frames.shape == (6, 64, 64, 3) and fps == 25
    # Different viewpoints give different frames (random-init foregrounds are faint, so only "not equal").
    assert np.any(frames[0] != frames[3])


def test_render_views_bad_weights_path_is_one_line_error(tmp_path):
    res = _run("scripts.render_views", "--out", str(tmp_path / "x.mp4"), "--weights", str(tmp_path / "nope.pkl"))
    assert res.returncode == 1
    assert res.stderr.strip().startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


def test_render_views_stills_and_talking_orbit(tmp_path):
    from nerffs.examples import example_photo, example_speech

    stills = tmp_path / "stills"
    res = _run("scripts.render_views", "--out", str(tmp_path / "v.mp4"), "--frames", "3", "--stills", str(stills))
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in stills.iterdir()) == ["view_000.png", "view_001.png", "view_002.png"]
    speech = example_speech(tmp_path / "s.wav", text="Hi.")
    res = _run("scripts.render_views", "--talking", str(example_photo()), str(speech), "--weights", "smoke",
               "--out", str(tmp_path / "t.mp4"))
    assert res.returncode == 0, res.stderr
    from nerffs.render.video import read_video

    frames, _ = read_video(tmp_path / "t.mp4")
    assert frames.shape[0] > 5 and np.any(frames[0] != frames[-1])


def test_talk_flags_reach_the_pipeline_options():
    from scripts import talk

    ns = talk.build_parser().parse_args(["p.jpg", "a.wav", "--out", "o.mp4", "--models", "offline", "--momentum",
                                         "0.3", "--transcript", "hi there", "--preview-sheet", "--deform", "official"])
    assert (ns.weights, ns.transcript) == ("offline", "hi there")
    options = talk.options_from_args(ns)
    assert options == {"ref_momentum": 0.3, "preview_sheet": True, "deform_mode": "official"}
    from nerffs.config import get_config

    cfg = get_config("offline").replace(**options)  # every mapped name is a real config field
    assert (cfg.audio.ref_momentum, cfg.render.preview_sheet, cfg.loop.deform_mode) == (0.3, True, "official")
    assert talk.build_parser().parse_args(["--example", "--out", "o.mp4", "--weights", "smoke"]).weights == "smoke"
    ns = talk.build_parser().parse_args(["--example", "--out", "o.mp4", "--pose", "audio", "--pose-scale", "0.5",
                                         "--pose-style", "7", "--head-motion", "camera", "--blink-strength", "1.5"])
    options = talk.options_from_args(ns)
    cfg = get_config("official").replace(**options)
    assert talk.FLAG_NAMES["ref_momentum"] == "--momentum" and talk.FLAG_NAMES["pose_scale"] == "--pose-scale"
    assert (cfg.motion.pose, cfg.motion.pose_scale, cfg.motion.pose_style, cfg.motion.head_motion,
            cfg.audio.blink_strength) == ("audio", 0.5, 7, "camera", 1.5)


@pytest.mark.slow
def test_render_views_orbit_of_a_photo_with_the_offline_models(tmp_path):
    """The orbit of a photo's fitted identity shows a face from every angle (dlib HOG)."""
    from nerffs.examples import example_photo
    from nerffs.bench.offline import detection_rate
    from nerffs.preprocess.landmarks import DlibLandmarks
    from nerffs.render.video import read_metadata, read_video

    out = tmp_path / "orbit.mp4"
    res = _run("scripts.render_views", "--image", str(example_photo()), "--models", "offline", "--frames", "8",
               "--out", str(out))
    assert res.returncode == 0, res.stderr
    frames, _ = read_video(out)
    assert frames.shape == (8, 512, 512, 3) and np.any(frames[0] != frames[2])
    assert detection_rate(frames, DlibLandmarks().load()) == 1.0
    assert "offline demo models" in read_metadata(out)["comment"]
