"""FIR filtering with integer up- and down-sampling of 2-D feature maps ("upfirdn2d") and its wrappers.

Definition (spec-stylenerf.md section 5), per channel and separately along x (width) and y (height):

1. upsample: insert ``up - 1`` zeros after every sample (length ``L -> L * up``);
2. pad with zeros, ``p0`` before and ``p1`` after (negative values crop);
3. filter with the FIR ``f`` times ``gain``, keeping only the positions where ``f`` lies inside the
   padded signal. This is a true convolution (``f`` flipped) unless ``flip_filter=True``;
4. downsample: keep every ``down``-th sample, starting with the first.

The output length along an axis is ``(L * up + p0 + p1 - k) // down + 1`` for a filter of ``k`` taps.
A 1-D filter is separable (the same taps along both axes); a 2-D filter ``[fh, fw]`` is general.

Implementations (style rule 1):

* ``'ref'``: pure torch, written for CPU speed (separable two-pass, polyphase, cache-blocked; see
  :mod:`torch_utils.ops._upfirdn2d_ref`). A 2-D filter of rank 1, such as the generator's
  [1, 3, 3, 1] outer product, is factored and run as separable.
* ``'cuda'``: the plugin ``upfirdn2d.cu`` (one thread per output sample).

Both run inside one autograd Function whose backward is again ``upfirdn2d`` (the adjoint: up and
down swapped, the filter flipped, the padding mirrored), so any order of derivative is available.
The filter is a constant for that Function; if ``f`` itself requires grad, the differentiable
textbook composition :func:`_upfirdn2d_naive` is used instead.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import custom_ops
from torch_utils.ops import _upfirdn2d_ref

log = logging.getLogger(__name__)

_PLUGIN_NAME = "nerffs_upfirdn2d_plugin"

Scaling = int | Sequence[int]
Padding = int | Sequence[int]


def setup_filter(f: Any, device: torch.device = torch.device("cpu"), normalize: bool = True,
                 flip_filter: bool = False, gain: float = 1, separable: bool | None = None) -> torch.Tensor:
    """Builds a float32 FIR filter tensor for :func:`upfirdn2d` from taps.

    Args:
        f: Taps: ``None`` (identity), a scalar, 1-D taps ``[k]`` or a 2-D filter ``[fh, fw]``; list,
            numpy array or tensor.
        device: Device of the result.
        normalize: Divide by the sum of the taps so that the filter has unit DC gain.
        flip_filter: Flip the taps (along both axes for 2-D).
        gain: Overall DC gain of the 2-D filter: a 2-D result is multiplied by ``gain``; a separable
            1-D result by ``sqrt(gain)``, so that its implied outer product ``f[:, None] * f[None, :]``
            has gain ``gain``.
        separable: Return 1-D taps (``True``) or a 2-D filter (``False``; 1-D taps become their outer
            product). Default: keep the dimensionality of ``f``.

    Returns:
        ``[k]`` when separable, else ``[fh, fw]``; float32 on ``device``.

    Raises:
        ValueError: empty or more than 2-D taps, zero-sum taps with ``normalize``, 2-D taps with
            ``separable=True``, or a negative ``gain`` for a separable result.
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f).detach().to(dtype=torch.float32, device="cpu")
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f"filter taps must be 1-D or 2-D and non-empty, got shape {list(f.shape)}")
    if separable is None:
        separable = f.ndim == 1
    if separable and f.ndim == 2:
        raise ValueError("separable=True needs 1-D taps, got a 2-D filter")
    if normalize:
        total = float(f.sum())
        if total == 0:
            raise ValueError("cannot normalize filter taps that sum to zero")
        f = f / total
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    if not separable and f.ndim == 1:
        f = f[:, None] * f[None, :]
    if f.ndim == 1:
        if gain < 0:
            raise ValueError(f"a separable filter cannot carry a negative gain ({gain}); use separable=False")
        f = f * gain ** 0.5
    else:
        f = f * gain
    return f.to(device)


