"""One pipeline, many calls: progress events with named steps, concurrent calls with different options, and a
callback that cancels (issues #17 and #18)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nerffs.audio.speech import synthesize_speech
from nerffs.examples import example_photo
from nerffs.progress import STEPS, ConsoleProgress, ProgressEvent, Reporter


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return synthesize_speech(tmp_path_factory.mktemp("calls") / "s.wav", text="Hello, how are you?")


@pytest.fixture(scope="module")
def pipe():
    from nerffs.pipeline import TalkingHeadPipeline

    return TalkingHeadPipeline.from_pretrained("smoke")


def test_public_api_is_exported_from_the_package_without_importing_torch():
    import subprocess
    import sys

    code = ("import sys, nerffs; assert 'torch' not in sys.modules; "
            "from nerffs import TalkingHeadPipeline, PipelineConfig, TalkingHeadOutput, ProgressEvent, run_jobs; "
            "assert TalkingHeadPipeline.__module__ == 'nerffs.pipeline'; print(sorted(nerffs.__all__)[0])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import nerffs

    with pytest.raises(AttributeError, match="no attribute 'Pipeline'"):
        nerffs.Pipeline  # noqa: B018


def test_event_fractions_and_labels():
    assert ProgressEvent("frames", 5, 20).fraction == 0.25 and ProgressEvent("check", 0, 1).overall == 0.0
    assert ProgressEvent("encode", 1, 1).overall == pytest.approx(1.0)
    assert ProgressEvent("frames", 3, 10).label == "rendering frames 3/10"
    with pytest.raises(ValueError, match="unknown progress step 'render'"):
        Reporter().start("render")


def test_console_progress_draws_one_bar_per_counted_step_and_closes_it():
    bars = ConsoleProgress()
    bars(ProgressEvent("frames", 0, 4))
    for i in range(1, 4):
        bars(ProgressEvent("frames", i, 4))
    assert bars._bar is not None and bars._bar.n == 3
    bars(ProgressEvent("frames", 4, 4))
    assert bars._bar is None  # the step ended: its bar is closed


@pytest.mark.slow
def test_a_call_reports_every_step_in_order_and_every_frame(pipe, speech, tmp_path):
    events: list[ProgressEvent] = []
    out = pipe(example_photo(), speech, tmp_path / "a.mp4", show_progress=False, progress=events.append)
    steps = list(dict.fromkeys(e.step for e in events))
    assert steps == list(STEPS)
    frames = [e for e in events if e.step == "frames" and e.frame is not None]
    assert [e.done for e in frames] == list(range(1, out.num_frames + 1))
    assert all(e.frame.shape == (pipe.models.resolution,) * 2 + (3,) and e.frame.dtype == np.uint8 for e in frames)
    overall = [e.overall for e in events]
    assert overall == sorted(overall) and overall[-1] == pytest.approx(1.0)


@pytest.mark.slow
def test_a_callback_that_raises_cancels_the_call_and_writes_nothing(pipe, speech, tmp_path):
    class Cancelled(Exception):
        pass

    def cancel_at_frame_3(event: ProgressEvent) -> None:
        if event.step == "frames" and event.done == 3:
            raise Cancelled

    with pytest.raises(Cancelled):
        pipe(example_photo(), speech, tmp_path / "c.mp4", show_progress=False, progress=cancel_at_frame_3)
    assert not (tmp_path / "c.mp4").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_concurrent_calls_with_different_options_match_sequential_ones(pipe, speech, tmp_path):
    jobs = {"a": {"exp_scale": 1.0}, "b": {"exp_scale": 2.0, "camera": "fixed:yaw=0.2", "blink": "random"},
            "c": {"pose": "audio", "ref_momentum": 0.9}}
    before = pipe.config

    spans: dict[str, tuple[float, float]] = {}

    def run(name: str, opts: dict, results: dict) -> None:
        frames: list[np.ndarray] = []
        start = time.perf_counter()
        out = pipe(example_photo(), speech, tmp_path / f"{name}_{len(results)}.mp4", seed=1, show_progress=False,
                   progress=lambda e: frames.append(e.frame) if e.frame is not None else None, **opts)
        results[name] = (out.exp, out.cams, np.stack(frames))
        spans[name] = (start, time.perf_counter())

    alone: dict = {}
    for name, opts in jobs.items():
        run(name, opts, alone)
    together: dict = {}
    threads = [threading.Thread(target=run, args=(name, opts, together)) for name, opts in jobs.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(together) == sorted(jobs) and pipe.config is before  # no call left its options behind
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())  # the calls ran side by side
    for name in jobs:
        exp, cams, frames = together[name]
        assert exp.equal(alone[name][0]) and cams.equal(alone[name][1]) and np.array_equal(frames, alone[name][2])
    assert not alone["a"][0].equal(alone["b"][0]) and not alone["a"][1].equal(alone["b"][1])
