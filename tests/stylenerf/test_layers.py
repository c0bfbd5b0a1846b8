"""Building blocks against independent formulas (spec-stylenerf.md sections 2.1-2.4)."""
import math

import torch
import torch.nn.functional as F

from stylenerf.config import UpsamplerConfig
from stylenerf.layers import FullyConnectedLayer, modulated_conv2d
from stylenerf.nerf_mlp import positional_encoding
from stylenerf.upsampler import SynthesisLayer, nearest_up2, nn_cat_interp


def test_modulated_conv2d_matches_per_sample_formula():
    x, w, s = torch.randn(3, 4, 6, 6, dtype=torch.float64), torch.randn(5, 4, 3, 3, dtype=torch.float64), \
        torch.randn(3, 4, dtype=torch.float64)
    out = modulated_conv2d(x, w, s, demodulate=True, padding=1)
    for b in range(3):
        wb = w * s[b].reshape(1, -1, 1, 1)
        wb = wb / torch.sqrt((wb ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        torch.testing.assert_close(out[b:b + 1], F.conv2d(x[b:b + 1], wb, padding=1))
    flipped = modulated_conv2d(x, w, s, demodulate=False, padding=1, flip_weight=False)
    ref = F.conv2d(x[:1], (w * s[0].reshape(1, -1, 1, 1)).flip([2, 3]), padding=1)
    torch.testing.assert_close(flipped[:1], ref)


def test_modulated_1x1_path_equals_general_path():
    x, w, s = torch.randn(2, 4, 5, 5, dtype=torch.float64), torch.randn(6, 4, 1, 1, dtype=torch.float64), \
        torch.randn(2, 4, dtype=torch.float64)
    ref = torch.cat([F.conv2d(x[b:b + 1], w * s[b].reshape(1, -1, 1, 1)) for b in range(2)])
    torch.testing.assert_close(modulated_conv2d(x, w, s, demodulate=False), ref)


def test_fully_connected_equalized_lr():
    fc = FullyConnectedLayer(8, 3, activation="linear", lr_multiplier=0.01, bias_init=0.5)
    x = torch.randn(4, 8)
    expected = x @ (fc.weight * 0.01 / math.sqrt(8)).T + fc.bias * 0.01
    torch.testing.assert_close(fc(x), expected)


def test_positional_encoding_layout():
    p = torch.tensor([[0.1, -0.2, 0.3]])
    enc = positional_encoding(p, 2)
    expected = torch.cat([torch.sin(math.pi * p), torch.cos(math.pi * p), torch.sin(2 * math.pi * p),
                          torch.cos(2 * math.pi * p)], dim=-1)
    torch.testing.assert_close(enc, expected)


def test_nearest_up2_and_pixel_shuffle_conventions():
    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    torch.testing.assert_close(nearest_up2(x)[0, 0], torch.tensor(
        [[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))


def test_nn_cat_subpixels_average_neighbours():
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out = nn_cat_interp(x)[0, 0]
    # Centre pixel (1, 1) = 5; neighbours l=4, r=6, u=2, d=8.
    assert out[2, 2] == (4 + 2) / 2 and out[2, 3] == (2 + 6) / 2
    assert out[3, 2] == (4 + 8) / 2 and out[3, 3] == (6 + 8) / 2
    # Corner (0, 0) = 1 has zero left/up neighbours.
    assert out[0, 0] == 0 and out[1, 1] == (2 + 4) / 2


def test_magnitude_ema_scales_input():
    cfg = UpsamplerConfig(channel_base=1024, channel_max=32)
    layer = SynthesisLayer(4, 4, 8, up=1, cfg=cfg)
    x, w = torch.randn(1, 4, 3, 3), torch.randn(1, 8)
    base = layer(x, w)
    layer.w_avg.fill_(4.0)  # the input is scaled by w_avg^-1/2 = 1/2
    scaled = layer(x, w)
    layer.w_avg.fill_(1.0)
    torch.testing.assert_close(scaled, layer(x / 2, w))
    assert not torch.allclose(base, scaled)


def test_modulated_conv2d_broadcast_styles_equal_per_item_styles():
    x, w, s = torch.randn(3, 4, 6, 6, dtype=torch.float64), torch.randn(5, 4, 3, 3, dtype=torch.float64), \
        torch.randn(1, 4, dtype=torch.float64)
    for k_w in (w, w[:, :, :1, :1]):
        for flip in (True, False):
            shared = modulated_conv2d(x, k_w, s.expand(3, -1), padding=k_w.shape[-1] // 2, flip_weight=flip)
            copied = modulated_conv2d(x, k_w, s.expand(3, -1).contiguous(), padding=k_w.shape[-1] // 2,
                                      flip_weight=flip)
            torch.testing.assert_close(shared, copied)
