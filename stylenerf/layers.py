"""StyleGAN2-style building blocks used by the StyleNeRF generator (spec-stylenerf.md section 2.1-2.2, 2.4).

Parameter and buffer names follow the official checkpoints exactly (spec 1.4), so an official ``G_ema``
state dict loads with ``strict=True``. All layers use equalized learning rate: weights are stored at unit
scale and multiplied by ``1/sqrt(fan_in)`` at run time, except where the spec says the raw weight is used
(style-modulated layers with demodulation, and the background NeRF's plain linear layers).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from torch_utils.ops import bias_act as _bias_act
from torch_utils.ops import upfirdn2d as _upfirdn2d


def blur_filter(device: torch.device | str = "cpu") -> torch.Tensor:
    """The [1, 3, 3, 1] (outer) [1, 3, 3, 1] / 64 FIR filter stored in every ``resample_filter`` buffer. [4, 4]"""
    k = torch.tensor([1.0, 3.0, 3.0, 1.0], device=device)
    return torch.outer(k, k) / 64.0


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None, dim: int = 1) -> torch.Tensor:
    """Thin forwarder to ``torch_utils.ops.bias_act.bias_act`` (impl chosen by NERFFS_OPS/device)."""
    return _bias_act.bias_act(x, b, dim=dim, act=act, gain=gain, clamp=clamp)


class FullyConnectedLayer(nn.Module):
    """y = act(x @ (W * lr_mult / sqrt(in)).T + b * lr_mult). Weight [out, in], bias [out] (spec 2.1)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, in] -> [N, out]
        if is_broadcast(x):  # one style repeated over the batch: compute once, broadcast the result
            return self.forward(x[:1]).expand(x.shape[0], -1)
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype) * self.bias_gain if self.bias_gain != 1 else b.to(x.dtype)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Equalized-lr conv: y = bias_act(conv(x, W / sqrt(in k^2)), b, act, default gain, clamp) (spec 2.1).

    Only the stride-1 'same' convolution is needed by the generator (1x1 adapters and ``to_rgb``). The
    ``resample_filter`` buffer is kept for checkpoint compatibility.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, activation: str = "linear",
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", blur_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:  # [B, in, H, W] -> [B, out, H, W]
        w = self.weight.to(x.dtype) * self.weight_gain
        if self.kernel_size == 1:
            x = torch.einsum("oi,bihw->bohw", w[:, :, 0, 0], x)
        else:
            x = F.conv2d(x, w, padding=self.kernel_size // 2)
        act_gain = _bias_act.activation_funcs[self.activation].def_gain * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=clamp)


def is_broadcast(x: torch.Tensor) -> bool:
    """True for a batch that is one row expanded (stride 0 on dim 0): constant styles over many frames."""
    return x.ndim >= 1 and x.shape[0] > 1 and x.stride(0) == 0


def modulate_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True) -> torch.Tensor:
    """Per-sample modulated (and optionally demodulated) weights (spec 2.1).

    Args:
        weight: [O, I, k, k] raw weight.
        styles: [B, I] per-input-channel scales.
        demodulate: normalise each output filter to unit L2 norm (+1e-8).

    Returns:
        [B, O, I, k, k] (an expanded view when ``styles`` is one row broadcast over the batch).
    """
    if is_broadcast(styles):
        return modulate_weight(weight, styles[:1], demodulate).expand(styles.shape[0], -1, -1, -1, -1)
    w = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    return w


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, flip_weight: bool = True) -> torch.Tensor:
    """Style-modulated convolution, one filter bank per batch item (spec 2.1).

    Args:
        x: [B, I, H, W] input.
        weight: [O, I, k, k].
        styles: [B, I].
        demodulate: apply weight demodulation.
        padding: spatial zero padding.
        flip_weight: True = correlation (F.conv2d); False = true convolution (kernel flipped). Only matters
            for k > 1; the official code flips for up-sampling layers (spec 2.4 step 5).

    Returns:
        [B, O, H', W'].
    """
    batch, in_ch = x.shape[:2]
    if x.dtype == torch.float16 and demodulate:
        # Keep fp16 in range; the scale cancels under demodulation except for the 1e-8 (spec 2.1).
        k2 = weight[0].numel()
        weight = weight * (1 / math.sqrt(k2) / weight.flatten(1).abs().amax(dim=1).reshape(-1, 1, 1, 1))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    w = modulate_weight(weight.to(x.dtype), styles.to(x.dtype), demodulate)  # [B, O, I, k, k]
    if weight.shape[-1] == 1:
        if is_broadcast(styles):
            out = torch.matmul(w[0, :, :, 0, 0], x.reshape(batch, in_ch, -1))
        else:
            out = torch.bmm(w[:, :, :, 0, 0], x.reshape(batch, in_ch, -1))
        return out.reshape(batch, -1, *x.shape[2:])
    if not flip_weight:
        w = w.flip([3, 4])
    if is_broadcast(styles):  # the same filters for every item: one plain convolution over the batch
        return F.conv2d(x, w[0], padding=padding)
    out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, in_ch, *w.shape[3:]), padding=padding,
                   groups=batch)
    return out.reshape(batch, -1, *out.shape[2:])


