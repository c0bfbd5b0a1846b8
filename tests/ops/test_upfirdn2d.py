"""upfirdn2d and wrappers: fast reference vs the textbook composition, paddings, analytic cases, gradients."""
from __future__ import annotations

import math

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import _upfirdn2d_ref
from torch_utils.ops import upfirdn2d as U

F64 = torch.float64


def _filters() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.rand(3, generator=gen, dtype=F64) + 0.1, torch.rand(4, generator=gen, dtype=F64) + 0.1
    return {
        "1d_k4": torch.rand(4, generator=gen, dtype=F64) - 0.3,
        "1d_k3": torch.rand(3, generator=gen, dtype=F64),
        "1d_k1": torch.tensor([0.7], dtype=F64),
        "2d_rank1_3x4": a[:, None] * b[None, :],
        "2d_general_3x4": torch.rand(3, 4, generator=gen, dtype=F64) - 0.5,
        "2d_general_2x5": torch.rand(2, 5, generator=gen, dtype=F64),
    }


SCALINGS = [(1, 1), (2, 1), (1, 2), (3, 1), (1, 3), (2, 2), (3, 2), ((2, 1), (1, 3)), ((1, 3), 1)]
PADDINGS = [0, 1, [2, 1, 2, 1], [3, 0, 1, 2], [-1, 2, 0, -2], [2, -1, -1, 3], [1, 1]]


@pytest.mark.parametrize("fname", list(_filters()))
@pytest.mark.parametrize("up,down", SCALINGS)
def test_ref_matches_naive(fname: str, up, down) -> None:
    f = _filters()[fname]
    x = torch.randn(2, 3, 7, 9, dtype=F64)
    checked = 0
    for padding in PADDINGS:
        for flip_filter, gain in ((False, 1.0), (True, -2.5)):
            try:
                expected = U._upfirdn2d_naive(x, f, up, down, padding, flip_filter, gain)
            except (RuntimeError, ValueError):
                continue  # the padding crops everything for this filter/scaling
            got = U.upfirdn2d(x, f, up, down, padding, flip_filter, gain, impl="ref")
            assert got.shape == expected.shape, (padding, flip_filter)
            torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-12)
            checked += 1
    assert checked >= 10


def test_output_shape_formula() -> None:
    x = torch.zeros(1, 2, 10, 13)
    f = torch.ones(3, 5)
    y = U.upfirdn2d(x, f, up=(2, 3), down=(3, 2), padding=[1, -2, 4, 0], impl="ref")
    # H: (10*3 + 4 + 0 - 3)//2 + 1 = 16; W: (13*2 + 1 - 2 - 5)//3 + 1 = 7
    assert y.shape == (1, 2, 16, 7)


def test_empty_output_raises() -> None:
    with pytest.raises(ValueError, match="empty"):
        U.upfirdn2d(torch.zeros(1, 1, 4, 4), torch.ones(4), padding=-2, impl="ref")


@pytest.mark.parametrize("bad", [{"up": 0}, {"down": (1, 0)}, {"padding": [1, 2, 3]}, {"up": 1.5}])
def test_bad_arguments_raise(bad) -> None:
    with pytest.raises(ValueError):
        U.upfirdn2d(torch.zeros(1, 1, 8, 8), torch.ones(2), **bad)


def test_bad_input_rank_raises() -> None:
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        U.upfirdn2d(torch.zeros(1, 8, 8), torch.ones(2))


