"""bias_act: reference vs independent numpy formulas, gradients to second order, argument checks, CUDA vs ref."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act as B

SELU_SCALE = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


def _numpy_act(name: str, v: np.ndarray, alpha: float) -> np.ndarray:
    """Textbook definitions, written independently of torch."""
    if name == "linear":
        return v
    if name == "relu":
        return np.maximum(v, 0.0)
    if name == "lrelu":
        return np.where(v > 0, v, alpha * v)
    if name == "tanh":
        return np.tanh(v)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-v))
    if name == "elu":
        return np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0)))
    if name == "selu":
        return SELU_SCALE * np.where(v > 0, v, SELU_ALPHA * np.expm1(np.minimum(v, 0)))
    if name == "softplus":
        return np.log1p(np.exp(v))
    if name == "swish":
        return v / (1.0 + np.exp(-v))
    raise AssertionError(name)


def _expected(x, b, dim, act, alpha, gain, clamp):
    spec = B.activation_funcs[act]
    alpha = spec.def_alpha if alpha is None else alpha
    gain = spec.def_gain if gain is None else gain
    v = x.numpy().copy()
    if b is not None:
        shape = [1] * v.ndim
        shape[dim] = -1
        v = v + b.numpy().reshape(shape)
    y = _numpy_act(act, v, alpha) * gain
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return torch.from_numpy(y)


ACTS = list(B.activation_funcs)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dim", [1, 0, 2, -1])
def test_ref_matches_formula(act: str, with_bias: bool, dim: int) -> None:
    x = torch.randn(3, 4, 5, dtype=torch.float64) * 3
    b = torch.randn(x.shape[dim], dtype=torch.float64) if with_bias else None
    for alpha, gain, clamp in [(None, None, None), (0.3, 1.7, None), (None, 2.0, 0.8), (0.1, None, 0.0)]:
        y = B.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="ref")
        expected = _expected(x, b, dim % x.ndim, act, alpha, gain, clamp)
        torch.testing.assert_close(y, expected, atol=1e-12, rtol=1e-12)


def test_default_gains_and_alphas() -> None:
    sqrt2 = math.sqrt(2)
    expected = {"linear": 1, "relu": sqrt2, "lrelu": sqrt2, "tanh": 1, "sigmoid": 1, "elu": 1, "selu": 1,
                "softplus": 1, "swish": sqrt2}
    assert {name: spec.def_gain for name, spec in B.activation_funcs.items()} == pytest.approx(expected)
    assert B.activation_funcs["lrelu"].def_alpha == pytest.approx(0.2)
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(B.bias_act(x, act="lrelu", dim=0), torch.tensor([-0.2, 2.0]) * sqrt2)


def test_input_not_modified_and_no_grad_path_equal() -> None:
    x = torch.randn(2, 3, 4, 4)
    b = torch.randn(3)
    x_before = x.clone()
    for act in ACTS:
        for bias in (None, b):
            with torch.no_grad():
                fast = B.bias_act(x, bias, act=act, gain=1.3, clamp=0.9, impl="ref")
            xg = x.clone().requires_grad_(True)
            graph = B.bias_act(xg, bias, act=act, gain=1.3, clamp=0.9, impl="ref")
            torch.testing.assert_close(fast, graph.detach())
    torch.testing.assert_close(x, x_before, rtol=0, atol=0)
    assert B.bias_act(x, None, impl="ref") is x  # linear, no bias, gain 1: identity


def test_bias_cast_to_input_dtype() -> None:
    x = torch.randn(2, 3, 4).half()
    y = B.bias_act(x, torch.randn(3), act="lrelu", clamp=256, impl="ref")
    assert y.dtype == torch.float16


@pytest.mark.parametrize("act", ACTS)
def test_gradcheck_ref(act: str) -> None:
    x = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    gain = 1.5

    def fn(t, bias):
        return B.bias_act(t, bias, dim=1, act=act, gain=gain, clamp=2.5, impl="ref")

    # Keep every sample away from the kinks (0 for relu/lrelu/elu/selu, the clamp bounds) where finite
    # differences are meaningless.
    with torch.no_grad():
        v = x + b[None, :, None]
        x += torch.where(v.abs() < 1e-2, torch.full_like(v, 0.05), torch.zeros_like(v))
        y = B.bias_act(x, b, dim=1, act=act, gain=gain, impl="ref")
        assert ((y.abs() - 2.5).abs() > 1e-3).all()
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("kwargs,match", [
    ({"act": "gelu"}, "unknown activation"),
    ({"b": torch.zeros(5)}, "bias"),
    ({"b": torch.zeros(3, 1)}, "bias"),
    ({"dim": 3}, "dim"),
    ({"clamp": -1.0}, "clamp"),
    ({"impl": "fast"}, "impl"),
])
def test_argument_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        B.bias_act(torch.zeros(2, 3, 4), **kwargs)


def test_impl_cuda_on_cpu_raises_and_auto_builds_nothing() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        B.bias_act(x, act="relu", impl="cuda")
    B.bias_act(x, torch.zeros(3), act="lrelu", impl="auto")
    assert B._PLUGIN_NAME not in custom_ops._PLUGINS


# ----------------------------------------------------------------------------------------------------------
# CUDA plugin vs reference (skipped without a GPU).


@pytest.mark.cuda
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10), (torch.float16, 2e-3)])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_cuda_matches_ref(cuda_device, act: str, dtype: torch.dtype, tol: float, layout: str) -> None:
    x = (torch.randn(2, 6, 5, 7, device=cuda_device) * 3).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    b = torch.randn(6, device=cuda_device).to(dtype)
    for kwargs in ({}, {"gain": 0.7, "clamp": 1.1}, {"alpha": 0.3, "dim": 1}):
        xr, br = x.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
        xc, bc = x.detach().clone().requires_grad_(True), b.detach().clone().requires_grad_(True)
        yr = B.bias_act(xr, br, act=act, impl="ref", **kwargs)
        yc = B.bias_act(xc, bc, act=act, impl="cuda", **kwargs)
        torch.testing.assert_close(yc, yr, atol=tol * 10, rtol=tol)
        dy = torch.randn_like(yr)
        gr = torch.autograd.grad(yr, (xr, br), dy)
        gc = torch.autograd.grad(yc, (xc, bc), dy)
        for c, r in zip(gc, gr):
            torch.testing.assert_close(c, r, atol=tol * 50, rtol=tol * 10)


@pytest.mark.cuda
@pytest.mark.parametrize("act", ACTS)
def test_cuda_second_order(cuda_device, act: str) -> None:
    x = (torch.randn(2, 3, 4, dtype=torch.float64, device=cuda_device) * 2).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, device=cuda_device, requires_grad=True)

    def fn(t, bias):
        return B.bias_act(t, bias, act=act, gain=1.5, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


# ----------------------------------------------------------------------------------------------------------
# The CUDA path's autograd wiring, run on CPU against an emulated plugin with the kernel's contract
# (bias_act.h). This checks the Python side of the CUDA path and the derivative formulas it relies on.


def _act_derivatives(name: str, v: torch.Tensor, alpha: float):
    """(f, f', f'') of each activation, written out by hand."""
    one, zero = torch.ones_like(v), torch.zeros_like(v)
    pos = v > 0
    s = torch.sigmoid(v)
    if name == "linear":
        return v, one, zero
    if name == "relu":
        return torch.where(pos, v, zero), pos.to(v.dtype), zero
    if name == "lrelu":
        return torch.where(pos, v, alpha * v), torch.where(pos, one, alpha * one), zero
    if name == "tanh":
        t = torch.tanh(v)
        return t, 1 - t * t, -2 * t * (1 - t * t)
    if name == "sigmoid":
        return s, s * (1 - s), s * (1 - s) * (1 - 2 * s)
    if name in ("elu", "selu"):
        scale, a = (1.0, alpha) if name == "elu" else (SELU_SCALE, SELU_ALPHA)
        e = torch.exp(torch.clamp(v, max=0))
        return (scale * torch.where(pos, v, a * (e - 1)), scale * torch.where(pos, one, a * e),
                scale * torch.where(pos, zero, a * e))
    if name == "softplus":
        return torch.nn.functional.softplus(v), s, s * (1 - s)
    if name == "swish":
        return v * s, s * (1 + v * (1 - s)), s * (1 - s) * (2 + v * (1 - 2 * s))
    raise AssertionError(name)


class _EmulatedBiasActPlugin:
    @staticmethod
    def bias_act(x, b, dy, dim, act, order, alpha, gain, clamp):
        name = next(n for n, spec in B.activation_funcs.items() if spec.cuda_idx == act)
        assert order == 0 or (dy.shape == x.shape and dy.stride() == x.stride())
        with torch.no_grad():  # the real kernel's outputs carry no autograd history
            v = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)]) if b.numel() else x
            f, d1, d2 = _act_derivatives(name, v, alpha)
            y = f * gain
            if order == 0:
                return y.clamp(-clamp, clamp) if clamp >= 0 else y
            inside = (y.abs() <= clamp).to(x.dtype) if clamp >= 0 else 1.0
            return dy * gain * (d1 if order == 1 else d2) * inside


@pytest.mark.parametrize("act", ACTS)
def test_cuda_wiring_with_emulated_plugin(monkeypatch: pytest.MonkeyPatch, act: str) -> None:
    monkeypatch.setattr(B, "_load_plugin", lambda: _EmulatedBiasActPlugin)
    x = (torch.randn(2, 3, 4, dtype=torch.float64) * 2).transpose(0, 2).requires_grad_(True)  # non-contiguous
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    spec = B.activation_funcs[act]
    fn_class = B._bias_act_cuda(1, act, 0.3, 1.5, 2.5)
    assert B._bias_act_cuda(1, act, 0.3, 1.5, 2.5) is fn_class  # per-static-args cache
    with torch.no_grad():
        x += torch.where((x + b[None, :, None]).abs() < 1e-2, 0.05, 0.0)
    y = fn_class.apply(x, b)
    torch.testing.assert_close(y, B._bias_act_ref(x, b, 1, spec, 0.3, 1.5, 2.5))
    assert torch.autograd.gradcheck(fn_class.apply, (x, b))
    assert torch.autograd.gradgradcheck(fn_class.apply, (x, b))
