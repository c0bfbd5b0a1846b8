"""A pipeline call streamed to a client (nerffs.serving): progress in step order, segments while frames render, the
finished mp4 last; closing the stream cancels the call; errors surface from the stream."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nerffs.errors import InputError
from nerffs.examples import example_photo
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.progress import STEPS
from nerffs.render.segments import segment_bounds
from nerffs.render.video import read_video
from nerffs.serving import stream_talking_head


@pytest.fixture(scope="module")
def pipe():
    return TalkingHeadPipeline.from_pretrained("smoke")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    from nerffs.audio.speech import find_espeak
    from nerffs.examples import example_speech

    if find_espeak() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return example_speech(tmp_path_factory.mktemp("speech") / "talk.wav", "Hi there. I am a talking head.")


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "nerffs-stream"]


def test_stream_reports_steps_then_segments_then_the_output(pipe, speech, tmp_path):
    out_path = tmp_path / "talk.mp4"
    steps, segments, seen_frames, order = [], [], [], []
    for update in stream_talking_head(pipe, str(example_photo()), str(speech), out_path, segment_seconds=0.5):
        if update.event is not None:
            assert update.event.frame is None  # frames go to the segments, not to the consumer
            if not steps or steps[-1] != update.event.step:
                steps.append(update.event.step)
            order.append("event")
        if update.segment is not None:
            seg = update.segment
            frames, _ = read_video(seg.path)  # complete when reported
            assert frames.shape[0] == seg.num_frames
            segments.append(seg)
            seen_frames.append(frames)
            order.append("segment")
        if update.output is not None:
            out = update.output
            order.append("output")
    assert steps == [s for s in STEPS if s in steps] and steps[0] == "check" and steps[-1] == "encode"
    assert order[-1] == "output" and order.count("output") == 1
    assert order.index("segment") < order.index("output")
    assert [(s.start, s.stop) for s in segments] == segment_bounds(out.num_frames, out.fps, 0.5)
    assert len(segments) >= 2  # the video arrived in parts before the end
    final, _ = read_video(out.video)
    assert out.video == out_path and final.shape[0] == out.num_frames == sum(f.shape[0] for f in seen_frames)
    # the segments show the same frames as the finished video (both lossy H.264: compare coarsely)
    streamed = np.concatenate(seen_frames).astype(np.float32)
    assert np.abs(streamed - final.astype(np.float32)).mean() < 4.0


def test_closing_the_stream_cancels_the_call(pipe, speech, tmp_path):
    out_path = tmp_path / "talk.mp4"
    stream = stream_talking_head(pipe, str(example_photo()), str(speech), out_path, segment_seconds=0.2)
    for update in stream:
        if update.segment is not None:
            break
    stream.close()  # the client went away
    for thread in _stream_threads():
        thread.join(120)  # the call stops at its next progress event
    assert not _stream_threads()
    assert not out_path.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written video


def test_bad_option_fails_before_any_work(pipe, speech, tmp_path):
    with pytest.raises(InputError, match="exp_scale"):
        next(stream_talking_head(pipe, str(example_photo()), str(speech), tmp_path / "talk.mp4", exp_scale=-1.0))
    assert not (tmp_path / "segments").exists() and not _stream_threads()


def test_a_failing_call_raises_from_the_stream(pipe, speech, tmp_path):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
    with pytest.raises(InputError, match="face"):
        for _ in stream_talking_head(pipe, str(blank), str(speech), tmp_path / "talk.mp4"):
            pass
    assert not (tmp_path / "talk.mp4").exists()
