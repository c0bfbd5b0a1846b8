"""Contact sheet of a run: frames of the talking head, then the identity from an orbit of cameras (one PNG).

It shows at a glance what a run made: whose face, whether the mouth moves, how far the views turn. The caption
names the model set, so a sheet of smoke or offline output cannot pass for official weights.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from nerffs.render.views import render_views
from nerffs.utils.io import atomic_path
from stylenerf import Generator
from stylenerf.camera import camera_from_angles


@dataclass(frozen=True)
class SheetConfig:
    """Layout of the sheet."""

    frames: int = 8
    """Talking-head frames shown (evenly spaced over the video)."""
    views: int = 7
    """Orbit views shown (yaw from -max_yaw to +max_yaw, constant pitch)."""
    max_yaw: float = 0.35
    """Largest yaw of the orbit row (radians)."""
    tile: int = 192
    """Side of every thumbnail in pixels."""

    def frame_indices(self, num_frames: int) -> list[int]:
        """Which frames of a ``num_frames`` video are shown (distinct, ascending)."""
        if num_frames <= 0:
            return []
        return sorted({round(x) for x in np.linspace(0, num_frames - 1, min(self.frames, num_frames))})

    def yaws(self) -> list[float]:
        return [float(y) for y in np.linspace(-self.max_yaw, self.max_yaw, self.views)]

    def cameras(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[views, 4, 4] cameras of the orbit row (frontal height)."""
        return camera_from_angles(torch.tensor(self.yaws()), math.pi / 2, device=device)


def contact_sheet(frames: Sequence[np.ndarray], views: Sequence[np.ndarray], caption: str,
                  cfg: SheetConfig | None = None, frame_labels: Sequence[str] | None = None,
                  view_labels: Sequence[str] | None = None) -> np.ndarray:
    """Two rows of thumbnails (frames, then views) under a caption. uint8 [H, W, 3] images -> uint8 sheet."""
    cfg = cfg or SheetConfig()
    t, pad, head = cfg.tile, 4, 22
    cols = max(len(frames), len(views), 1)
    rows = [r for r in ((frames, frame_labels), (views, view_labels)) if len(r[0])]
    sheet = Image.new("RGB", (cols * (t + pad) + pad, head + len(rows) * (t + pad + 14) + pad), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 5), caption, fill=(235, 235, 235))
    for r, (images, labels) in enumerate(rows):
        y = head + r * (t + pad + 14)
        for c, img in enumerate(images):
            x = pad + c * (t + pad)
            sheet.paste(Image.fromarray(np.ascontiguousarray(img)).resize((t, t), Image.Resampling.LANCZOS), (x, y))
            if labels is not None and c < len(labels):
                draw.text((x + 2, y + t + 1), labels[c], fill=(200, 200, 200))
    return np.asarray(sheet)


def write_contact_sheet(path: str | os.PathLike, sheet: np.ndarray) -> Path:
    """Save a sheet as PNG, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return Path(path)


def sheet_path(video: str | os.PathLike) -> Path:
    """Where the sheet of ``video`` goes: ``talk.mp4`` -> ``talk_sheet.png`` beside it."""
    v = Path(video)
    return v.with_name(v.stem + "_sheet.png")


def keep_frames(frames: Iterator[np.ndarray], indices: list[int], into: dict[int, np.ndarray]) -> Iterator[np.ndarray]:
    """Pass frames through, keeping copies of those at ``indices`` in ``into`` (the sheet's frames)."""
    wanted = set(indices)
    for i, frame in enumerate(frames):
        if i in wanted:
            into[i] = np.array(frame)
        yield frame


def write_run_sheet(video: Path, kept: dict[int, np.ndarray], generator: Generator, ws: torch.Tensor,
                    bg_latent: torch.Tensor, cfg: SheetConfig, models: str) -> Path:
    """The contact sheet beside ``video``: the kept frames {index: [H, W, 3] uint8}, then the identity (ws
    [1, num_ws, w_dim], bg_latent [1, z_bg]) from ``cfg``'s orbit row; ``models`` describes the model set in the
    caption."""
    views = list(render_views(generator, ws, cfg.cameras(ws.device), bg_latent, show_progress=False))
    sheet = contact_sheet([kept[i] for i in sorted(kept)], views,
                          f"nerffs - {models} - frames of {video.name}, then yaw "
                          f"{-cfg.max_yaw:+.2f}..{cfg.max_yaw:+.2f} rad", cfg,
                          frame_labels=[f"frame {i}" for i in sorted(kept)],
                          view_labels=[f"yaw {y:+.2f}" for y in cfg.yaws()])
    return write_contact_sheet(sheet_path(video), sheet)
