"""2-D upsampler: NeRF feature map [B, F, Rv, Rv] -> image [B, 3, R, R] (spec-stylenerf.md sections 2.4-2.6).

Blocks ``b{r}`` for r = 2 Rv ... R, each: conv0 (x2 upsampling via 'pixelshuffle' or 'nn_cat', then the
[1,3,3,1] blur unless the mode says 'noblur'), conv1, and an RGB skip branch (``torgb``) accumulated on the
x2-upsampled NeRF RGB image. Style slots (relative to the first upsampler style u = ws[:, num_nerf_ws:]):
block i uses u[2i] (conv0), u[2i+1] (conv1), u[2i+2] (torgb) (spec 1.5).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stylenerf.config import UpsamplerConfig
from stylenerf.layers import Conv2dLayer, FullyConnectedLayer, ToRGBLayer, blur_filter, bias_act, filter2d, \
    modulated_conv2d, upsample2d


def nearest_up2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling. [B, C, H, W] -> [B, C, 2H, 2W]"""
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def nn_cat_interp(x: torch.Tensor) -> torch.Tensor:
    """The 'nn_cat' neighbour-average sub-pixels (spec 2.4): zero-padded left/up/down/right neighbours,
    sub-pixel (0,0) = (l+u)/2, (0,1) = (u+r)/2, (1,0) = (l+d)/2, (1,1) = (r+d)/2. [B, C, H, W] -> [B, C, 2H, 2W]"""
    xp = F.pad(x, (1, 1, 1, 1))
    xl, xr = xp[:, :, 1:-1, :-2], xp[:, :, 1:-1, 2:]
    xu, xd = xp[:, :, :-2, 1:-1], xp[:, :, 2:, 1:-1]
    sub = torch.stack([xl + xu, xu + xr, xl + xd, xr + xd], dim=2) / 2  # [B, C, 4, H, W]
    return F.pixel_shuffle(sub.flatten(1, 2), 2)


class SynthesisLayer(nn.Module):
    """Modulated conv at the input resolution, optional x2 upsampling by the configured mode, then
    bias + lrelu * sqrt(2), clamped (spec 2.4). Names: weight, bias, affine.*, resample_filter, w_avg,
    adapter.{0,1}.* (upsampling layers only)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, up: int, cfg: UpsamplerConfig) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.up = in_channels, out_channels, up
        self.kernel_size, self.conv_clamp, self.mode, self.blur = cfg.kernel_size, cfg.conv_clamp, cfg.mode, cfg.blur
        self.magnitude_ema = cfg.magnitude_ema_beta > 0
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.register_buffer("resample_filter", blur_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, cfg.kernel_size, cfg.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        if self.magnitude_ema:
            self.register_buffer("w_avg", torch.ones([]))
        if up == 2:
            c = out_channels
            if self.mode == "pixelshuffle":
                self.adapter = nn.Sequential(Conv2dLayer(c, c // 4, 1, activation="lrelu"),
                                             Conv2dLayer(c // 4, 4 * c, 1, activation="linear"))
            else:  # nn_cat
                self.adapter = nn.Sequential(Conv2dLayer(2 * c, c // 4, 1, activation="lrelu"),
                                             Conv2dLayer(c // 4, c, 1, activation="linear"))

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Mode-specific x2 upsampling of the conv output (spec 2.4 step 3). [B, C, H, W] -> [B, C, 2H, 2W]"""
        if self.mode == "pixelshuffle":
            x = nearest_up2(x) + F.pixel_shuffle(self.adapter(x), 2)
        else:
            xa = nearest_up2(x)
            x = xa + self.adapter(torch.cat([xa, nn_cat_interp(x)], dim=1))
        if self.blur:
            x = filter2d(x, self.resample_filter.to(x.dtype))
        return x

    def forward(self, x: torch.Tensor, w: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """x [B, in, H, W], w [B, w_dim] -> [B, out, up*H, up*W]."""
        if self.magnitude_ema:
            x = x * self.w_avg.to(x.dtype).rsqrt()
        styles = self.affine(w)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, padding=self.kernel_size // 2,
                             flip_weight=(self.up == 1))
        if self.up == 2:
            x = self.upsample(x)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act="lrelu", gain=2**0.5 * gain, clamp=clamp)


class SynthesisBlock(nn.Module):
    """One upsampler block with the 'skip' architecture (spec 2.5). Names: resample_filter, conv0, conv1, torgb."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, cfg: UpsamplerConfig,
                 use_fp16: bool = False) -> None:
        super().__init__()
        self.resolution, self.use_fp16 = resolution, use_fp16
        self.register_buffer("resample_filter", blur_filter())
        self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, up=2, cfg=cfg)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, up=1, cfg=cfg)
        self.torgb = ToRGBLayer(out_channels, 3, w_dim, conv_clamp=cfg.conv_clamp)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None, ws: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, in, H, W], img [B, 3, H, W] or None, ws [B, 3, w_dim] -> x [B, out, 2H, 2W], img [B, 3, 2H, 2W]."""
        dtype = torch.float16 if (self.use_fp16 and x.is_cuda) else torch.float32
        x = x.to(dtype)
        x = self.conv0(x, ws[:, 0])
        x = self.conv1(x, ws[:, 1])
        y = self.torgb(x, ws[:, 2]).to(torch.float32)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
            return x, img + y
        return x, y


def build_blocks(block_resolutions: list[int], in_channels: int, w_dim: int, cfg: UpsamplerConfig
                 ) -> dict[str, SynthesisBlock]:
    """Blocks ``b{r}`` in order; the first takes the F NeRF feature channels. Returns name -> block."""
    blocks: dict[str, SynthesisBlock] = {}
    n_fp16 = cfg.num_fp16_blocks
    for i, res in enumerate(block_resolutions):
        out_ch = cfg.channels(res)
        fp16 = i >= len(block_resolutions) - n_fp16
        blocks[f"b{res}"] = SynthesisBlock(in_channels, out_ch, w_dim, res, cfg, use_fp16=fp16)
        in_channels = out_ch
    return blocks