def modulated_linear(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool) -> torch.Tensor:
    """Modulated 1x1 conv applied to point lists: x [B, N, I], weight [O, I, 1, 1], styles [B, I] -> [B, N, O].

    Same math as ``modulated_conv2d`` with k = 1; the NeRF MLPs use this layout (points, channels last).
    """
    w = modulate_weight(weight.to(x.dtype), styles.to(x.dtype), demodulate)[:, :, :, 0, 0]  # [B, O, I]
    if is_broadcast(styles):
        return torch.matmul(x, w[0].t())
    return torch.bmm(x, w.transpose(1, 2))


class ToRGBLayer(nn.Module):
    """Modulated 1x1 projection without demodulation: s = affine(w) / sqrt(I k^2); y = W(s x) + b (spec 2.3).

    Used for the upsampler ``torgb`` and the foreground NeRF ``sigma_out`` / ``feat_out`` (no clamp there).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.conv_clamp = in_channels, out_channels, conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)

    def styles(self, w: torch.Tensor) -> torch.Tensor:  # [B, w_dim] -> [B, in]
        s = self.affine(w)
        if is_broadcast(s):
            return (s[:1] * self.weight_gain).expand_as(s)
        return s * self.weight_gain

    def forward_points(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [B, N, in] -> [B, N, out]
        y = modulated_linear(x, self.weight, self.styles(w), demodulate=False)
        return bias_act(y, self.bias.to(y.dtype), clamp=self.conv_clamp, dim=2)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [B, in, H, W] -> [B, out, H, W]
        y = modulated_conv2d(x, self.weight, self.styles(w), demodulate=False)
        return bias_act(y, self.bias.to(y.dtype), clamp=self.conv_clamp)


class Style2Layer(nn.Module):
    """Foreground NeRF layer: y = lrelu(demod-modconv(x, W, affine(w)) + b) * sqrt(2) (spec 2.2).

    Operates on point lists [B, N, C] (a 1x1 conv over points). W is used raw (no equalized-lr gain).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.register_buffer("resample_filter", blur_filter())
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # [B, N, in], [B, w_dim] -> [B, N, out]
        y = modulated_linear(x, self.weight, self.affine(w), demodulate=True)
        return bias_act(y, self.bias.to(y.dtype), act="lrelu", dim=2)


class PlainLinear(nn.Module):
    """Background NeRF layer without styles: y = act(x W^T + b), W [out, in], no gain (spec 2.2).

    ``with_filter`` adds the (numerically unused) ``resample_filter`` buffer where the checkpoint has one.
    """

    def __init__(self, in_features: int, out_features: int, activation: str = "linear",
                 with_filter: bool = True) -> None:
        super().__init__()
        self.activation = activation
        if with_filter:
            self.register_buffer("resample_filter", blur_filter())
        lin = nn.Linear(in_features, out_features)  # kaiming-uniform init, as the official bg MLP
        self.weight = nn.Parameter(lin.weight.detach().clone())
        self.bias = nn.Parameter(lin.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, in] -> [B, N, out]
        y = F.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))
        return torch.relu(y) if self.activation == "relu" else y


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Zero-insertion x2 upsampling followed by the 4x4 FIR with gain 4, padding (2, 1, 2, 1) (spec 2.5)."""
    return _upfirdn2d.upsample2d(x, f, up=2)


def filter2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Same-size FIR blur with zero boundary (spec 2.4 step 3)."""
    return _upfirdn2d.filter2d(x, f)