def test_generator_paddings() -> None:
    """Spec 2.4/2.5: the 4-tap blur pads (2, 1, 2, 1); the x2 skip upsampling pads (2, 1, 2, 1), gain 4."""
    f = U.setup_filter([1, 3, 3, 1], separable=False)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float32)
    torch.testing.assert_close(U.filter2d(x, f), U._upfirdn2d_naive(x, f, padding=[2, 1, 2, 1]))
    torch.testing.assert_close(U.upsample2d(x, f), U._upfirdn2d_naive(x, f, up=2, padding=[2, 1, 2, 1], gain=4))
    assert U.filter2d(x, f).shape == (1, 3, 8, 8)
    assert U.upsample2d(x, f).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_wrapper_output_sizes(k: int, factor: int) -> None:
    x = torch.randn(1, 2, 12, 24)
    f = torch.rand(k) + 0.1
    assert U.filter2d(x, f, impl="ref").shape == (1, 2, 12, 24)
    assert U.filter2d(x, f, padding=[1, 2, 0, 3], impl="ref").shape == (1, 2, 15, 27)
    assert U.upsample2d(x, f, up=factor, impl="ref").shape == (1, 2, 12 * factor, 24 * factor)
    assert U.upsample2d(x, f, up=(factor, 1), impl="ref").shape == (1, 2, 12, 24 * factor)
    assert U.downsample2d(x, f, down=factor, impl="ref").shape == (1, 2, 12 // factor, 24 // factor)
    assert U.downsample2d(x, f, down=factor, padding=factor, impl="ref").shape == (1, 2, 12 // factor + 2,
                                                                                    24 // factor + 2)


@pytest.mark.parametrize("separable", [True, False])
def test_constant_image_stays_constant_inside(separable: bool) -> None:
    f = U.setup_filter([1, 3, 3, 1], separable=separable)
    x = torch.full([1, 2, 16, 16], 0.75, dtype=F64)
    up = U.upsample2d(x, f, impl="ref")
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.75))
    assert up[0, 0, 0, 0] < 0.75  # zero boundary darkens the border
    blurred = U.filter2d(x, f, impl="ref")
    torch.testing.assert_close(blurred[:, :, 2:-2, 2:-2], torch.full_like(blurred[:, :, 2:-2, 2:-2], 0.75))
    down = U.downsample2d(x, f, impl="ref")
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 0.75))


@pytest.mark.parametrize("shape", [(3, 4), (4, 4), (2, 5), (1, 3)])
def test_impulse_response(shape) -> None:
    """A true convolution (default) reproduces the filter around an impulse; flip_filter gives it flipped."""
    f = torch.arange(1, shape[0] * shape[1] + 1, dtype=F64).reshape(shape)
    fh, fw = shape
    x = torch.zeros(1, 1, 11, 12, dtype=F64)
    x[0, 0, 5, 6] = 1
    y0, x0 = 5 - (fh - 1) // 2, 6 - (fw - 1) // 2
    for flip_filter, expected in ((False, f), (True, f.flip([0, 1]))):
        y = U.filter2d(x, f, flip_filter=flip_filter, impl="ref")[0, 0]
        torch.testing.assert_close(y[y0:y0 + fh, x0:x0 + fw], expected)
        assert y.abs().sum() == pytest.approx(f.abs().sum().item())  # nothing outside the window


def test_rank1_2d_filter_equals_separable_1d() -> None:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=F64) / 8
    x = torch.randn(2, 3, 9, 10, dtype=F64)
    for kwargs in ({"up": 2, "padding": [2, 1, 2, 1]}, {"down": 2, "padding": 1}, {"padding": [2, 1, 0, 3]}):
        a = U.upfirdn2d(x, taps, impl="ref", **kwargs)
        b = U.upfirdn2d(x, taps[:, None] * taps[None, :], impl="ref", **kwargs)
        torch.testing.assert_close(a, b, atol=1e-14, rtol=1e-12)


def test_strided_input_and_channels_last() -> None:
    f = torch.rand(3, 3, dtype=F64)
    x = torch.randn(2, 4, 10, 12, dtype=F64)
    expected = U._upfirdn2d_naive(x, f, up=2, padding=[1, 2, 2, 1])
    for variant in (x.contiguous(memory_format=torch.channels_last), x.transpose(2, 3).contiguous().transpose(2, 3)):
        torch.testing.assert_close(U.upfirdn2d(variant, f, up=2, padding=[1, 2, 2, 1], impl="ref"), expected)


def test_float16_close_to_float32() -> None:
    f = U.setup_filter([1, 3, 3, 1], separable=False)
    x = torch.randn(1, 4, 16, 16)
    for op in (lambda t: U.filter2d(t, f, impl="ref"), lambda t: U.upsample2d(t, f, impl="ref")):
        y16 = op(x.half())
        assert y16.dtype == torch.float16
        torch.testing.assert_close(y16.float(), op(x), atol=5e-3, rtol=5e-3)


def test_none_filter_is_pure_resampling() -> None:
    x = torch.randn(1, 2, 5, 6, dtype=F64)
    y = U.upfirdn2d(x, None, up=2, padding=[0, -1, 0, -1], impl="ref")
    assert y.shape == (1, 2, 9, 11)
    torch.testing.assert_close(y[:, :, ::2, ::2], x)
    assert torch.count_nonzero(y[:, :, 1::2]) == 0
    torch.testing.assert_close(U.upfirdn2d(x, None, down=2, impl="ref"), x[:, :, ::2, ::2])


