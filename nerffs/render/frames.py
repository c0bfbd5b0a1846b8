"""A directory of rendered frames (``frame_000000.png`` ...) for --frames-dir and --resume.

Each PNG is written atomically, so after a crash every file present is complete; resuming counts the
consecutive frames from 0 and renders only the rest.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from nerffs.utils.io import atomic_path


class FrameStore:
    """Read/write numbered PNG frames in one directory."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory)

    def path(self, index: int) -> Path:
        return self.dir / f"frame_{index:06d}.png"

    def write(self, index: int, frame: np.ndarray) -> Path:
        """Save uint8 [H, W, 3] as frame ``index`` (atomic)."""
        with atomic_path(self.path(index)) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG")
        return self.path(index)

    def count_done(self, total: int) -> int:
        """Number of consecutive frames 0..k-1 already present (at most ``total``)."""
        k = 0
        while k < total and self.path(k).is_file():
            k += 1
        return k

    def read(self, count: int) -> Iterator[np.ndarray]:
        """Frames 0..count-1 as uint8 [H, W, 3]."""
        for i in range(count):
            with Image.open(self.path(i)) as img:
                yield np.asarray(img.convert("RGB"))
