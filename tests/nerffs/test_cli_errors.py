"""The one-line error every CLI prints, and what a user reads when something goes wrong (issue #16, item 9)."""
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from nerffs.config import get_config
from nerffs.errors import InputError, NoFaceError
from nerffs.utils.cli import error_line, run_command


def test_user_errors_print_their_first_line_only():
    assert error_line(NoFaceError("no face found in x.png; use a photo with a face\nmore")) == \
        "error: no face found in x.png; use a photo with a face"
    assert error_line(FileNotFoundError("audio not found: a.wav")) == "error: audio not found: a.wav"
    assert error_line(pickle.UnpicklingError("refusing to load os.system")) == "error: refusing to load os.system"


def test_unexpected_errors_show_their_type():
    assert error_line(KeyError("ws")) == "error: KeyError: 'ws'"
    assert error_line(ZeroDivisionError()) == "error: ZeroDivisionError"


ROOT = Path(__file__).resolve().parents[2]


def _talk(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "scripts.talk", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)


def test_run_command_statuses(capsys):
    def interrupted():
        raise KeyboardInterrupt

    def broken():
        raise InputError("no face found in x.png")

    assert run_command(lambda: 0) == 0 and run_command(lambda: None) == 0
    assert run_command(interrupted) == 130 and capsys.readouterr().err == "interrupted\n"
    assert run_command(broken) == 1 and capsys.readouterr().err == "error: no face found in x.png\n"