@pytest.mark.parametrize("f_kind", ["1d", "2d"])
@pytest.mark.parametrize("up,down,padding", [
    (1, 1, [2, 1, 2, 1]), (2, 1, [2, 1, 1, 2]), (1, 2, [1, 1, -1, 2]), (2, 3, [0, 2, 1, 0]),
    ((3, 1), (1, 2), [1, -1, 2, 0]), (1, 1, [0, -1, 1, 0]),
])
def test_gradcheck_ref(f_kind: str, up, down, padding) -> None:
    f = torch.tensor([0.3, -0.5, 1.0, 0.25], dtype=F64) if f_kind == "1d" else torch.rand(3, 2, dtype=F64)
    x = torch.randn(1, 2, 5, 6, dtype=F64, requires_grad=True)

    def fn(t: torch.Tensor) -> torch.Tensor:
        return U.upfirdn2d(t, f, up, down, padding, flip_filter=False, gain=1.3, impl="ref")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_gradcheck_filter_gradient() -> None:
    """A filter that requires grad goes through the differentiable composition."""
    x = torch.randn(1, 2, 5, 6, dtype=F64, requires_grad=True)
    f = torch.rand(3, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t, g: U.upfirdn2d(t, g, up=2, padding=1, impl="ref"), (x, f))


def test_setup_filter() -> None:
    f1 = U.setup_filter([1, 3, 3, 1])
    assert f1.shape == (4,) and f1.dtype == torch.float32
    torch.testing.assert_close(f1, torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8)
    f2 = U.setup_filter([1, 3, 3, 1], separable=False)
    assert f2.shape == (4, 4)
    torch.testing.assert_close(f2, f1[:, None] * f1[None, :])
    assert U.setup_filter([1, 2], gain=4, separable=False).sum().item() == pytest.approx(4)
    g1 = U.setup_filter([1, 2, 5], gain=4)
    assert g1.ndim == 1 and (g1[:, None] * g1[None, :]).sum().item() == pytest.approx(4)  # implied 2-D gain
    torch.testing.assert_close(U.setup_filter([1, 2, 5], flip_filter=True), U.setup_filter([5, 2, 1]))
    torch.testing.assert_close(U.setup_filter([2, 2], normalize=False), torch.tensor([2.0, 2.0]))
    torch.testing.assert_close(U.setup_filter(None), torch.tensor([1.0]))
    assert U.setup_filter([[1, 2], [3, 4]]).sum().item() == pytest.approx(1)


@pytest.mark.parametrize("args", [
    {"f": [[1, 2]], "separable": True}, {"f": [1, -1]}, {"f": [1, 2], "gain": -1}, {"f": torch.ones(2, 2, 2)},
])
def test_setup_filter_errors(args) -> None:
    with pytest.raises(ValueError):
        U.setup_filter(**args)


def test_impl_cuda_on_cpu_raises_and_auto_builds_nothing() -> None:
    x = torch.randn(1, 1, 4, 4)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        U.upfirdn2d(x, torch.ones(2), impl="cuda")
    with pytest.raises(ValueError, match="impl"):
        U.upfirdn2d(x, torch.ones(2), impl="fast")
    U.upsample2d(x, torch.ones(2))
    assert U._PLUGIN_NAME not in custom_ops._PLUGINS


# ----------------------------------------------------------------------------------------------------------
# CUDA plugin vs reference (skipped without a GPU).

CUDA_CASES = [
    ("filter2d_1d", {"f": [1, 3, 3, 1], "separable": True, "up": 1, "down": 1, "padding": [2, 1, 2, 1]}),
    ("filter2d_2d", {"f": [1, 3, 3, 1], "separable": False, "up": 1, "down": 1, "padding": [2, 1, 2, 1]}),
    ("upsample2d", {"f": [1, 3, 3, 1], "separable": False, "up": 2, "down": 1, "padding": [2, 1, 2, 1]}),
    ("downsample2d", {"f": [1, 3, 3, 1], "separable": True, "up": 1, "down": 2, "padding": [1, 1, 1, 1]}),
    ("mixed", {"f": [[1, 2, 0], [3, -1, 2]], "separable": False, "up": (3, 2), "down": (2, 1),
               "padding": [1, -1, 2, 0]}),
]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-12), (torch.float16, 2e-3)])
@pytest.mark.parametrize("name,case", CUDA_CASES)
def test_cuda_matches_ref(cuda_device, name: str, case: dict, dtype: torch.dtype, tol: float) -> None:
    f = U.setup_filter(case["f"], device=cuda_device, separable=case["separable"], normalize=False)
    kwargs = {"up": case["up"], "down": case["down"], "padding": case["padding"], "gain": 1.5}
    x = torch.randn(2, 5, 17, 23, device=cuda_device).to(dtype)
    for flip_filter in (False, True):
        xr = x.detach().clone().requires_grad_(True)
        xc = x.detach().clone().requires_grad_(True)
        yr = U.upfirdn2d(xr, f, flip_filter=flip_filter, impl="ref", **kwargs)
        yc = U.upfirdn2d(xc, f, flip_filter=flip_filter, impl="cuda", **kwargs)
        torch.testing.assert_close(yc, yr, atol=tol * 10, rtol=tol)
        dy = torch.randn_like(yr)
        (gr,) = torch.autograd.grad(yr, xr, dy)
        (gc,) = torch.autograd.grad(yc, xc, dy)
        torch.testing.assert_close(gc, gr, atol=tol * 10, rtol=tol)


