"""Fast pure-torch kernel of :func:`torch_utils.ops.upfirdn2d.upfirdn2d` (the ``'ref'`` implementation).

Written for CPU speed, because the generator's upsampler spends most of its CPU time in these FIR
filters (spec-stylenerf.md section 8):

* a separable filter runs as two 1-D passes, on blocks of channels whose intermediate map fits in
  cache (a large intermediate would cost a fresh, page-faulting allocation and a trip through memory);
* each pass is polyphase: every output sub-grid (phase) of an upsampling is a short sum of shifted
  slices of the *input*, written straight into its strided place in the output, so the inserted
  zeros are never stored or multiplied; a downsampling reads the input with a step instead of
  computing outputs that would be discarded.

No autograd here: the caller wraps :func:`ref_forward` in an autograd Function.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import torch


# Target size of the intermediate map of one block of channels in a separable reference pass (fits in L2/L3).
_CACHE_BLOCK_BYTES = 8 << 20


@dataclasses.dataclass(frozen=True)
class _Phase:
    """One output sub-grid along an axis: ``out[o * up + index] = sum_t w[t] * x[o * step + shift_t]``."""

    index: int
    size: int  # number of outputs in this phase
    step: int  # input stride per output (the down factor; 1 for upsampling phases)
    taps: tuple[tuple[int, int], ...]  # (tap t, input shift)


def _axis_phases(length: int, k: int, up: int, down: int, pad0: int, pad1: int) -> tuple[list[_Phase], int]:
    """Phases of one axis (``up == 1`` or ``down == 1``) and the allocated output length (multiple of ``up``).

    With ``z`` the zero-inserted, padded input, output ``m`` is ``sum_t w[t] z[m * down + t]`` and
    ``z[j] = x[(j - pad0) / up]`` when ``up`` divides ``j - pad0``, else 0.
    """
    full = length * up + pad0 + pad1 - k + 1  # outputs before downsampling
    if up == 1:
        size = (full - 1) // down + 1
        return [_Phase(0, size, down, tuple((t, t - pad0) for t in range(k)))], size
    phases = []
    for r in range(min(up, full)):
        taps = tuple((t, (r + t - pad0) // up) for t in range(k) if (r + t - pad0) % up == 0)
        phases.append(_Phase(r, (full - 1 - r) // up + 1, 1, taps))
    return phases, ((full - 1) // up + 1) * up


def _accumulate(view: torch.Tensor, x: torch.Tensor, w: Any, dims: tuple[int, ...],
                phases: tuple[_Phase, ...]) -> None:
    """Writes ``view = sum_terms w[t...] * x[shifted, strided slice]`` (one output phase per filtered dim)."""
    terms = []
    for taps in itertools.product(*(p.taps for p in phases)):
        coef = w
        for t, _ in taps:
            coef = coef[t]
        if coef == 0:
            continue
        out_index, in_index, covers_all = [slice(None)] * x.ndim, [slice(None)] * x.ndim, True
        for dim, phase, (_, shift) in zip(dims, phases, taps):
            lo = max(0, -(shift // phase.step))  # first output whose input sample exists
            hi = min(phase.size - 1, (x.shape[dim] - 1 - shift) // phase.step)
            if lo > hi:
                break
            covers_all = covers_all and lo == 0 and hi == phase.size - 1
            out_index[dim] = slice(lo, hi + 1)
            in_index[dim] = slice(lo * phase.step + shift, hi * phase.step + shift + 1, phase.step)
        else:
            terms.append((coef, covers_all, tuple(out_index), tuple(in_index)))
    # Start from a term that covers the whole phase (saves zero-filling), then add the others in place.
    first = next((term for term in terms if term[1]), None)
    if first is None:
        view.zero_()
    else:
        torch.mul(x[first[3]], first[0], out=view)
    for term in terms:
        if term is not first:
            view[term[2]].add_(x[term[3]], alpha=term[0])


def _fir_pass(x: torch.Tensor, w: Any, dims: tuple[int, ...], ups: tuple[int, ...], downs: tuple[int, ...],
              pads: tuple[tuple[int, int], ...], out: torch.Tensor | None = None) -> torch.Tensor:
    """upfirdn along ``dims`` of ``x`` with correlation weights ``w`` (nested lists, one level per dim).

    The result is written to ``out`` when given (it must have the result's shape), else to a new tensor.
    """
    if any(u > 1 and d > 1 for u, d in zip(ups, downs)):  # rare: upsample fully, then subsample
        y = _fir_pass(x, w, dims, ups, tuple(1 if u > 1 else d for u, d in zip(ups, downs)), pads)
        index = [slice(None)] * x.ndim
        for dim, u, d in zip(dims, ups, downs):
            if u > 1:
                index[dim] = slice(None, None, d)
        return _deliver(y[tuple(index)], out)
    ks, level = [], w
    for _ in dims:
        ks.append(len(level))
        level = level[0]
    axes = [_axis_phases(x.shape[dim], k, u, d, p0, p1) for dim, k, u, d, (p0, p1) in zip(dims, ks, ups, downs, pads)]
    shape = list(x.shape)
    for dim, (_, alloc) in zip(dims, axes):
        shape[dim] = alloc
    buffer = out if out is not None and list(out.shape) == shape else x.new_empty(shape)
    grid = buffer  # up-sampled dims are split into (position, phase) so that each phase is a strided view
    for dim, u, (_, alloc) in sorted(zip(dims, ups, axes), key=lambda item: -item[0]):
        if u > 1:
            grid = grid.unflatten(dim, (alloc // u, u))
    for phases in itertools.product(*(phase_list for phase_list, _ in axes)):
        index: list[Any] = []
        for dim in range(x.ndim):
            if dim in dims and ups[dims.index(dim)] > 1:
                phase = phases[dims.index(dim)]
                index += [slice(0, phase.size), phase.index]
            else:
                index.append(slice(None))
        _accumulate(grid[tuple(index)], x, w, dims, phases)
    result = buffer
    for dim, k, u, (p0, p1) in zip(dims, ks, ups, pads):
        result = result.narrow(dim, 0, x.shape[dim] * u + p0 + p1 - k + 1) if u > 1 else result
    return _deliver(result, out)


def _deliver(result: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """``result`` as a contiguous tensor, or copied into ``out`` unless it already is ``out``."""
    if out is None:
        return result.contiguous()
    if result.data_ptr() != out.data_ptr() or result.stride() != out.stride():
        out.copy_(result)
    return out


def _taps(f: torch.Tensor, flip_filter: bool, gain: float) -> Any:
    """Correlation weights as nested Python floats: ``f`` flipped (true convolution) unless ``flip_filter``."""
    fd = f.detach().to(device="cpu", dtype=torch.float64)
    if not flip_filter:
        fd = fd.flip(list(range(fd.ndim)))
    return (fd * gain).tolist()


def ref_forward(x: torch.Tensor, fx: torch.Tensor, fy: torch.Tensor | None, up: tuple[int, int],
                 down: tuple[int, int], padding: tuple[int, int, int, int], flip_filter: bool,
                 gain: float) -> torch.Tensor:
    """Pure-torch upfirdn2d (no autograd); ``fy=None`` means ``fx`` is a 2-D filter."""
    (ux, uy), (dx, dy), (px0, px1, py0, py1) = up, down, padding
    if fy is None:
        return _fir_pass(x, _taps(fx, flip_filter, gain), (2, 3), (uy, ux), (dy, dx), ((py0, py1), (px0, px1)))
    out_h = (x.shape[2] * uy + py0 + py1 - fy.shape[0]) // dy + 1
    out_w = (x.shape[3] * ux + px0 + px1 - fx.shape[0]) // dx + 1
    x_pass = (_taps(fx, flip_filter, 1.0), (3,), (ux,), (dx,), ((px0, px1),))  # _fir_pass arguments
    y_pass = (_taps(fy, flip_filter, 1.0), (2,), (uy,), (dy,), ((py0, py1),))
    # Shrink first / grow last, so that the intermediate map is the smaller of the two orders.
    if out_w * x.shape[2] <= out_h * x.shape[3]:
        first, second, mid_hw = x_pass, y_pass, x.shape[2] * out_w
    else:
        first, second, mid_hw = y_pass, x_pass, out_h * x.shape[3]
    first = ([v * gain for v in first[0]], *first[1:])
    out = x.new_empty([x.shape[0], x.shape[1], out_h, out_w])
    if out.numel() == 0:
        return out
    # On CPU, run the two passes on blocks of channels whose intermediate map fits in cache: a large
    # intermediate would cost a fresh (page-faulting) allocation and a round trip through memory.
    # (On a GPU, blocks would only multiply kernel launches.)
    block_bytes = _CACHE_BLOCK_BYTES if x.device.type == "cpu" else x.numel() * 16 * x.element_size()
    per_block = max(1, block_bytes // max(1, mid_hw * x.element_size()))
    n_block, c_block = (max(1, per_block // x.shape[1]), x.shape[1]) if per_block >= x.shape[1] else (1, per_block)
    for n0 in range(0, x.shape[0], n_block):
        for c0 in range(0, x.shape[1], c_block):
            block = (slice(n0, n0 + n_block), slice(c0, c0 + c_block))
            _fir_pass(_fir_pass(x[block], *first), *second, out=out[block])
    return out
