"""A render in progress as short, self-contained video segments, for streaming (the app's live video).

Frames are cut into segments of about ``seconds`` each: segment ``k`` holds frames ``[k n, (k + 1) n)`` with
``n = round(seconds * fps)`` (the last one what is left), and the speech samples of exactly that time span,
``[round(start * sr / fps), round(stop * sr / fps))``, so the slices of all segments tile the audio without gap or
overlap and each is as long as its frames to within one sample.

Each segment is its own mp4: H.264 (yuv420p, no B-frames, one keyframe at its start, so it decodes on its own)
with FLAC audio. FLAC because it is lossless and carries no encoder delay: a muxer that decodes each segment's
audio and re-encodes the whole stream once (Gradio's streaming video output does) gets exactly the samples of the
slice, and the picture and the sound cannot drift apart from segment to segment as AAC's priming and padding
would make them. Concatenated, the segments hold every frame once, in order.

``SegmentWriter`` takes frames one at a time (e.g. from the pipeline's progress callback, on the rendering
thread) and encodes each finished segment with ffmpeg in one worker thread, so rendering never waits for the
encoder; it reports each segment, in order, to a callback.
"""
from __future__ import annotations

import logging
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerffs.errors import InputError
from nerffs.render.video import ffmpeg_exe
from nerffs.utils.io import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Segment:
    """One encoded segment: frames ``[start, stop)`` of the video, in the mp4 at ``path``."""

    index: int
    start: int
    stop: int
    path: Path

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


def frames_per_segment(fps: float, seconds: float = 1.0) -> int:
    """Frames in each segment but the last: ``round(seconds * fps)``, at least 1."""
    if not fps > 0 or not seconds > 0:
        raise InputError(f"segments need fps > 0 and seconds > 0, got fps={fps}, seconds={seconds}")
    return max(1, round(seconds * fps))


def segment_bounds(num_frames: int, fps: float, seconds: float = 1.0) -> list[tuple[int, int]]:
    """The ``[start, stop)`` frame ranges of a video of ``num_frames`` frames cut into ``seconds``-long segments
    (the last one shorter when the frames do not divide evenly)."""
    n = frames_per_segment(fps, seconds)
    return [(start, min(start + n, num_frames)) for start in range(0, max(0, num_frames), n)]


def audio_span(start: int, stop: int, fps: float, sample_rate: int) -> tuple[int, int]:
    """The sample range ``[first, last)`` that plays with frames ``[start, stop)``."""
    return round(start * sample_rate / fps), round(stop * sample_rate / fps)


def audio_slice(wave: np.ndarray, sample_rate: int, fps: float, start: int, stop: int) -> np.ndarray:
    """The samples of ``wave`` [L] (mono) that play with frames ``[start, stop)``; float32, zero-padded where the
    video outlasts the audio, so its length is always that of the frames' time span."""
    first, last = audio_span(start, stop, fps, sample_rate)
    out = np.zeros(last - first, np.float32)
    part = np.asarray(wave, np.float32)[first:last]
    out[:part.shape[0]] = part
    return out


def encode_segment(frames: Sequence[np.ndarray], path: str | os.PathLike, fps: float,
                   audio: np.ndarray | None = None, sample_rate: int = 16000,
                   metadata: dict[str, str] | None = None) -> Path:
    """Encode uint8 frames [H, W, 3] (and their audio) as one self-contained mp4 segment, written atomically.

    Args:
        frames: the segment's frames, all the same size (odd sizes are padded by one pixel for yuv420p).
        path: destination (.mp4).
        fps: frame rate; the video lasts ``len(frames) / fps`` seconds.
        audio: mono float32 samples [L] at ``sample_rate`` (``audio_slice``), or None for a silent segment.
        sample_rate: audio sample rate in Hz.
        metadata: container tags (e.g. ``{"comment": "synthetic content"}``).

    Returns:
        The destination path.
    """
    if not frames:
        raise InputError(f"no frames to encode into {Path(path).name}")
    h, w = frames[0].shape[:2]
    for frame in frames:
        if frame.dtype != np.uint8 or frame.shape != (h, w, 3):
            raise InputError(f"segment frames must be uint8 [{h}, {w}, 3], got {frame.dtype} {frame.shape}")
    dest = Path(path)
    with atomic_path(dest) as tmp:
        sound = None if audio is None else tmp.with_name(tmp.name + ".f32")
        try:
            if sound is not None:
                sound.write_bytes(np.ascontiguousarray(audio, dtype="<f4").tobytes())
            cmd = _segment_command(tmp, w, h, len(frames), fps, sound, sample_rate, metadata or {})
            data = b"".join(np.ascontiguousarray(f).tobytes() for f in frames)
            res = subprocess.run(cmd, input=data, capture_output=True, check=False)
        finally:
            if sound is not None:
                sound.unlink(missing_ok=True)
        if res.returncode != 0:
            message = res.stderr.decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"ffmpeg could not encode the video segment {dest.name}: "
                               f"{message[-1] if message else 'exit status ' + str(res.returncode)}")
    return dest


