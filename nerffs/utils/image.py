"""Tensor <-> uint8 image conversions (generator images live in [-1, 1])."""
from __future__ import annotations

import numpy as np
import torch


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] or [3, H, W] float in [-1, 1] -> uint8 [B, H, W, 3] / [H, W, 3] (clamped, rounded)."""
    x = ((img.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.movedim(-3, -1)
    return x.cpu().numpy()


def uint8_to_tensor(img: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] or [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(img)).to(device)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    return x.movedim(-1, 1).float() / 127.5 - 1
