"""Frames (+ audio) -> mp4 with the ffmpeg binary shipped by imageio-ffmpeg (or the system one).

Frames are streamed to ffmpeg as they are produced, so a long render never holds the whole video in memory.
The file appears at its destination only when encoding succeeded (atomic rename).
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
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
        exe = shutil.which("ffmpeg")
        if exe is None:
            raise RuntimeError("ffmpeg not found; pip install imageio-ffmpeg or apt-get install ffmpeg") from None
        return exe


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 25.0,
                audio_path: str | os.PathLike | None = None, quality: int = 8,
                metadata: dict[str, str] | None = None) -> Path:
    """Encode uint8 RGB frames [H, W, 3] to H.264/yuv420p mp4, optionally muxing an audio file (AAC).

    Args:
        frames: iterable of [H, W, 3] uint8 arrays, all the same size (H, W even for yuv420p).
        path: destination .mp4 (written atomically).
        fps: frame rate.
        audio_path: optional audio file to mux; the video is cut to the shorter stream.
        quality: imageio-ffmpeg quality 0-10 (10 = best).
        metadata: container tags (e.g. ``{"comment": "synthetic content"}``), written with ffmpeg -metadata.

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
        params: list[str] = ["-movflags", "+faststart"]  # index first: browsers start playing before the end
        for key, value in (metadata or {}).items():
            params += ["-metadata", f"{key}={value}"]
        if audio_path is not None:
            kwargs.update(audio_path=str(audio_path), audio_codec="aac")
            params.append("-shortest")
        kwargs["output_params"] = params
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


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Container tags of a media file (lower-case keys), parsed from ffmpeg's header dump."""
    res = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path), "-f", "ffmetadata", "-"],
                         capture_output=True, text=True, check=False)
    tags = {}
    for line in res.stdout.splitlines():
        if "=" in line and not line.startswith(";"):
            key, value = line.split("=", 1)
            tags[key.strip().lower()] = value.strip()
    return tags


def add_watermark(frame: np.ndarray, text: str = "synthetic") -> np.ndarray:
    """Visible provenance mark: ``text`` in the top-left corner on a dark band. uint8 [H, W, 3] -> same."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(frame)
    draw = ImageDraw.Draw(img)
    size = max(10, frame.shape[0] // 20)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = ImageFont.load_default()
    box = draw.textbbox((0, 0), text, font=font)
    pad = max(2, size // 4)
    draw.rectangle((0, 0, box[2] + 2 * pad, box[3] + 2 * pad), fill=(0, 0, 0))
    draw.text((pad, pad), text, fill=(255, 255, 255), font=font)
    return np.asarray(img)
