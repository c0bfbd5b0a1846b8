"""End-to-end runs of the talking-head pipeline with the smoke models, a real photo and real speech."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from nerffs.examples import example_photo, example_speech
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.render.video import ffmpeg_exe, read_metadata, read_video

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return example_speech(tmp_path_factory.mktemp("audio") / "hi.wav", text="Hi there, nice to meet you.")


@pytest.fixture(scope="module")
def pipe():
    return TalkingHeadPipeline.from_pretrained("smoke")


def _has_audio_stream(path):
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return any("Audio:" in line for line in res.stderr.splitlines())


@pytest.mark.slow
def test_video_has_audio_expected_frames_and_provenance(pipe, speech, tmp_path):
    out = pipe(example_photo(), speech, tmp_path / "talk.mp4", show_progress=False)
    samples = len(soundfile.read(str(speech))[0]) * 16000 // soundfile.info(str(speech)).samplerate
    frames, fps = read_video(out.video)
    assert fps == 25 and out.num_frames == frames.shape[0]
    assert abs(out.num_frames - samples // 640) <= 1  # 16 kHz resampling may round one sample
    assert frames.shape[1:] == (128, 128, 3)
    assert _has_audio_stream(out.video)
    tags = read_metadata(out.video)
    assert "synthetic" in tags["comment"] and "smoke" in tags["comment"]
    assert out.exp.shape == (out.num_frames, 64) and out.cams.shape == (out.num_frames, 4, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]  # nothing half-written left around


@pytest.mark.slow
def test_frames_dir_resume_renders_only_the_missing_frames(pipe, speech, tmp_path, caplog):
    """Resume must read frames 0..K-1 from the store and render only K..T-1.

    Frames 0..K-1 are replaced by solid grey markers that rendering could never produce: the resumed video
    must show the markers there (read, not re-rendered), the marker files must be untouched, and only the
    deleted frames are written again, matching the first run.
    """
    import logging

    from PIL import Image

    frames_dir, keep = tmp_path / "frames", 10
    first = pipe(example_photo(), speech, tmp_path / "a.mp4", show_progress=False, frames_dir=str(frames_dir))
    pngs = sorted(frames_dir.glob("*.png"))
    assert len(pngs) == first.num_frames > keep + 5
    rendered = {p.name: np.asarray(Image.open(p).convert("RGB")) for p in pngs}
    markers = {}
    for i, p in enumerate(pngs[:keep]):
        Image.fromarray(np.full((128, 128, 3), 40 + 15 * i, np.uint8)).save(p)
        markers[p.name] = (p.read_bytes(), p.stat().st_mtime_ns)
    for p in pngs[keep:]:
        p.unlink()
    with caplog.at_level(logging.INFO, logger="nerffs"):
        second = pipe(example_photo(), speech, tmp_path / "b.mp4", show_progress=False, frames_dir=str(frames_dir),
                      resume=True)
    assert f"resuming after {keep} rendered frames" in caplog.text
    assert f"rendering {first.num_frames - keep} frames" in caplog.text
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(frames_dir.glob("*.png"))[:keep]} \
        == markers  # the kept frames were only read
    rewritten = sorted(frames_dir.glob("*.png"))[keep:]
    assert [p.name for p in rewritten] == [p.name for p in pngs[keep:]]
    for p in rewritten:  # the missing frames were rendered again, as in the first run
        assert np.abs(np.asarray(Image.open(p).convert("RGB")).astype(int) - rendered[p.name]).max() <= 1, p.name
    a, _ = read_video(first.video)
    b, _ = read_video(second.video)
    assert a.shape == b.shape
    for i in range(keep):  # the video carries the markers: frames 0..K-1 came from the store
        assert np.abs(b[i].astype(int) - (40 + 15 * i)).mean() < 3, i
    assert np.abs(a[keep + 2:].astype(int) - b[keep + 2:].astype(int)).mean() < 1.0


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "scripts.talk", *map(str, args), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _one_line_error(res):
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    return len(errors) == 1 and "Traceback" not in res.stderr


@pytest.mark.slow
def test_talk_cli_example_makes_a_video(tmp_path):
    out = tmp_path / "example.mp4"
    res = _cli("--example", "--models", "smoke", "--out", out)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(out)
    wav = tmp_path / "example_speech.wav"  # --example writes the espeak-ng speech beside the video
    samples = len(soundfile.read(str(wav))[0]) * 16000 // soundfile.info(str(wav)).samplerate
    frames, fps = read_video(out)
    assert fps == 25 and abs(frames.shape[0] - samples // 640) <= 1 and frames.shape[0] > 50
    assert frames.shape[1:] == (128, 128, 3) and frames.std() > 1.0
    assert _has_audio_stream(out)
    assert "smoke" in read_metadata(out)["comment"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example.mp4", "example_speech.wav"]


@pytest.mark.slow
def test_cli_error_paths(speech, tmp_path):
    noise = tmp_path / "noise.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)).save(noise)
    bad_audio = tmp_path / "bad.wav"
    bad_audio.write_text("not audio")
    empty = tmp_path / "weights"
    empty.mkdir()
    cases = {
        "no face": (_cli(noise, speech, "--out", tmp_path / "a.mp4", "--weights", "smoke"), "no face"),
        "bad audio": (_cli(example_photo(), bad_audio, "--out", tmp_path / "b.mp4", "--weights", "smoke"), "audio"),
        "missing weights": (_cli(example_photo(), speech, "--out", tmp_path / "c.mp4", "--weights", empty),
                            "download_weights"),
        "unwritable": (_cli(example_photo(), speech, "--out", "/proc/nerffs/x.mp4", "--weights", "smoke"),
                       "cannot write"),
    }
    for name, (res, needle) in cases.items():
        assert res.returncode == 1, (name, res.stderr)
        assert _one_line_error(res) and needle in res.stderr, (name, res.stderr)
    assert not any(tmp_path.glob("*.mp4"))
    usage = _cli("--out", tmp_path / "d.mp4")
    assert usage.returncode == 2 and "--example" in usage.stderr


@pytest.mark.slow
def test_video_driven_mode_takes_length_and_expression_from_the_clip(pipe, tmp_path):
    from nerffs.preprocess.image import load_image
    from nerffs.render.video import write_video

    photo = load_image(example_photo())
    clip = [np.roll(photo, shift, axis=1) for shift in range(0, 40, 5)]  # 8 frames of a moving face
    clip_path = write_video(clip, tmp_path / "drive.mp4", fps=25)
    out = pipe(example_photo(), None, tmp_path / "vd.mp4", show_progress=False, expression="driving",
               camera=f"driving:{clip_path}")
    frames, _ = read_video(out.video)
    assert out.num_frames == frames.shape[0] == 8
    assert not _has_audio_stream(out.video)
    # Expressions come from the clip (Deep3D per frame), not from Audio2Exp: they vary with the frames.
    assert out.exp.shape == (8, 64) and (out.exp[0] - out.exp[-1]).abs().max() > 0
    assert pipe.config.render.expression == "audio"  # per-call options do not stick to the pipeline


@pytest.mark.slow
def test_second_run_reuses_the_per_face_cache(pipe, speech, tmp_path, caplog):
    import logging

    opts = dict(show_progress=False, cache_dir=str(tmp_path / "cache"))
    first = pipe(example_photo(), speech, tmp_path / "1.mp4", **opts)
    with caplog.at_level(logging.INFO, logger="nerffs.pipeline"):
        second = pipe(example_photo(), speech, tmp_path / "2.mp4", **opts)
    assert any("reused the cached" in r.message for r in caplog.records)
    a, _ = read_video(first.video)
    b, _ = read_video(second.video)
    assert np.array_equal(a, b)
    other_seed = pipe(example_photo(), speech, tmp_path / "3.mp4", seed=1, **opts)  # a new identity: no reuse
    assert len(list((tmp_path / "cache").glob("reference-*.json"))) == 2
    assert other_seed.num_frames == first.num_frames


@pytest.mark.slow
def test_paste_back_and_watermark(pipe, speech, tmp_path):
    from nerffs.preprocess.image import load_image

    photo = load_image(example_photo())
    out = pipe(example_photo(), speech, tmp_path / "p.mp4", show_progress=False, paste_back=True, watermark=True)
    frames, _ = read_video(out.video)
    assert frames.shape[1:] == photo.shape  # the face is pasted into the full photo
    # Far from the face the photo is untouched (up to video compression); the top-left corner carries the
    # dark watermark band.
    assert np.abs(frames[0, 400:, 400:].astype(int) - photo[400:, 400:].astype(int)).mean() < 6
    assert frames[0, :8, :40].mean() < photo[:8, :40].mean() - 20


@pytest.mark.slow
def test_pti_identity_is_used_and_cached(pipe, speech, tmp_path, caplog):
    import logging

    opts = dict(show_progress=False, source="pti", inversion_preset="smoke", cache_dir=str(tmp_path / "c"))
    base_state = {k: v.clone() for k, v in pipe.models.talking.generator.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="nerffs.pipeline"):
        first = pipe(example_photo(), speech, tmp_path / "a.mp4", **opts)
        second = pipe(example_photo(), speech, tmp_path / "b.mp4", **opts)
    messages = [r.message for r in caplog.records]
    assert any("PTI inversion (smoke preset)" in m for m in messages)
    assert any("PTI inversion (smoke preset, from cache)" in m for m in messages)
    sampled = pipe(example_photo(), speech, tmp_path / "c.mp4", show_progress=False, source="sample")
    assert not np.allclose(first.ws.numpy(), sampled.ws.numpy())
    assert np.array_equal(first.ws.numpy(), second.ws.numpy())
    # The pipeline's own generator is never tuned in place.
    for k, v in pipe.models.talking.generator.state_dict().items():
        assert np.array_equal(v.numpy(), base_state[k].numpy()), k
