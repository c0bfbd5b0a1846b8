"""The official-weights path end to end: a weights directory of synthetic files in every official format
(``tests/official_files.py``) -> ``TalkingHeadPipeline.from_pretrained(dir)`` / ``scripts.talk --models DIR`` -> mp4.

The files are small (a narrow generator with the official structure, the fixed-size Deep3D / BiSeNet / Audio2Exp
networks) so a run takes seconds; the output is not a face, but every loader, the registry paths and the
provenance metadata of the official path run for real. ``NERFFS_WEIGHTS`` points at the same directory so no
file of the user's own weights directory (e.g. the LPIPS backbones that switch on PTI) can change the run.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile
import torch

from nerffs.audio.audio2pose import load_audio2pose
from nerffs.audio.speech import synthesize_speech
from nerffs.errors import WeightsMissingError
from nerffs.examples import example_photo
from nerffs.models import official_models
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.render.video import ffmpeg_exe, read_metadata, read_video
from nerffs.weights import convert, resolve
from tests.official_files import GENERATOR, OFFICIAL_NAMES, corrupt, link_copy

ROOT = Path(__file__).resolve().parents[2]
CLIP_SECONDS = 0.32  # 8 frames at 25 fps: the per-frame BiSeNet at 512 px dominates the run time on CPU


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    return synthesize_speech(tmp_path_factory.mktemp("speech") / "hi.wav", CLIP_SECONDS, text="Hi.")


@pytest.fixture
def weights_env(official_files, monkeypatch):
    monkeypatch.setenv("NERFFS_WEIGHTS", str(official_files.root))
    return official_files


def _expected_frames(wav: Path) -> int:
    info = soundfile.info(str(wav))
    return int(info.frames * 16000 // info.samplerate) // 640  # 16 kHz, 640 samples per frame at 25 fps


def _audio_streams(video: Path) -> list[str]:
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(video)], capture_output=True, text=True)
    return [line for line in res.stderr.splitlines() if "Audio:" in line]


def _check_video(video: Path, wav: Path, root: Path) -> None:
    frames, fps = read_video(video)
    assert fps == 25 and abs(frames.shape[0] - _expected_frames(wav)) <= 1
    assert frames.shape[1:] == (128, 128, 3)  # the synthetic generator's resolution
    assert frames.std() > 1.0  # something was rendered
    assert len(_audio_streams(video)) == 1
    comment = read_metadata(video)["comment"]
    assert "synthetic" in comment and f"official weights ({root})" in comment


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return set(a) >= set(b) and all(torch.equal(a[k].float(), b[k].float()) for k in b)


# ---- loading -------------------------------------------------------------------------------------------------------
def test_every_loader_reads_exactly_the_tensors_written(official_files, caplog):
    with caplog.at_level(logging.WARNING):
        models = official_models(official_files.root)
    assert models.label == f"official:{official_files.root}" and models.source == "official"
    t, s = models.talking, official_files.states
    assert _same(t.generator.state_dict(), s["generator"])
    assert _same(t.deep3d.state_dict(), s["deep3d"]) and _same(t.parser.state_dict(), s["parser"])
    assert _same(t.lipaint.state_dict(), s["lipaint"]) and _same(models.audio2exp.state_dict(), s["audio2exp"])
    assert _same(load_audio2pose(official_files.paths["sadtalker"]).state_dict(), s["audio2pose"])
    assert t.face_model.num_vertices == 4000 and t.generator.img_resolution == 128
    assert t.parser.config.num_classes == 16
    # The stored kwargs describe the architecture exactly (no shape-over-kwargs fallback), and the module
    # sources embedded in the pickle never ran.
    assert not [r.message for r in caplog.records if r.name.startswith("stylenerf")]
    assert not list(official_files.root.rglob("*.executed"))


def test_converted_forms_load_the_same_weights(official_files, tmp_path):
    paths = link_copy(official_files, tmp_path / "w")
    for name in OFFICIAL_NAMES:
        convert(name, tmp_path / "w")
    assert resolve(GENERATOR, tmp_path / "w") == paths[GENERATOR].with_name("ffhq_512.converted")
    assert resolve("bisenet_seg16", tmp_path / "w").suffix == ".safetensors"
    assert resolve("lipaintnet", tmp_path / "w").suffix == ".safetensors"
    t = official_models(tmp_path / "w").talking
    s = official_files.states
    assert _same(t.generator.state_dict(), s["generator"]) and _same(t.parser.state_dict(), s["parser"])
    assert _same(t.lipaint.state_dict(), s["lipaint"])


def test_auto_uses_complete_official_files_else_the_offline_models(official_files, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NERFFS_WEIGHTS", str(official_files.root))
    assert TalkingHeadPipeline.from_pretrained("auto").models.label == f"official:{official_files.root}"
    link_copy(official_files, tmp_path / "partial", skip=("lipaintnet",))
    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path / "partial"))
    with caplog.at_level(logging.WARNING, logger="nerffs.pipeline"):
        pipe = TalkingHeadPipeline.from_pretrained("auto")
    assert pipe.models.source == "offline"
    assert "LipaintNet.pt" in caplog.text and "OFFLINE" in caplog.text


# ---- a whole run ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_from_official_dir_makes_a_video(weights_env, speech, tmp_path):
    pipe = TalkingHeadPipeline.from_pretrained(weights_env.root)
    out = pipe(example_photo(), speech, tmp_path / "talk.mp4", show_progress=False)
    assert out.weights == f"official:{weights_env.root}"
    assert out.num_frames == _expected_frames(speech)
    _check_video(out.video, speech, weights_env.root)
    assert [p.name for p in tmp_path.iterdir()] == ["talk.mp4"]


def _talk(*args, root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.talk", *map(str, args), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NERFFS_WEIGHTS": str(root)})


@pytest.mark.slow
def test_talk_cli_with_models_dir_makes_a_video(official_files, speech, tmp_path):
    video = tmp_path / "cli.mp4"
    res = _talk(example_photo(), speech, "--models", official_files.root, "--out", video, root=official_files.root)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == str(video)
    _check_video(video, speech, official_files.root)


# ---- broken directories --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_missing_file_is_one_line_naming_it(official_files, tmp_path, name):
    paths = link_copy(official_files, tmp_path / "w", skip=(name,))
    with pytest.raises(WeightsMissingError) as info:
        TalkingHeadPipeline.from_pretrained(tmp_path / "w")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert str(paths[name]) in message and f"--dir {tmp_path / 'w'}" in message
    assert [n for n in OFFICIAL_NAMES if str(paths[n]) in message] == [name]


def test_missing_directory_is_one_line(tmp_path):
    with pytest.raises(WeightsMissingError, match="does not exist") as info:
        TalkingHeadPipeline.from_pretrained(tmp_path / "no_such_dir")
    assert len(str(info.value).splitlines()) == 1 and "'offline'" in str(info.value)


@pytest.mark.parametrize("name", OFFICIAL_NAMES)
def test_corrupt_file_is_one_line_naming_it(official_files, tmp_path, name):
    paths = link_copy(official_files, tmp_path / "w", skip=(name,))
    paths[name].write_bytes(official_files.paths[name].read_bytes())
    corrupt(paths[name])
    with pytest.raises(Exception) as info:  # noqa: PT011 - each format has its own error type
        TalkingHeadPipeline.from_pretrained(tmp_path / "w")
    message = str(info.value)
    assert len(message.splitlines()) == 1 and str(paths[name]) in message, message
    assert "weights_only" not in message  # never advise loading with code execution


@pytest.mark.slow
def test_talk_cli_missing_and_corrupt_files_fail_in_one_line_without_output(official_files, speech, tmp_path):
    missing = tmp_path / "missing"
    gone = link_copy(official_files, missing, skip=("lipaintnet",))["lipaintnet"]
    broken = tmp_path / "broken"
    bad = link_copy(official_files, broken, skip=(GENERATOR,))[GENERATOR]
    bad.write_bytes(official_files.paths[GENERATOR].read_bytes())
    corrupt(bad)
    outs = {d: tmp_path / f"out_{d.name}" for d in (missing, broken)}
    procs = {d: subprocess.Popen([sys.executable, "-m", "scripts.talk", str(example_photo()), str(speech), "--models",
                                  str(d), "--out", str(outs[d] / "x.mp4"), "--quiet"], cwd=ROOT, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 env={**os.environ, "NERFFS_WEIGHTS": str(d)})
             for d in (missing, broken)}  # both at once: each spends most of its time importing
    for d, expected in ((missing, gone), (broken, bad)):
        stdout, stderr = procs[d].communicate(timeout=300)
        assert procs[d].returncode == 1, stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and str(expected) in lines[0], stderr
        assert stdout == ""
        assert not outs[d].exists() or not any(outs[d].iterdir())  # no partial video, no stray files

