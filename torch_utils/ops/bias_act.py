"""Fused bias + activation + gain + clamp: ``y = clamp(act(x + b) * gain, -clamp, +clamp)``.

Spec: spec-stylenerf.md sections 2.1 and 5 (used by every fully connected and convolution layer of
the StyleNeRF generator). Two implementations with identical semantics (style rule 1):

* ``'ref'``: pure torch, differentiable to any order through autograd;
* ``'cuda'``: one elementwise kernel of the plugin ``bias_act.cu`` (forward, first and second
  derivative), wrapped in autograd Functions cached per static arguments.

``impl='auto'`` picks between them with :func:`torch_utils.custom_ops.select_impl`.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Callable

import torch
import torch.nn.functional as F

from torch_utils import custom_ops

log = logging.getLogger(__name__)

_PLUGIN_NAME = "nerffs_bias_act_plugin"


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One supported activation.

    Attributes:
        name: Key in :data:`activation_funcs`.
        func: ``func(x, alpha, inplace) -> Tensor``, the torch formula.
        def_alpha: Default ``alpha`` (slope of lrelu, scale of elu; ignored by the others).
        def_gain: Default ``gain``; sqrt(2) for the ReLU family so that the output keeps the input's
            second moment (He initialisation argument, as in the StyleGAN2 equalized learning rate).
        cuda_idx: Activation code understood by the CUDA kernel (see ``bias_act.h``).
        has_2nd_grad: Whether the second derivative is non-zero somewhere.
    """

    name: str
    func: Callable[[torch.Tensor, float, bool], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int
    has_2nd_grad: bool


def _linear(x: torch.Tensor, alpha: float, inplace: bool) -> torch.Tensor:
    return x


def _tanh(x: torch.Tensor, alpha: float, inplace: bool) -> torch.Tensor:
    return x.tanh_() if inplace else torch.tanh(x)


def _sigmoid(x: torch.Tensor, alpha: float, inplace: bool) -> torch.Tensor:
    return x.sigmoid_() if inplace else torch.sigmoid(x)


activation_funcs: dict[str, ActivationSpec] = {spec.name: spec for spec in (
    ActivationSpec("linear", _linear, 0.0, 1.0, 0, False),
    ActivationSpec("relu", lambda x, a, inplace: F.relu(x, inplace=inplace), 0.0, math.sqrt(2), 1, False),
    ActivationSpec("lrelu", lambda x, a, inplace: F.leaky_relu(x, a, inplace=inplace), 0.2, math.sqrt(2), 2, False),
    ActivationSpec("tanh", _tanh, 0.0, 1.0, 3, True),
    ActivationSpec("sigmoid", _sigmoid, 0.0, 1.0, 4, True),
    ActivationSpec("elu", lambda x, a, inplace: F.elu(x, a, inplace=inplace), 1.0, 1.0, 5, True),
    ActivationSpec("selu", lambda x, a, inplace: F.selu(x, inplace=inplace), 0.0, 1.0, 6, True),
    ActivationSpec("softplus", lambda x, a, inplace: F.softplus(x), 0.0, 1.0, 7, True),
    ActivationSpec("swish", lambda x, a, inplace: F.silu(x, inplace=inplace), 0.0, math.sqrt(2), 8, True),
)}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None,
             impl: str = "auto") -> torch.Tensor:
    """Adds a bias along one axis, applies an activation, scales and clamps: ``clamp(act(x + b) * gain)``.

    Args:
        x: Input of any shape, floating point.
        b: Bias ``[x.shape[dim]]``, broadcast along ``dim`` (cast to ``x.dtype``); ``None`` for no bias.
        dim: Axis of ``x`` that ``b`` runs along (negative values count from the end).
        act: Activation name, a key of :data:`activation_funcs`: ``'linear'``, ``'relu'``, ``'lrelu'``,
            ``'tanh'``, ``'sigmoid'``, ``'elu'``, ``'selu'``, ``'softplus'`` or ``'swish'``.
        alpha: Activation parameter: lrelu negative slope (default 0.2) or elu scale (default 1).
        gain: Output scale (default: the activation's ``def_gain``: sqrt(2) for relu/lrelu/swish, else 1).
        clamp: If given (>= 0), the output is clamped to ``[-clamp, clamp]`` after the gain.
        impl: ``'auto'``, ``'cuda'`` or ``'ref'`` (see :mod:`torch_utils.custom_ops`).

    Returns:
        Tensor of the shape and dtype of ``x``.

    Raises:
        ValueError: unknown activation, bad ``dim``/``b`` shape or negative ``clamp``.
        RuntimeError: ``impl='cuda'`` on a CPU tensor or when the plugin cannot be built.
    """
    dim, spec, alpha, gain = _check_args(x, b, dim, act, alpha, gain, clamp)
    plugin = custom_ops.select_impl(impl, x, _PLUGIN_NAME, _load_plugin)
    if plugin is None:
        return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
    return _bias_act_cuda(dim, spec.name, alpha, gain, clamp).apply(x, b)


def _check_args(x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float | None,
                gain: float | None, clamp: float | None) -> tuple[int, ActivationSpec, float, float]:
    """Validates the arguments of :func:`bias_act` and fills in the defaults."""
    if act not in activation_funcs:
        raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(activation_funcs)}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {type(x).__name__} "
                         f"{getattr(x, 'dtype', '')}")
    if not -x.ndim <= dim < max(x.ndim, 1):
        raise ValueError(f"dim={dim} is out of range for a tensor of shape {list(x.shape)}")
    dim = dim % x.ndim if x.ndim else 0
    if b is not None and (b.ndim != 1 or x.ndim == 0 or b.shape[0] != x.shape[dim]):
        raise ValueError(f"bias of shape {list(b.shape)} does not fit dimension {dim} of x {list(x.shape)}")
    if clamp is not None and clamp < 0:
        raise ValueError(f"clamp must be None or >= 0, got {clamp}")
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    return dim, spec, alpha, gain


