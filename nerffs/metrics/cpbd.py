"""CPBD sharpness: Cumulative Probability of Blur Detection (Narvekar & Karam 2011), higher = sharper.

Uses the ``cpbd-py312`` package (``pip install --no-deps cpbd-py312==1.0.3``; the original ``cpbd`` sdist is
broken on current scipy). It runs a Python loop over edge pixels: about 0.5 s per 512^2 frame, so video
scores average a few evenly spaced frames.
"""
from __future__ import annotations

import numpy as np

from nerffs.errors import MissingDependencyError


def _compute():
    try:
        from cpbd import compute
    except ImportError as exc:
        raise MissingDependencyError(f"CPBD needs `pip install --no-deps cpbd-py312==1.0.3` ({exc})") from None
    return compute


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] (or gray [H, W]) -> float64 luma [H, W] in 0..255 (ITU-R BT.601 weights)."""
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
    return img


def cpbd_score(image: np.ndarray) -> float:
    """CPBD of one image (uint8 RGB or gray). Images smaller than the metric's 64x64 blocks score 0."""
    return float(_compute()(to_gray(image)))


def sample_indices(num: int, max_count: int) -> np.ndarray:
    """Up to ``max_count`` evenly spaced indices into ``range(num)``."""
    if num <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.linspace(0, num - 1, min(num, max(1, max_count))).round().astype(int))


def video_cpbd(frames: np.ndarray, max_frames: int = 8) -> float:
    """Mean CPBD over up to ``max_frames`` evenly spaced frames of ``frames`` [T, H, W, 3]."""
    return float(np.mean([cpbd_score(frames[i]) for i in sample_indices(len(frames), max_frames)]))