def upfirdn2d(x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 1, down: Scaling = 1, padding: Padding = 0,
              flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Upsamples, pads, FIR-filters and downsamples a batch of 2-D maps (see the module docstring).

    Args:
        x: Input ``[N, C, H, W]``, floating point.
        f: Filter: 1-D taps ``[k]`` (separable, same taps along x and y), 2-D ``[fh, fw]``, or ``None``
            for the identity. Usually made by :func:`setup_filter`. Treated as a constant unless it
            requires grad.
        up: Upsampling factor, int or ``[ux, uy]``.
        down: Downsampling factor, int or ``[dx, dy]``.
        padding: int, ``[px, py]`` or ``[px0, px1, py0, py1]`` (x = width: left, right, top, bottom);
            negative values crop.
        flip_filter: Use ``f`` as a correlation kernel instead of flipping it (true convolution).
        gain: Multiplies the filter.
        impl: ``'auto'``, ``'cuda'`` or ``'ref'`` (see :mod:`torch_utils.custom_ops`).

    Returns:
        ``[N, C, (H * uy + py0 + py1 - fh) // dy + 1, (W * ux + px0 + px1 - fw) // dx + 1]``, dtype of ``x``.

    Raises:
        ValueError: bad shapes or arguments, or an empty output.
        RuntimeError: ``impl='cuda'`` on a CPU tensor or when the plugin cannot be built.
    """
    f = _check_inputs(x, f)
    up, down, padding = _parse_scaling(up), _parse_scaling(down), _parse_padding(padding)
    _output_hw(x, f, up, down, padding)  # validates
    plugin = custom_ops.select_impl(impl, x, _PLUGIN_NAME, _load_plugin)
    if f.requires_grad and torch.is_grad_enabled():
        log.debug("upfirdn2d: the filter requires grad; using the differentiable textbook composition")
        return _upfirdn2d_naive(x, f, up, down, padding, flip_filter, gain)
    if plugin is None:
        kernel = "ref"
        fx, fy = _separate(f)
    else:
        kernel = "cuda"
        fx, fy = (f, f) if f.ndim == 1 else (f, None)
    return _upfirdn2d_function(kernel, up, down, padding, bool(flip_filter), float(gain)).apply(x, fx, fy)


def filter2d(x: torch.Tensor, f: torch.Tensor | None, padding: Padding = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Filters with ``f`` keeping the size: pads by ``fw // 2`` before and ``(fw - 1) // 2`` after (same for y).

    For the 4-tap generator blur this is padding (left 2, right 1, top 2, bottom 1) (spec 2.4).

    Args:
        x: Input ``[N, C, H, W]``.
        f: Filter (see :func:`upfirdn2d`).
        padding: Extra padding on top of the centring padding (int, ``[px, py]`` or ``[px0, px1, py0, py1]``).
        flip_filter: See :func:`upfirdn2d`.
        gain: See :func:`upfirdn2d`.
        impl: See :func:`upfirdn2d`.

    Returns:
        ``[N, C, H + py0 + py1, W + px0 + px1]``.
    """
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 2, padding: Padding = 0,
               flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """Zero-insertion upsampling followed by the FIR ``f`` with gain ``gain * ux * uy``, output exactly ``up`` x larger.

    The centring padding is ``(fw + ux - 1) // 2`` before and ``(fw - ux) // 2`` after (same for y):
    (2, 1, 2, 1) for the generator's 4-tap filter and ``up=2`` (spec 2.5).

    Args:
        x: Input ``[N, C, H, W]``.
        f: Filter (see :func:`upfirdn2d`), normally with unit DC gain.
        up: Upsampling factor, int or ``[ux, uy]``.
        padding: Extra padding (int, ``[px, py]`` or ``[px0, px1, py0, py1]``).
        flip_filter: See :func:`upfirdn2d`.
        gain: Extra gain; the ``ux * uy`` that compensates the inserted zeros is always applied.
        impl: See :func:`upfirdn2d`.

    Returns:
        ``[N, C, H * uy + py0 + py1, W * ux + px0 + px1]``.
    """
    ux, uy = _parse_scaling(up)
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = [px0 + (fw + ux - 1) // 2, px1 + (fw - ux) // 2, py0 + (fh + uy - 1) // 2, py1 + (fh - uy) // 2]
    return upfirdn2d(x, f, up=(ux, uy), padding=pad, flip_filter=flip_filter, gain=gain * ux * uy, impl=impl)


def downsample2d(x: torch.Tensor, f: torch.Tensor | None, down: Scaling = 2, padding: Padding = 0,
                 flip_filter: bool = False, gain: float = 1, impl: str = "auto") -> torch.Tensor:
    """FIR ``f`` followed by keeping every ``down``-th sample; the output is ``H // dy`` x ``W // dx``.

    The centring padding is ``(fw - dx + 1) // 2`` before and ``(fw - dx) // 2`` after (same for y).

    Args:
        x: Input ``[N, C, H, W]``.
        f: Filter (see :func:`upfirdn2d`), normally with unit DC gain.
        down: Downsampling factor, int or ``[dx, dy]``.
        padding: Extra padding (int, ``[px, py]`` or ``[px0, px1, py0, py1]``).
        flip_filter: See :func:`upfirdn2d`.
        gain: See :func:`upfirdn2d`.
        impl: See :func:`upfirdn2d`.

    Returns:
        ``[N, C, (H + py0 + py1) // dy, (W + px0 + px1) // dx]``.
    """
    dx, dy = _parse_scaling(down)
    fw, fh = _filter_size(f)
    px0, px1, py0, py1 = _parse_padding(padding)
    pad = [px0 + (fw - dx + 1) // 2, px1 + (fw - dx) // 2, py0 + (fh - dy + 1) // 2, py1 + (fh - dy) // 2]
    return upfirdn2d(x, f, down=(dx, dy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


# ----------------------------------------------------------------------------------------------------------
# Argument handling.


def _as_tuple(value: Any) -> tuple:
    """``tuple(value)``, or ``()`` when ``value`` is not iterable (so that the caller reports it)."""
    try:
        return tuple(value)
    except TypeError:
        return ()


def _parse_scaling(value: Scaling) -> tuple[int, int]:
    """int or ``[sx, sy]`` -> ``(sx, sy)``, each an int >= 1."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else _as_tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in pair):
        raise ValueError(f"up/down must be an int >= 1 or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _parse_padding(value: Padding) -> tuple[int, int, int, int]:
    """int, ``[px, py]`` or ``[px0, px1, py0, py1]`` -> ``(px0, px1, py0, py1)``."""
    if isinstance(value, (int, np.integer)):
        pads = (value,) * 4
    else:
        pads = _as_tuple(value)
        if len(pads) == 2:
            pads = (pads[0], pads[0], pads[1], pads[1])
    if len(pads) != 4 or not all(isinstance(p, (int, np.integer)) for p in pads):
        raise ValueError(f"padding must be an int, [px, py] or [px0, px1, py0, py1], got {value!r}")
    return tuple(int(p) for p in pads)  # type: ignore[return-value]


def _filter_size(f: torch.Tensor | None) -> tuple[int, int]:
    """``(fw, fh)`` of a filter; 1-D taps count along both axes."""
    if f is None:
        return 1, 1
    if f.ndim == 1:
        return f.shape[0], f.shape[0]
    if f.ndim == 2:
        return f.shape[1], f.shape[0]
    raise ValueError(f"filter must be 1-D or 2-D, got shape {list(f.shape)}")


def _check_inputs(x: torch.Tensor, f: torch.Tensor | None) -> torch.Tensor:
    """Validates ``x`` and ``f``; returns the filter (``None`` -> ``[[1.]]``)."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point [N, C, H, W] tensor, got {getattr(x, 'shape', type(x))}")
    if f is None:
        return torch.ones([1, 1], dtype=torch.float32, device=x.device)
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2) or f.numel() == 0 or not f.is_floating_point():
        raise ValueError(f"f must be a non-empty floating-point 1-D or 2-D tensor, got {getattr(f, 'shape', f)}")
    return f


def _output_hw(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], down: tuple[int, int],
               padding: tuple[int, int, int, int]) -> tuple[int, int]:
    """Output ``(H, W)`` of :func:`upfirdn2d`; raises ``ValueError`` if either would be < 1."""
    fw, fh = _filter_size(f)
    h = x.shape[2] * up[1] + padding[2] + padding[3] - fh
    w = x.shape[3] * up[0] + padding[0] + padding[1] - fw
    if h < 0 or w < 0:
        raise ValueError(f"upfirdn2d output would be empty: input {list(x.shape)}, filter {list(f.shape)}, "
                         f"up {up}, padding {padding}")
    return h // down[1] + 1, w // down[0] + 1


def _separate(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(fx, fy)`` 1-D taps along x and y when ``f`` is separable, else ``(f, None)``.

    A 2-D filter is separable when it has rank 1: with ``(r, c)`` its largest entry,
    ``f = f[:, c] (outer) f[r, :] / f[r, c]``, checked to a relative 1e-6.
    """
    if f.ndim == 1:
        return f, f
    fd = f.detach().to(device="cpu", dtype=torch.float64)
    flat = int(fd.abs().argmax())
    r, c = divmod(flat, fd.shape[1])
    pivot = float(fd[r, c])
    if pivot == 0:
        return f, None
    fy, fx = fd[:, c], fd[r, :] / pivot
    if float((fy[:, None] * fx[None, :] - fd).abs().max()) > 1e-6 * abs(pivot):
        return f, None
    return fx, fy


# ----------------------------------------------------------------------------------------------------------
# CUDA kernel and the shared autograd Function.


def _load_plugin():
    """Builds (first call) and returns the upfirdn2d plugin."""
    return custom_ops.get_plugin(_PLUGIN_NAME, sources=["upfirdn2d.cpp", "upfirdn2d.cu"], headers=["upfirdn2d.h"],
                                 source_dir=os.path.dirname(__file__), extra_cuda_cflags=["--use_fast_math"])


def _cuda_forward(x: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor | None, up: tuple[int, int],
                  down: tuple[int, int], padding: tuple[int, int, int, int], flip_filter: bool,
                  gain: float) -> torch.Tensor:
    """Plugin upfirdn2d; a separable filter runs as an x pass then a y pass."""
    plugin = _load_plugin()
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32  # the kernel accumulates in this type
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    if fy is None:
        f2 = fx.to(device=x.device, dtype=acc).contiguous()
        return plugin.upfirdn2d(x, f2, ux, uy, dx, dy, px0, px1, py0, py1, flip_filter, gain)
    row = fx.to(device=x.device, dtype=acc).reshape(1, -1).contiguous()
    col = fy.to(device=x.device, dtype=acc).reshape(-1, 1).contiguous()
    y = plugin.upfirdn2d(x, row, ux, 1, dx, 1, px0, px1, 0, 0, flip_filter, gain)
    return plugin.upfirdn2d(y, col, 1, uy, 1, dy, 0, 0, py0, py1, flip_filter, 1.0)


# Per-static-args cache: (kernel, up, down, padding, flip_filter, gain) -> autograd Function.
_FUNCTIONS: dict[tuple, type[torch.autograd.Function]] = {}


def _upfirdn2d_function(kernel: str, up: tuple[int, int], down: tuple[int, int], padding: tuple[int, int, int, int],
                        flip_filter: bool, gain: float) -> type[torch.autograd.Function]:
    """The autograd Function for these static arguments; ``kernel`` is ``'ref'`` or ``'cuda'``.

    Backward is the adjoint upfirdn2d. Per axis the forward is ``D_down C_w P U_up``; its transpose is
    ``U_up^T P^T C_w^T D_down^T``: zero-insert by ``down``, correlate with the reversed weights over
    the full support (pad ``k - 1``), undo the padding, keep every ``up``-th sample. Trailing outputs
    that the forward's downsampling never reached are cropped, hence the extra term on the right.
    """
    key = (kernel, up, down, padding, flip_filter, gain)
    if key in _FUNCTIONS:
        return _FUNCTIONS[key]
    forward_impl = _upfirdn2d_ref.ref_forward if kernel == "ref" else _cuda_forward
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding

    class UpFirDn2d(torch.autograd.Function):
        """upfirdn2d of ``x`` (differentiable) with the constant filter ``(fx, fy)``."""

        @staticmethod
        def forward(ctx, x, fx, fy):  # noqa: D102 - autograd protocol
            ctx.save_for_backward(fx, fy)
            ctx.in_hw = x.shape[2:]
            return forward_impl(x, fx, fy, up, down, padding, flip_filter, gain)

        @staticmethod
        def backward(ctx, dout):  # noqa: D102 - autograd protocol
            fx, fy = ctx.saved_tensors
            if not ctx.needs_input_grad[0]:
                return None, None, None
            kw = fx.shape[-1]
            kh = fx.shape[0] if fy is None else fy.shape[0]
            (h, w), (ho, wo) = ctx.in_hw, dout.shape[2:]
            unused_x = wo * dx - (w * ux + px0 + px1 - kw + 1)
            unused_y = ho * dy - (h * uy + py0 + py1 - kh + 1)
            pad = (kw - 1 - px0, kw - 1 - px1 - unused_x, kh - 1 - py0, kh - 1 - py1 - unused_y)
            adjoint = _upfirdn2d_function(kernel, down, up, pad, not flip_filter, gain)
            return adjoint.apply(dout, fx, fy), None, None

    _FUNCTIONS[key] = UpFirDn2d
    return UpFirDn2d


def _upfirdn2d_naive(x: torch.Tensor, f: torch.Tensor | None, up: Scaling = 1, down: Scaling = 1,
                     padding: Padding = 0, flip_filter: bool = False, gain: float = 1) -> torch.Tensor:
    """Textbook upfirdn2d: explicit zero insertion, ``F.pad``, full 2-D depthwise ``conv2d``, strided slicing.

    Slow and memory-hungry; it is the independent reference of the tests and the path taken when the
    filter itself needs a gradient. Arguments as :func:`upfirdn2d`.
    """
    f = _check_inputs(x, f)
    (ux, uy), (dx, dy) = _parse_scaling(up), _parse_scaling(down)
    px0, px1, py0, py1 = _parse_padding(padding)
    f2 = f if f.ndim == 2 else f[:, None] * f[None, :]
    n, c, h, w = x.shape
    xu = x.new_zeros([n, c, h * uy, w * ux])
    xu[:, :, ::uy, ::ux] = x
    xp = F.pad(xu, [px0, px1, py0, py1])
    weight = f2 if flip_filter else f2.flip([0, 1])  # conv2d correlates; flipping makes it a convolution
    weight = (weight * gain).to(device=x.device, dtype=x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(xp, weight, groups=c)[:, :, ::dy, ::dx]