@pytest.mark.cuda
def test_cuda_gradcheck(cuda_device) -> None:
    f = torch.tensor([0.3, -0.5, 1.0, 0.25], dtype=F64, device=cuda_device)
    x = torch.randn(1, 2, 5, 6, dtype=F64, device=cuda_device, requires_grad=True)

    def fn(t: torch.Tensor) -> torch.Tensor:
        return U.upfirdn2d(t, f, up=2, down=(1, 2), padding=[2, 1, 0, 1], gain=math.pi, impl="cuda")

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ----------------------------------------------------------------------------------------------------------
# The CUDA path's Python side (separable split into an x and a y pass, argument order, adjoint), run on
# CPU against an emulated plugin with the kernel's contract (upfirdn2d.h).


class _EmulatedUpFirDn2dPlugin:
    @staticmethod
    def upfirdn2d(x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter, gain):
        assert f.ndim == 2 and f.is_contiguous()
        assert f.dtype == (F64 if x.dtype == F64 else torch.float32)
        with torch.no_grad():  # the real kernel's outputs carry no autograd history
            return U._upfirdn2d_naive(x, f, (up_x, up_y), (down_x, down_y), [pad_x0, pad_x1, pad_y0, pad_y1],
                                      flip_filter, gain)


@pytest.mark.parametrize("f_kind", ["1d", "2d"])
@pytest.mark.parametrize("up,down,padding", [((2, 1), (1, 2), [2, 1, 0, 1]), (1, 2, [1, 1, 1, 1]),
                                             (3, 1, [0, 2, -1, 1])])
def test_cuda_wiring_with_emulated_plugin(monkeypatch: pytest.MonkeyPatch, f_kind: str, up, down, padding) -> None:
    monkeypatch.setattr(U, "_load_plugin", lambda: _EmulatedUpFirDn2dPlugin)
    f = torch.tensor([0.3, -0.5, 1.0, 0.25], dtype=F64) if f_kind == "1d" else torch.rand(3, 2, dtype=F64)
    fx, fy = (f, f) if f_kind == "1d" else (f, None)
    up, down, padding = U._parse_scaling(up), U._parse_scaling(down), U._parse_padding(padding)
    fn_class = U._upfirdn2d_function("cuda", up, down, padding, False, 1.7)
    x = torch.randn(1, 1, 5, 7, dtype=F64, requires_grad=True)
    expected = U._upfirdn2d_naive(x, f, up, down, padding, False, 1.7)
    torch.testing.assert_close(fn_class.apply(x, fx, fy), expected)
    assert torch.autograd.gradcheck(lambda t: fn_class.apply(t, fx, fy), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fn_class.apply(t, fx, fy), (x,))


@pytest.mark.parametrize("block_bytes", [1, 8 * 7 * 9 * 3 * 2, 8 * 7 * 9 * 2])
def test_channel_blocking_matches_naive(monkeypatch: pytest.MonkeyPatch, block_bytes: int) -> None:
    """Large maps are filtered in blocks of channels (1 channel, 2 images, 2 channels per block here)."""
    monkeypatch.setattr(_upfirdn2d_ref, "_CACHE_BLOCK_BYTES", block_bytes)
    x = torch.randn(5, 3, 7, 9, dtype=F64)
    f = torch.tensor([0.2, 0.5, 0.1, 0.4], dtype=F64)
    for kwargs in ({"up": 2, "padding": [2, 1, 2, 1]}, {"down": (2, 1), "padding": [1, 2, 0, 1]}, {"padding": 1}):
        expected = U._upfirdn2d_naive(x, f, **kwargs)
        torch.testing.assert_close(U.upfirdn2d(x, f, impl="ref", **kwargs), expected, atol=1e-12, rtol=1e-12)
