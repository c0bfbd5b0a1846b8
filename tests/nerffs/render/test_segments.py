"""Streamed video segments: boundaries, audio slices, and that the encoded segments hold every frame and sample."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from nerffs.errors import InputError
from nerffs.render.segments import (SegmentWriter, audio_slice, audio_span, encode_segment, frames_per_segment,
                                    segment_bounds)
from nerffs.render.video import ffmpeg_exe, read_metadata, read_video

SR, FPS = 16000, 25.0


def _frames(n: int, size: tuple[int, int] = (32, 48)) -> list[np.ndarray]:
    """Frame i is a flat grey of level 4 i (distinct after lossy coding)."""
    return [np.full((*size, 3), 4 * i, np.uint8) for i in range(n)]


def _decoded_samples(path: Path, sample_rate: int = SR) -> np.ndarray:
    """The audio track decoded to mono int16 at ``sample_rate``."""
    res = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-ac", "1",
                          "-ar", str(sample_rate), "-"], capture_output=True, check=True)
    return np.frombuffer(res.stdout, np.int16)


@pytest.mark.parametrize("num_frames, fps, seconds", [(58, 25.0, 1.0), (50, 25.0, 1.0), (7, 25.0, 1.0),
                                                      (100, 30.0, 0.5), (1, 25.0, 2.0), (0, 25.0, 1.0)])
def test_segment_bounds_cover_every_frame_once(num_frames, fps, seconds):
    bounds = segment_bounds(num_frames, fps, seconds)
    covered = [i for start, stop in bounds for i in range(start, stop)]
    assert covered == list(range(num_frames))
    n = frames_per_segment(fps, seconds)
    assert all(stop - start == n for start, stop in bounds[:-1])
    assert all(0 < stop - start <= n for start, stop in bounds)


def test_frames_per_segment_rounds_and_refuses_nonsense():
    assert frames_per_segment(25.0, 1.0) == 25 and frames_per_segment(29.97, 1.0) == 30
    assert frames_per_segment(25.0, 0.01) == 1
    with pytest.raises(InputError):
        frames_per_segment(0.0, 1.0)


@pytest.mark.parametrize("fps, sample_rate", [(25.0, 16000), (30.0, 44100), (29.97, 48000)])
def test_audio_slices_tile_the_speech_and_last_their_frames(fps, sample_rate):
    num_frames = 77
    wave = np.random.default_rng(0).standard_normal(round(num_frames * sample_rate / fps)).astype(np.float32)
    bounds = segment_bounds(num_frames, fps, 1.0)
    slices = [audio_slice(wave, sample_rate, fps, start, stop) for start, stop in bounds]
    np.testing.assert_array_equal(np.concatenate(slices), wave)  # no gap, no overlap, in order
    for (start, stop), part in zip(bounds, slices):
        assert abs(part.shape[0] - (stop - start) * sample_rate / fps) <= 1  # its frames' time span, to a sample
        assert part.dtype == np.float32


def test_audio_slice_pads_where_the_video_outlasts_the_speech():
    wave = np.ones(1000, np.float32)
    part = audio_slice(wave, SR, FPS, 0, 2)  # 2 frames = 1280 samples
    assert part.shape == (1280,) and part[:1000].all() and not part[1000:].any()
    assert audio_span(3, 5, FPS, SR) == (1920, 3200)


def test_encoded_segment_lasts_its_frames_with_exact_audio(tmp_path):
    wave = (0.5 * np.sin(np.arange(SR) * 2 * np.pi * 440 / SR)).astype(np.float32)
    part = audio_slice(wave, SR, FPS, 0, 13)
    path = encode_segment(_frames(13), tmp_path / "seg.mp4", FPS, part, SR, metadata={"comment": "synthetic"})
    frames, fps = read_video(path)
    assert frames.shape == (13, 32, 48, 3) and fps == pytest.approx(FPS)
    np.testing.assert_allclose(frames[:, 0, 0, 0], 4 * np.arange(13), atol=3)
    samples = _decoded_samples(path)
    assert samples.shape[0] == part.shape[0]  # lossless audio, no encoder delay: exactly the slice
    np.testing.assert_allclose(samples / 32768.0, part, atol=2e-4)
    assert read_metadata(path).get("comment") == "synthetic"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.mp4"]  # no temporary file left


def test_encode_segment_pads_odd_sizes_and_refuses_mixed_frames(tmp_path):
    path = encode_segment(_frames(3, (31, 45)), tmp_path / "odd.mp4", FPS)
    assert read_video(path)[0].shape == (3, 32, 46, 3)
    with pytest.raises(InputError, match="uint8"):
        encode_segment(_frames(2) + _frames(1, (16, 16)), tmp_path / "mixed.mp4", FPS)
    assert not (tmp_path / "mixed.mp4").exists()


def test_writer_segments_concatenate_to_every_frame_in_order(tmp_path):
    num_frames = 58
    wave = np.random.default_rng(1).uniform(-0.5, 0.5, round(num_frames * SR / FPS)).astype(np.float32)
    reported = []
    writer = SegmentWriter(tmp_path / "segments", FPS, wave, SR, seconds=1.0, on_segment=reported.append)
    for frame in _frames(num_frames):
        writer.add(frame)
    segments = writer.finish()
    assert [(s.start, s.stop) for s in segments] == segment_bounds(num_frames, FPS, 1.0) == [(0, 25), (25, 50),
                                                                                            (50, 58)]
    assert reported == segments  # each reported once, in order
    for s in segments:
        assert _decoded_samples(s.path).shape[0] == s.num_frames * SR / FPS
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"file '{s.path}'\n" for s in segments))
    joined = tmp_path / "joined.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    str(joined)], check=True)
    frames, _ = read_video(joined)
    assert frames.shape[0] == num_frames
    np.testing.assert_allclose(frames[:, 0, 0, 0], 4 * np.arange(num_frames), atol=3)
    samples = _decoded_samples(joined)
    assert samples.shape[0] == wave.shape[0]
    np.testing.assert_allclose(samples / 32768.0, wave, atol=2e-4)


def test_writer_flush_sends_the_partial_segment_and_raises_encoder_errors(tmp_path):
    reported = []
    writer = SegmentWriter(tmp_path, FPS, seconds=1.0, on_segment=reported.append)
    for frame in _frames(5):
        writer.add(frame)
    writer.flush()
    assert [(s.start, s.stop) for s in writer.finish()] == [(0, 5)] and reported[0].path.is_file()
    bad = SegmentWriter(tmp_path / "bad", FPS, seconds=0.04)  # one frame per segment
    bad.add(np.zeros((8, 8, 3), np.float32))  # not uint8: its encoding fails
    with pytest.raises(InputError, match="uint8"):
        bad.finish()
