"""conv2d_resample vs the literal composition (explicit upfirdn2d + conv2d), sizes, errors, gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_resample as R
from torch_utils.ops import upfirdn2d as U

F64 = torch.float64


def _naive(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """The definition, step by step, with the textbook upfirdn2d."""
    kh, kw = w.shape[2:]
    fw, fh = (1, 1) if f is None else (f.shape[-1], f.shape[0])
    px0, px1, py0, py1 = padding
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    x = U._upfirdn2d_naive(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], flip_filter=flip_filter,
                           gain=up ** 2)
    x = F.conv2d(x, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        x = U._upfirdn2d_naive(x, f, down=down, flip_filter=flip_filter)
    return x


@pytest.mark.parametrize("up,down", [(1, 1), (2, 1), (1, 2), (2, 2), (3, 1), (1, 3)])
@pytest.mark.parametrize("k", [1, 3, 2])
@pytest.mark.parametrize("groups", [1, 2])
def test_matches_naive_composition(up: int, down: int, k: int, groups: int) -> None:
    gen = torch.Generator().manual_seed(up * 100 + down * 10 + k)
    x = torch.randn(2, 4, 9, 8, dtype=F64, generator=gen)
    w = torch.randn(6, 4 // groups, k, k, dtype=F64, generator=gen)
    f_nonsym = torch.tensor([0.1, 0.5, 0.3, 0.1], dtype=F64)
    for f in (U.setup_filter([1, 3, 3, 1]).to(F64), f_nonsym[:, None] * torch.tensor([0.2, 0.7, 0.1], dtype=F64)):
        for padding in ([k // 2] * 4, [1, 0, 2, 1]):
            for flip_weight, flip_filter in ((True, False), (False, True)):
                expected = _naive(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
                got = R.conv2d_resample(x, w, f, up=up, down=down, padding=padding, groups=groups,
                                        flip_weight=flip_weight, flip_filter=flip_filter, impl="ref")
                assert got.shape == expected.shape
                torch.testing.assert_close(got, expected, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize("up,down,expected_hw", [(1, 1, 16), (2, 1, 32), (1, 2, 8), (2, 2, 16)])
def test_same_padding_output_size(up: int, down: int, expected_hw: int) -> None:
    x = torch.randn(1, 3, 16, 16)
    w = torch.randn(5, 3, 3, 3)
    f = U.setup_filter([1, 3, 3, 1])
    y = R.conv2d_resample(x, w, f, up=up, down=down, padding=1)
    assert y.shape == (1, 5, expected_hw, expected_hw)


def test_plain_conv_equals_conv2d() -> None:
    x = torch.randn(2, 4, 10, 10, dtype=F64)
    w = torch.randn(3, 4, 3, 3, dtype=F64)
    torch.testing.assert_close(R.conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))
    torch.testing.assert_close(R.conv2d_resample(x, w, padding=1, flip_weight=False),
                               F.conv2d(x, w.flip([2, 3]), padding=1))


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
def test_gradcheck(up: int, down: int) -> None:
    x = torch.randn(1, 2, 4, 4, dtype=F64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=F64, requires_grad=True)
    f = U.setup_filter([1, 3, 3, 1]).to(F64)
    assert torch.autograd.gradcheck(lambda a, b: R.conv2d_resample(a, b, f, up=up, down=down, padding=1), (x, w))


@pytest.mark.parametrize("kwargs", [{"groups": 3}, {"up": 0}, {"down": 1.5}])
def test_argument_errors(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        R.conv2d_resample(torch.zeros(1, 4, 8, 8), torch.zeros(2, 4, 3, 3), **kwargs)
