"""A directory of rendered frames (``frame_000000.png`` ...) for --frames-dir and --resume.

Each PNG is written atomically, so after a crash every file present is complete; resuming counts the
consecutive frames from 0 and renders only the rest. The folder's job manifest (``nerffs.render.manifest``)
says which job the frames belong to.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from nerffs.errors import InputError
from nerffs.render.manifest import manifest_path
from nerffs.utils.io import atomic_path

_FRAME = re.compile(r"frame_\d{6}\.png")


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

    def frame_files(self) -> list[Path]:
        """Every frame file in the folder (any index), sorted."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if _FRAME.fullmatch(p.name))

    def clear(self) -> int:
        """Remove the frames and the job manifest (nothing else in the folder); returns the frames removed."""
        files = self.frame_files()
        for p in files:
            p.unlink(missing_ok=True)
        manifest_path(self.dir).unlink(missing_ok=True)
        return len(files)

    def read(self, count: int, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
        """Frames 0..count-1 as uint8 [H, W, 3] (each checked against ``size`` (H, W) when given)."""
        for i in range(count):
            with Image.open(self.path(i)) as img:
                frame = np.asarray(img.convert("RGB"))
            if size is not None and frame.shape[:2] != tuple(size):
                raise InputError(f"frame {self.path(i)} is {frame.shape[1]}x{frame.shape[0]}, the job's frames are "
                                 f"{size[1]}x{size[0]}; use --restart to discard the old frames")
            yield frame
