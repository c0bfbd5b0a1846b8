"""Mouth feature blending (paper Eq. 12-13; spec-stylenerf.md 7.4).

keep mask M (1 = keep the deformed feature, 0 = take LipaintNet's); R(., s) resizes to s x s; r is the NeRF
resolution and S the blending resolution (512 officially, bicubic, align_corners False, no antialias).

* official: x_blend = R( R(M, S) R(x, S) + (1 - R(M, S)) R(x_lip, S), r ). Besides blending, this
  re-filters every feature through the S round trip, so even M = 1 changes x slightly.
* residual (default): x_blend = x + R( (1 - R(M, S)) (R(x_lip, S) - R(x, S)), r ). The same blend
  where the mask is open, and exactly x wherever the mouth mask is closed (M = 1).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kwargs)


def blend_features(x: torch.Tensor, x_lip: torch.Tensor, keep: torch.Tensor, size: int = 512,
                   mode: str = "bicubic", official: bool = False) -> torch.Tensor:
    """Blend LipaintNet features into the deformed feature map.

    Args:
        x: [B, F, r, r] deformed-pass NeRF features.
        x_lip: [B, F, r, r] LipaintNet-pass NeRF features.
        keep: [B, 1, h, w] keep mask in [0, 1] (1 - smoothed mouth mask).
        size: blending resolution S.
        mode: interpolation mode ('bicubic' officially).
        official: use the official formula (see the module docstring) instead of the residual form.

    Returns:
        [B, F, r, r].
    """
    if x.shape != x_lip.shape or keep.shape[0] != x.shape[0] or keep.shape[1] != 1:
        raise ValueError(f"blend shapes disagree: x {tuple(x.shape)}, x_lip {tuple(x_lip.shape)}, "
                         f"keep {tuple(keep.shape)}")
    m = _resize(keep.to(x.dtype), size, mode)
    r = x.shape[-1]
    if official:
        return _resize(m * _resize(x, size, mode) + (1 - m) * _resize(x_lip, size, mode), r, mode)
    if bool((keep >= 1).all()):
        return x  # nothing to blend (the formula below would give x up to rounding)
    m = m.clamp(0, 1)  # bicubic overshoot must not push features away from both sources
    # Resizing is linear: R(x_lip, S) - R(x, S) = R(x_lip - x, S), one upsample instead of two.
    return x + _resize((1 - m) * _resize(x_lip - x, size, mode), r, mode)