def test_error_starts_on_a_fresh_line_after_a_progress_bar():
    # As in a render: the bar's iterator is suspended (alive) while the error propagates.
    code = ("import sys\nfrom tqdm.auto import tqdm\nfrom nerffs.utils.cli import run_command\nalive = []\n"
            "def body():\n    it = iter(tqdm(range(10), desc='render frames', leave=False))\n"
            "    alive.append(it)\n    next(it)\n    raise ValueError('frame size changed')\n"
            "sys.exit(run_command(body))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "render frames" in res.stderr  # the bar was drawn ...
    last = res.stderr.rstrip("\n").split("\n")[-1]
    assert last.split("\r")[-1] == "error: frame size changed"  # ... and the error starts a line of its own
    assert all(not part.strip() for part in last.split("\r")[:-1])  # nothing left of the bar on that line


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_cpu_build_is_one_clear_line():
    from nerffs.utils.device import check_device

    with pytest.raises(InputError, match="CUDA is not available: .*use --device cpu"):
        check_device("cuda")
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        check_device("gpu0")
    res = _talk("--example", "--models", "smoke", "--out", "/tmp/never.mp4", "--device", "cuda", "--quiet")
    assert res.returncode == 1 and res.stderr.startswith("error: CUDA is not available")
    assert "AssertionError" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_options_are_checked_in_user_words_before_models_load(tmp_path):
    from nerffs.options import check_options
    from scripts.talk import FLAG_NAMES

    base = get_config("smoke")
    cases = {"mask_window": (0, "--mask-window must be a whole number of frames >= 1, got 0"),
             "ref_momentum": (2.0, "--momentum must be between 0 and 1, got 2.0"),
             "n_fft": (-1, "n_fft must be a positive number, got -1")}  # a stage's own check, translated
    for field, (value, message) in cases.items():
        with pytest.raises(InputError) as info:
            check_options({field: value}, base, FLAG_NAMES)
        assert str(info.value) == message
        assert "Config" not in str(info.value) and "TemporalMaskSmoother" not in str(info.value)
    with pytest.raises(InputError, match=r"^ref_momentum must be between 0 and 1"):  # library: the keyword
        check_options({"ref_momentum": -1.0}, base)
    with pytest.raises(InputError, match="--resume needs --frames-dir"):
        check_options({"resume": True}, base, FLAG_NAMES)
    res = _talk("--example", "--models", "smoke", "--out", tmp_path / "x.mp4", "--mask-window", "0")
    assert res.returncode == 1 and res.stderr.strip() == "error: --mask-window must be a whole number of frames " \
                                                         ">= 1, got 0"  # before any model: no SMOKE warning


def test_paths_directory_and_overwrite(tmp_path, caplog):
    from nerffs.options import check_paths

    speech = tmp_path / "s.wav"
    speech.write_bytes(b"RIFF")
    with pytest.raises(InputError, match=r"the photo .* is a directory; pass an image file"):
        check_paths(tmp_path, speech, tmp_path / "o.mp4", needs_audio=True)
    with pytest.raises(InputError, match=r"the audio .* is a directory; pass a speech recording"):
        check_paths(speech, tmp_path, tmp_path / "o.mp4", needs_audio=True)
    with pytest.raises(InputError, match="image not found"):
        check_paths(tmp_path / "nope.jpg", speech, tmp_path / "o.mp4", needs_audio=True)
    (tmp_path / "o.mp4").write_bytes(b"old")
    with caplog.at_level(logging.WARNING, logger="nerffs.options"):
        check_paths(speech, speech, tmp_path / "o.mp4", needs_audio=True)
    assert "o.mp4 exists; it will be replaced once the new video is complete" in caplog.text


def test_short_or_silent_speech_warns(tmp_path, caplog):
    import soundfile

    from nerffs.audio.load import speech_warnings
    from nerffs.pipeline import TalkingHeadPipeline

    cfg = get_config("smoke")
    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    assert speech_warnings(tone, cfg.audio) == []
    assert "only 0.10 s long (2 video frames)" in speech_warnings(tone[:1600], cfg.audio)[0]
    assert "silent (digital silence)" in speech_warnings(np.zeros(16000, np.float32), cfg.audio)[0]
    assert "silent (peak level -60 dBFS)" in speech_warnings(tone * 0.00333, cfg.audio)[0]
    path = tmp_path / "blip.wav"
    soundfile.write(path, np.zeros(1600, np.float32), 16000)
    with caplog.at_level(logging.WARNING, logger="nerffs.pipeline"):
        TalkingHeadPipeline.from_pretrained("smoke").speech(path)  # step 2 alone
    assert "blip.wav: the recording is only 0.10 s long" in caplog.text and "blip.wav: the recording is silent" \
        in caplog.text


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_leaves_nothing_half_written(tmp_path):
    from nerffs.audio.speech import synthesize_speech
    from nerffs.examples import example_photo

    speech = synthesize_speech(tmp_path / "long.wav", seconds=30.0)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "scripts.talk", str(example_photo()), str(speech), "--models",
                             "smoke", "--out", str(out / "talk.mp4"), "--frames-dir", str(out / "frames")],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    rendering = threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "rendering" in line:
                rendering.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert rendering.wait(240), "".join(lines)[-2000:]
    deadline = time.monotonic() + 120
    while not (out / "frames" / "frame_000040.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # interrupt mid-render, once some frames are done (and ffmpeg has started)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    reader.join(10)
    err = "".join(lines)
    assert "Traceback" not in err and err.rstrip().split("\n")[-1].split("\r")[-1] == "interrupted"
    assert not (out / "talk.mp4").exists()
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], leftovers  # no temporary video or frame left behind
    frames = sorted((out / "frames").glob("frame_*.png"))
    assert frames and (out / "frames" / "job.json").is_file()  # what was done is kept, complete, for --resume
    assert os.path.getsize(frames[-1]) > 0


@pytest.mark.slow
def test_ctrl_c_while_ffmpeg_starts_is_not_lost(tmp_path):
    """The interrupt lands in a fork hook (Python only prints "Exception ignored" there and goes on): it is
    raised again where it stops the run, without a traceback and without leftovers."""
    code = ("import os, runpy, signal, sys\nfired = []\n"
            "def after():\n    if not fired:\n        fired.append(1)\n        os.kill(os.getpid(), signal.SIGINT)\n"
            "os.register_at_fork(after_in_parent=after)\n"
            "sys.argv = ['scripts.talk', '--example', '--models', 'smoke', '--quiet', '--out', sys.argv[1]]\n"
            "runpy.run_module('scripts.talk', run_name='__main__')\n")
    out = tmp_path / "talk.mp4"
    res = subprocess.run([sys.executable, "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 130, res.stderr[-1500:]
    assert "Traceback" not in res.stderr and "Exception ignored" not in res.stderr
    assert res.stderr.rstrip().splitlines()[-1] == "interrupted"
    time.sleep(1.0)  # an orphaned ffmpeg would write its file now
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk_speech.wav"]