def _segment_command(out: Path, w: int, h: int, count: int, fps: float, sound: Path | None, sample_rate: int,
                     metadata: dict[str, str]) -> list[str]:
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "pipe:0"]
    if sound is not None:
        cmd += ["-f", "f32le", "-ar", str(int(sample_rate)), "-ac", "1", "-i", str(sound)]
    cmd += ["-map", "0:v:0"] + (["-map", "1:a:0"] if sound is not None else [])
    if w % 2 or h % 2:
        cmd += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    # zerolatency: no B-frames and no look-ahead, so the segment's timestamps start at 0 with no edit list to honour.
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-crf", "20", "-pix_fmt", "yuv420p",
            "-g", str(max(1, count))]
    if sound is not None:
        # 16-bit: FLAC decoders before ffmpeg 6 reject 32-bit frames; 'experimental': FLAC in mp4 before ffmpeg 6.
        cmd += ["-c:a", "flac", "-sample_fmt", "s16", "-strict", "experimental"]
    for key, value in metadata.items():
        cmd += ["-metadata", f"{key}={value}"]
    return cmd + ["-movflags", "+faststart", "-f", "mp4", str(out)]


class SegmentWriter:
    """Frames in, one encoded segment per ``seconds`` out, encoded in a worker thread.

    Call ``add`` with each frame in order (cheap: it only hands a full segment to the encoder thread), ``flush``
    once the last frame is in (encodes the partial last segment), ``finish`` to wait for every segment (it raises
    the first encoding error) and ``close`` to stop without waiting. ``on_segment(segment)`` is called on the
    encoder thread as each segment is written, in order.

    Args:
        folder: where the segments go (``segment_00000.mp4``, ...); created if needed.
        fps: the video's frame rate.
        wave: the speech, mono float32 [L] at ``sample_rate`` (None: silent segments).
        sample_rate: the speech's sample rate.
        seconds: segment length in seconds (the last one shorter).
        on_segment: called with each ``Segment`` once its file is complete.
        metadata: container tags of every segment.
    """

    def __init__(self, folder: str | os.PathLike, fps: float, wave: np.ndarray | None = None,
                 sample_rate: int = 16000, seconds: float = 1.0,
                 on_segment: Callable[[Segment], None] | None = None, metadata: dict[str, str] | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fps, self.wave, self.sample_rate = float(fps), wave, int(sample_rate)
        self.size = frames_per_segment(fps, seconds)
        self.on_segment, self.metadata = on_segment, dict(metadata or {})
        self._frames: list[np.ndarray] = []
        self._start = 0
        self._futures: list[Future[Segment]] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nerffs-segments")

    @property
    def frames_added(self) -> int:
        """Frames handed in so far."""
        return self._start + len(self._frames)

    def add(self, frame: np.ndarray) -> None:
        """Append the next frame (uint8 [H, W, 3]); a full segment goes to the encoder. Raises the error of a
        segment that already failed to encode."""
        with self._lock:
            self._raise_failed()
            self._frames.append(frame)
            if len(self._frames) >= self.size:
                self._submit()

    def flush(self) -> None:
        """Encode the frames not yet in a segment (after the last frame)."""
        with self._lock:
            if self._frames:
                self._submit()

    def finish(self) -> list[Segment]:
        """Flush, wait for every segment and return them in order (raises the first encoding error)."""
        self.flush()
        try:
            return [future.result() for future in self._futures]
        finally:
            self._pool.shutdown(wait=True)

    def close(self) -> None:
        """Stop: segments not yet started are dropped, the one being encoded completes. Idempotent."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _submit(self) -> None:
        frames, start = self._frames, self._start
        self._frames, self._start = [], start + len(frames)
        index = len(self._futures)
        self._futures.append(self._pool.submit(self._encode, index, start, frames))

    def _encode(self, index: int, start: int, frames: list[np.ndarray]) -> Segment:
        stop = start + len(frames)
        audio = None if self.wave is None else audio_slice(self.wave, self.sample_rate, self.fps, start, stop)
        path = encode_segment(frames, self.folder / f"segment_{index:05d}.mp4", self.fps, audio, self.sample_rate,
                              self.metadata)
        segment = Segment(index=index, start=start, stop=stop, path=path)
        log.debug("segment %d: frames %d..%d -> %s", index, start, stop - 1, path.name)
        if self.on_segment is not None:
            self.on_segment(segment)
        return segment

    def _raise_failed(self) -> None:
        for future in self._futures:
            if future.done() and not future.cancelled() and future.exception() is not None:
                raise future.exception()

    def __enter__(self) -> SegmentWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
