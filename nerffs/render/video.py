"""Frames (+ audio) -> mp4 with the ffmpeg binary shipped by imageio-ffmpeg (or the system one).

Frames are streamed to ffmpeg as they are produced, so a long render never holds the whole video in memory.
The file appears at its destination only when encoding succeeded (atomic rename).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from nerffs.errors import InputError
from nerffs.utils.io import atomic_path

log = logging.getLogger(__name__)


def ffmpeg_exe() -> str:
    """Path of an ffmpeg executable: imageio-ffmpeg's bundled binary, else ``ffmpeg`` on PATH."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        import shutil

        exe = shutil.which("ffmpeg")
        if exe is None:
            raise RuntimeError("ffmpeg not found; pip install imageio-ffmpeg or apt-get install ffmpeg") from None
        return exe


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 25.0,
                audio_path: str | os.PathLike | None = None, quality: int = 8) -> Path:
    """Encode uint8 RGB frames [H, W, 3] to H.264/yuv420p mp4, optionally muxing an audio file (AAC).

    Args:
        frames: iterable of [H, W, 3] uint8 arrays, all the same size (H, W even for yuv420p).
        path: destination .mp4 (written atomically).
        fps: frame rate.
        audio_path: optional audio file to mux; the video is cut to the shorter stream.
        quality: imageio-ffmpeg quality 0-10 (10 = best).

    Returns:
        The destination path.
    """
    import imageio_ffmpeg

    dest = Path(path)
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError(f"no frames to write to {dest}")
    h, w = _check_frame(first, None)
    with atomic_path(dest) as tmp:
        kwargs = dict(fps=fps, codec="libx264", pix_fmt_out="yuv420p", quality=quality, macro_block_size=2,
                      ffmpeg_log_level="error")
        if audio_path is not None:
            kwargs.update(audio_path=str(audio_path), audio_codec="aac", output_params=["-shortest"])
        writer = imageio_ffmpeg.write_frames(str(tmp), (w, h), **kwargs)
        writer.send(None)
        try:
            writer.send(np.ascontiguousarray(first))
            count = 1
            for frame in it:
                _check_frame(frame, (h, w))
                writer.send(np.ascontiguousarray(frame))
                count += 1
        finally:
            writer.close()
    log.info("wrote %d frames (%dx%d @ %g fps%s) to %s", count, w, h, fps, ", with audio" if audio_path else "", dest)
    return dest


def _check_frame(frame: np.ndarray, size: tuple[int, int] | None) -> tuple[int, int]:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frames must be uint8 [H, W, 3], got {frame.dtype} {frame.shape}")
    if size is not None and frame.shape[:2] != size:
        raise InputError(f"frame size changed from {size} to {frame.shape[:2]}")
    return frame.shape[0], frame.shape[1]


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Decode an mp4 to uint8 frames [T, H, W, 3] and its fps (for tests and evaluation)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    frames = [np.frombuffer(f, dtype=np.uint8).reshape(h, w, 3) for f in reader]
    return np.stack(frames) if frames else np.zeros((0, h, w, 3), np.uint8), float(meta["fps"])
