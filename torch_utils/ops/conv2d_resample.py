"""2-D convolution with optional FIR up/down-sampling, composed from ``conv2d`` and :func:`upfirdn2d`.

Definition (the reference composition; spec-stylenerf.md section 5):

1. ``x <- upfirdn2d(x, f, up=up, padding=P, gain=up**2)`` with ``P = padding`` plus, when ``up > 1``,
   the centring padding of :func:`upsample2d` and, when ``down > 1``, that of :func:`downsample2d`
   (with ``up == 1`` and no filter this is plain zero padding);
2. ``x <- conv2d(x, w, groups=groups)`` ('valid'; ``w`` flipped first unless ``flip_weight``);
3. if ``down > 1``: ``x <- upfirdn2d(x, f, down=down)``.

With ``padding = k // 2`` for an odd ``k x k`` kernel the output is ``H * up / down`` square. The
cheaper evaluation orders used below are exact rewrites of that composition (conv2d and a
per-channel FIR commute; a convolution of a zero-inserted signal is a strided transposed conv).
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d as _upfirdn2d

log = logging.getLogger(__name__)


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, up: int = 1, down: int = 1,
                    padding: int | list[int] = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False, impl: str = "auto") -> torch.Tensor:
    """Convolution with optional upsampling (before) and downsampling (after) through an FIR filter.

    Args:
        x: Input ``[N, C_in, H, W]``.
        w: Weight ``[C_out, C_in // groups, kh, kw]``.
        f: FIR filter for the resampling (see :func:`upfirdn2d.setup_filter`); ``None`` = identity taps.
        up: Integer upsampling factor (zero insertion, then ``f`` with gain ``up**2``).
        down: Integer downsampling factor (``f``, then every ``down``-th sample).
        padding: Padding of the convolution input, int, ``[px, py]`` or ``[px0, px1, py0, py1]``;
            the filter's centring padding is added automatically.
        groups: Convolution groups.
        flip_weight: ``True``: ``w`` is applied as in ``F.conv2d`` (cross-correlation). ``False``: ``w`` is
            flipped spatially first, i.e. a true convolution (the StyleGAN2 upsampling layers use this).
        flip_filter: Passed to :func:`upfirdn2d` (``False`` = true convolution with ``f``).
        impl: ``'auto'``, ``'cuda'`` or ``'ref'`` for the upfirdn2d calls.

    Returns:
        ``[N, C_out, H_out, W_out]``; e.g. ``[N, C_out, H * up // down, W * up // down]`` for a ``k x k``
        kernel (odd ``k``) with ``padding = k // 2``.

    Raises:
        ValueError: on inconsistent shapes or factors.
    """
    _check(x, w, up, down, groups)
    kh, kw = w.shape[2], w.shape[3]
    fw, fh = _upfirdn2d._filter_size(f)
    px0, px1, py0, py1 = _upfirdn2d._parse_padding(padding)
    if up > 1:  # centring padding of upsample2d
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:  # centring padding of downsample2d
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    pad = [px0, px1, py0, py1]

    if kw == 1 and kh == 1 and up == 1 and down > 1:  # 1x1 + down: resample the (fewer) input pixels first
        x = _upfirdn2d.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, groups, flip_weight)
    if kw == 1 and kh == 1 and up > 1 and down == 1:  # 1x1 + up: convolve at low resolution first
        x = _conv(x, w, groups, flip_weight)
        return _upfirdn2d.upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter, impl=impl)
    if up == 1 and down > 1:  # filter, then a strided convolution (no discarded outputs computed)
        x = _upfirdn2d.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, impl=impl)
        return _conv(x, w, groups, flip_weight, stride=down)
    if up > 1 and down == 1:  # strided transposed convolution does the zero insertion and the conv at once
        x = _conv_transpose_up(x, w, groups, flip_weight, up)
        # conv_transpose2d returned the full support; shift from "valid after padding pad" to its origin.
        shifted = [px0 - (kw - 1), px1 - (kw - 1) + up - 1, py0 - (kh - 1), py1 - (kh - 1) + up - 1]
        return _upfirdn2d.upfirdn2d(x, f, padding=shifted, gain=up ** 2, flip_filter=flip_filter, impl=impl)
    if up == 1 and down == 1 and px0 == px1 >= 0 and py0 == py1 >= 0:  # plain convolution
        return _conv(x, w, groups, flip_weight, padding=(py0, px0))
    # General case, literally the definition.
    x = _upfirdn2d.upfirdn2d(x, f if up > 1 else None, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter,
                             impl=impl)
    x = _conv(x, w, groups, flip_weight)
    if down > 1:
        x = _upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x


def _check(x: torch.Tensor, w: torch.Tensor, up: int, down: int, groups: int) -> None:
    """Validates the arguments of :func:`conv2d_resample`."""
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x and w must be 4-D, got {list(x.shape)} and {list(w.shape)}")
    if not (isinstance(up, int) and isinstance(down, int) and up >= 1 and down >= 1):
        raise ValueError(f"up and down must be ints >= 1, got {up!r} and {down!r}")
    if groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f"weight {list(w.shape)} with groups={groups} does not fit input {list(x.shape)}")


def _conv(x: torch.Tensor, w: torch.Tensor, groups: int, flip_weight: bool, stride: int = 1,
          padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """``F.conv2d`` (correlation) with ``w``, or a true convolution when ``flip_weight`` is False."""
    weight = w.to(x.dtype) if flip_weight else w.to(x.dtype).flip([2, 3])
    return F.conv2d(x, weight, stride=stride, padding=padding, groups=groups)


def _conv_transpose_up(x: torch.Tensor, w: torch.Tensor, groups: int, flip_weight: bool, up: int) -> torch.Tensor:
    """Zero insertion by ``up`` followed by the convolution, over the full support of the result.

    ``conv_transpose2d(x, W, stride=up)[q] = sum_i x[i] W[q - up * i]`` is the true convolution of the
    zero-inserted input with ``W``; the requested correlation with ``w`` is the true convolution with
    ``w`` flipped, so ``W`` = flipped ``w`` when ``flip_weight`` and ``w`` itself otherwise. The weight
    layout changes from ``[C_out, C_in/g, kh, kw]`` to ``[C_in, C_out/g, kh, kw]``.
    """
    weight = w.to(x.dtype)
    if flip_weight:
        weight = weight.flip([2, 3])
    c_out, c_in_g, kh, kw = weight.shape
    weight = weight.reshape(groups, c_out // groups, c_in_g, kh, kw).transpose(1, 2)
    weight = weight.reshape(groups * c_in_g, c_out // groups, kh, kw)
    return F.conv_transpose2d(x, weight, stride=up, groups=groups)