def _bias_act_ref(x: torch.Tensor, b: torch.Tensor | None, dim: int, spec: ActivationSpec, alpha: float,
                  gain: float, clamp: float | None) -> torch.Tensor:
    """Pure-torch ``clamp(act(x + b) * gain)``; see :func:`bias_act` for the arguments.

    Without autograd recording, every step after the first new tensor runs in place: these maps are
    large on CPU (up to 64 x 1024 x 1024 in the generator) and fresh allocations cost page faults.
    """
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad)))
    owned = False  # whether y is a tensor this function allocated (and may therefore overwrite)
    y = x
    if b is not None:
        y = y + b.to(x.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
        owned = True
    if spec.name != "linear":
        y = spec.func(y, alpha, inplace and owned)
        owned = True
    if gain != 1:
        y = y.mul_(gain) if inplace and owned else y * gain
        owned = True
    if clamp is not None:
        y = y.clamp_(-clamp, clamp) if inplace and owned else y.clamp(-clamp, clamp)
    return y


def _load_plugin():
    """Builds (first call) and returns the bias_act plugin."""
    return custom_ops.get_plugin(_PLUGIN_NAME, sources=["bias_act.cpp", "bias_act.cu"], headers=["bias_act.h"],
                                 source_dir=os.path.dirname(__file__), extra_cuda_cflags=["--use_fast_math"])


def _dense(t: torch.Tensor) -> torch.Tensor:
    """``t`` itself when its memory is dense and non-overlapping (any dim order), else a contiguous copy.

    Dense means: ordered by stride, the dims of size > 1 have the strides of a contiguous tensor.
    """
    expected = 1
    for size, stride in sorted(((n, s) for n, s in zip(t.shape, t.stride()) if n != 1), key=lambda p: p[1]):
        if stride != expected:
            return t.contiguous()
        expected *= size
    return t


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``t`` laid out with exactly the strides of ``ref`` (the kernel indexes both with one linear index)."""
    if t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)


# Per-static-args cache: (dim, act, alpha, gain, clamp) -> autograd Function running the plugin.
_CUDA_FUNCTIONS: dict[tuple, type[torch.autograd.Function]] = {}


def _bias_act_cuda(dim: int, act: str, alpha: float, gain: float,
                   clamp: float | None) -> type[torch.autograd.Function]:
    """Returns the autograd Function that evaluates :func:`bias_act` with the plugin for these static args.

    Forward: ``order=0`` kernel. Backward: ``dx = dy * gain * act'(x + b) * [|y| <= clamp]`` (``order=1``),
    ``db`` = sum of ``dx`` over all axes but ``dim``. Double backward differentiates that formula: it is
    linear in ``dy`` (same ``order=1`` kernel) and its derivative in ``x`` uses ``act''`` (``order=2``);
    the clamp mask is piecewise constant and contributes nothing.
    """
    key = (dim, act, alpha, gain, clamp)
    if key in _CUDA_FUNCTIONS:
        return _CUDA_FUNCTIONS[key]
    spec = activation_funcs[act]
    clamp_arg = -1.0 if clamp is None else float(clamp)

    def run(x: torch.Tensor, b: torch.Tensor | None, dy: torch.Tensor | None, order: int) -> torch.Tensor:
        b_arg = b.to(x.dtype).contiguous() if b is not None else x.new_empty([0])
        dy_arg = _like(dy, x) if dy is not None else x.new_empty([0])
        return _load_plugin().bias_act(x, b_arg, dy_arg, dim, spec.cuda_idx, order, alpha, gain, clamp_arg)

    def reduce_db(dx: torch.Tensor, b: torch.Tensor | None, needed: bool) -> torch.Tensor | None:
        if b is None or not needed:
            return None
        return dx.sum([i for i in range(dx.ndim) if i != dim]).to(b.dtype)

    class BiasActCudaGrad(torch.autograd.Function):
        """``dx = dy * d y / d x`` as a differentiable function of ``(dy, x, b)``."""

        @staticmethod
        def forward(ctx, dy, x, b):  # noqa: D102 - autograd protocol
            ctx.save_for_backward(dy, x, b)
            return run(x, b, dy, order=1)

        @staticmethod
        def backward(ctx, d_dx):  # noqa: D102 - autograd protocol
            dy, x, b = ctx.saved_tensors
            d_dy = BiasActCudaGrad.apply(d_dx, x, b) if ctx.needs_input_grad[0] else None
            d_x = None
            if spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
                d_x = run(x, b, _like(d_dx, x) * _like(dy, x), order=2)
            d_b = reduce_db(d_x, b, ctx.needs_input_grad[2]) if d_x is not None else None
            return d_dy, d_x, d_b

    class BiasActCuda(torch.autograd.Function):
        """``y = clamp(act(x + b) * gain)`` through the plugin."""

        @staticmethod
        def forward(ctx, x, b):  # noqa: D102 - autograd protocol
            x = _dense(x)
            ctx.save_for_backward(x, b)
            return run(x, b, None, order=0)

        @staticmethod
        def backward(ctx, dy):  # noqa: D102 - autograd protocol
            x, b = ctx.saved_tensors
            dx = BiasActCudaGrad.apply(_like(dy, x), x, b)
            return (dx if ctx.needs_input_grad[0] else None), reduce_db(dx, b, ctx.needs_input_grad[1])

    _CUDA_FUNCTIONS[key] = BiasActCuda
    return BiasActCuda
