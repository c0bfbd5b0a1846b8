"""Mouth feature blending (paper Eq. 12-13; spec-stylenerf.md 7.4).

Eq. 13 (Average Mask): the mouth mask of frame t is a causal mean over n frames, so the blended region does not
flicker. As in NFS's ``TemporalSmoothing`` (spec 7.4) the window ends at the current frame,
M_t = mean(M_{t-n+1} .. M_t), with fewer masks at the start of a video; n = 7 (:class:`TemporalMaskSmoother`).

Eq. 12, with the keep mask M (1 = keep the deformed feature, 0 = take LipaintNet's); R(., s) resizes to s x s;
r is the NeRF resolution and S the blending resolution (512 officially, bicubic, align_corners False, no
antialias):

* official: x_blend = R( R(M, S) R(x, S) + (1 - R(M, S)) R(x_lip, S), r ). Besides blending, this
  re-filters every feature through the S round trip, so even M = 1 changes x slightly.
* residual (default): x_blend = x + R( (1 - R(M, S)) (R(x_lip, S) - R(x, S)), r ). The same blend
  where the mask is open, and exactly x wherever the mouth mask is closed (M = 1).
"""
from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F

from nerffs.errors import InputError


class TemporalMaskSmoother:
    """Causal moving average of the last ``n`` masks ("AvgMask", spec-stylenerf.md 7.4).

    Frame t returns mean(mask_{max(0, t-n+1)} .. mask_t): fewer than ``n`` masks are averaged at the start,
    and no future frame is used. Call :meth:`reset` between videos.

    Args:
        n: window length (7 in NFS).
    """

    def __init__(self, n: int = 7):
        if n < 1:
            raise ValueError(f"TemporalMaskSmoother window must be >= 1, got {n}")
        self.n = n
        self._window: deque[torch.Tensor] = deque(maxlen=n)

    def __len__(self) -> int:
        return len(self._window)

    def reset(self) -> None:
        """Forget all stored masks."""
        self._window.clear()

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        """Add the current mask and return the window mean.

        Args:
            mask: [B, 1, H, W] float mask of the current frame.

        Returns:
            [B, 1, H, W] mean of the stored masks (same dtype as ``mask``).
        """
        if self._window and self._window[-1].shape != mask.shape:
            raise InputError(f"mask shape {tuple(mask.shape)} differs from the previous "
                             f"{tuple(self._window[-1].shape)}; call reset() when the resolution changes")
        self._window.append(mask.detach())
        return torch.stack(tuple(self._window)).mean(dim=0).to(mask.dtype)


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
    open_ = 1 - m
    box = _update_box(open_, r, size) if mode == "bicubic" and size % r == 0 and size // r >= 4 else None
    if box is None:
        return x + _resize(open_ * _resize(x_lip - x, size, mode), r, mode)
    if box[0] >= box[1] or box[2] >= box[3]:
        return x  # the open pixels lie where no downsampling tap reads (e.g. the outermost S-pixels)
    return x + _cropped_update(x_lip - x, open_, box, size)


def _update_box(open_: torch.Tensor, r: int, size: int) -> tuple[int, int, int, int] | None:
    """Feature-grid box [y0, y1) x [x0, x1) whose outputs can see a non-zero ``open_`` through the 4-tap
    bicubic downsampling (taps of output i span S-pixels i*s + s/2 - 2 .. i*s + s/2 + 1)."""
    nz = (open_.amax(dim=(0, 1)) > 0).nonzero()
    if nz.numel() == 0:
        return None
    s = size // r
    (ya, xa), (yb, xb) = nz.min(0).values.tolist(), nz.max(0).values.tolist()
    lo = lambda a: max(0, (a - s // 2 - 1) // s)  # noqa: E731
    hi = lambda b: min(r, (b - s // 2 + 2) // s + 1)  # noqa: E731
    return lo(ya), hi(yb), lo(xa), hi(xb)


def _cropped_update(d: torch.Tensor, open_: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """R((1 - m) R(d, S), r) computed only on ``box`` (plus a 2-cell margin for the upsampling taps); equal to
    the full computation because every crop starts on the S/r grid and no tap reaches a crop border."""
    r = d.shape[-1]
    s = size // r
    y0, y1, x0, x1 = box
    py0, py1, px0, px1 = max(0, y0 - 2), min(r, y1 + 2), max(0, x0 - 2), min(r, x1 + 2)
    up = F.interpolate(d[..., py0:py1, px0:px1], scale_factor=s, mode="bicubic", align_corners=False)
    up = up[..., (y0 - py0) * s:(y1 - py0) * s, (x0 - px0) * s:(x1 - px0) * s]
    z = open_[..., y0 * s:y1 * s, x0 * s:x1 * s] * up
    out = torch.zeros_like(d)
    out[..., y0:y1, x0:x1] = F.interpolate(z, size=(y1 - y0, x1 - x0), mode="bicubic", align_corners=False)
    return out
