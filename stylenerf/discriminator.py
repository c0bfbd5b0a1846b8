"""The StyleNeRF image discriminator D (spec-stylenerf.md section 1.6; layer maths of section 2.1).

A StyleGAN2-style discriminator with the official parameter and buffer names, so the ``D`` tensors of a
released snapshot (``stylenerf.legacy.read_official_pickle(path).d``) load with ``strict=True``:

* for every r = R, R/2, ..., 8 a block ``b{r}``: ``fromrgb`` (1x1, 3 -> C(r)), ``conv0`` (3x3, C(r) -> C(r)),
  ``conv1`` (3x3, C(r) -> C(r/2), down 2) and a ``resample_filter`` buffer; C(r) = min(channel_base / r,
  channel_max) with channel_base = 32768 * fmaps (yaml ``spec.fmaps``: 0.5 for 256, 1 for 512/1024);
* the epilogue ``b4``: ``fromrgb`` (3 -> C(4)), minibatch-stddev, ``conv`` (3x3, C(4)+1 -> C(4)),
  ``fc`` (16 C(4) -> C(4)), ``out`` (C(4) -> 1);
* a scalar buffer ``alpha`` (the progressive-growing blend factor).

Architecture ``skip`` (the FFHQ yaml): every block adds ``fromrgb`` of the image downsampled to its
resolution. ``resnet`` (fromrgb only in the first block, plus a 1x1 ``skip`` path scaled by sqrt(0.5)) and
``orig`` are also available; they are not what the released FFHQ files use.

What the spec leaves open and how it is resolved here (documented guesses):

* progressive growing: the released snapshots were trained far past the curriculum's end (alpha = 1 after
  5000 kimg), so the forward always runs the full-resolution path; ``alpha`` is stored for name
  compatibility only. The low-resolution head logic of the training code is not reproduced.
* fp16: the top ``num_fp16_res`` resolutions run in float16 on CUDA only (CPU always float32).
* minibatch-stddev groups: the group size is the largest divisor of the batch that does not exceed
  ``mbstd_group_size`` (the official layer requires the batch to be divisible).
* inputs whose size differs from ``img_resolution`` are resized (bilinear, antialiased) first.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from stylenerf.layers import FullyConnectedLayer, blur_filter
from stylenerf.legacy import read_official_pickle
from torch_utils.ops import bias_act as _bias_act
from torch_utils.ops import conv2d_resample as _conv2d_resample
from torch_utils.ops import upfirdn2d as _upfirdn2d


@dataclass
class DiscriminatorConfig:
    """Constructor arguments of :class:`Discriminator` (yaml names of spec 1.6)."""

    img_resolution: int = 512
    img_channels: int = 3
    architecture: str = "skip"
    """'skip' (FFHQ yaml), 'resnet' or 'orig'."""
    channel_base: int = 32768
    """32768 * spec.fmaps (paper256: 16384, paper512/1024: 32768)."""
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256.0
    mbstd_group_size: int = 8
    """spec.mbstd: 8 for paper256/512, 4 for paper1024."""
    mbstd_num_channels: int = 1

    def __post_init__(self) -> None:
        log2 = math.log2(self.img_resolution)
        if self.img_resolution < 8 or log2 != int(log2):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {self.img_resolution}")
        if self.architecture not in ("skip", "resnet", "orig"):
            raise ValueError(f"architecture must be 'skip', 'resnet' or 'orig', got {self.architecture!r}")

    @property
    def block_resolutions(self) -> list[int]:
        """R, R/2, ..., 8 (the epilogue b4 is separate)."""
        return [2 ** i for i in range(int(math.log2(self.img_resolution)), 2, -1)]

    def channels(self, res: int) -> int:
        """C_D(r) = min(channel_base // r, channel_max)."""
        return min(self.channel_base // res, self.channel_max)

    @classmethod
    def official(cls, img_resolution: int) -> "DiscriminatorConfig":
        """The FFHQ yaml values for 256 (fmaps 0.5, mbstd 8), 512 (fmaps 1, mbstd 8), 1024 (fmaps 1, mbstd 4)."""
        fmaps = 0.5 if img_resolution <= 256 else 1.0
        return cls(img_resolution=img_resolution, channel_base=int(32768 * fmaps),
                   mbstd_group_size=8 if img_resolution <= 512 else 4)


class DConv2dLayer(nn.Module):
    """Equalized-lr conv with optional FIR downsampling (spec 2.1): bias_act(conv(x, W / sqrt(in k^2)))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", down: int = 1, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", blur_filter())
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = _bias_act.activation_funcs[activation].def_gain

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:  # [B, in, H, W] -> [B, out, H/d, W/d]
        w = (self.weight * self.weight_gain).to(x.dtype)
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = _conv2d_resample.conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding,
                                             flip_weight=True)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return _bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    """One resolution r: (fromrgb) -> conv0 -> conv1 (down 2); the image is FIR-downsampled alongside."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int,
                 img_channels: int, architecture: str, use_fp16: bool, conv_clamp: float | None) -> None:
        super().__init__()
        self.in_channels, self.resolution, self.architecture, self.use_fp16 = (in_channels, resolution,
                                                                               architecture, use_fp16)
        self.register_buffer("resample_filter", blur_filter())
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = DConv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = DConv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = DConv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = DConv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:  # x [B, in, r, r], img [B, 3, r, r]
        dtype = torch.float16 if self.use_fp16 and img is not None and img.is_cuda else torch.float32
        if x is not None:
            x = x.to(dtype)
        if self.in_channels == 0 or self.architecture == "skip":
            img = img.to(dtype)
            y = self.fromrgb(img)
            x = x + y if x is not None else y
            img = _upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv1(self.conv0(x), gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img


def minibatch_std(x: torch.Tensor, group_size: int, num_channels: int = 1) -> torch.Tensor:
    """Append the per-group standard deviation (averaged over channels and pixels) as extra channels.

    [B, C, H, W] -> [B, C + num_channels, H, W]. The group is the largest divisor of B <= group_size.
    """
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0)
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])             # [n/g, F]
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)           # [B, F, H, W]
    return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: (+fromrgb) -> minibatch-stddev -> conv 3x3 -> fc -> out (unconditional: one logit)."""

    def __init__(self, channels: int, img_channels: int, architecture: str, mbstd_group_size: int,
                 mbstd_num_channels: int, conv_clamp: float | None, resolution: int = 4) -> None:
        super().__init__()
        self.architecture, self.mbstd_group_size, self.mbstd_num_channels = (architecture, mbstd_group_size,
                                                                             mbstd_num_channels)
        if architecture == "skip":
            self.fromrgb = DConv2dLayer(img_channels, channels, 1, activation="lrelu")
        self.conv = DConv2dLayer(channels + mbstd_num_channels, channels, 3, activation="lrelu",
                                 conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(channels * resolution ** 2, channels, activation="lrelu")
        self.out = FullyConnectedLayer(channels, 1)

    def forward(self, x: torch.Tensor, img: torch.Tensor | None) -> torch.Tensor:  # -> [B, 1]
        x = x.float()
        if self.architecture == "skip":
            x = x + self.fromrgb(img.float())
        if self.mbstd_num_channels > 0:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    """img [B, 3, R, R] in [-1, 1] -> realness logits [B, 1]. Names and shapes as the official ``D``."""

    def __init__(self, cfg: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or DiscriminatorConfig()
        fp16_resolution = max(2 ** (int(math.log2(cfg.img_resolution)) + 1 - cfg.num_fp16_res), 8)
        for res in cfg.block_resolutions:
            block = DiscriminatorBlock(
                in_channels=cfg.channels(res) if res < cfg.img_resolution else 0, tmp_channels=cfg.channels(res),
                out_channels=cfg.channels(res // 2), resolution=res, img_channels=cfg.img_channels,
                architecture=cfg.architecture, use_fp16=res >= fp16_resolution, conv_clamp=cfg.conv_clamp)
            setattr(self, f"b{res}", block)
        self.b4 = DiscriminatorEpilogue(cfg.channels(4), cfg.img_channels, cfg.architecture, cfg.mbstd_group_size,
                                        cfg.mbstd_num_channels, cfg.conv_clamp)
        self.register_buffer("alpha", torch.tensor(1.0))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img [B, C, H, W] (resized to R when H != R) -> logits [B, 1] (positive = real)."""
        r = self.cfg.img_resolution
        if img.ndim != 4 or img.shape[1] != self.cfg.img_channels:
            raise ValueError(f"Discriminator expects [B, {self.cfg.img_channels}, H, W], got {tuple(img.shape)}")
        if img.shape[-2:] != (r, r):
            img = F.interpolate(img, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        x = None
        for res in self.cfg.block_resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        return self.b4(x, img)


def config_from_state(state: dict[str, torch.Tensor], mbstd_group_size: int | None = None) -> DiscriminatorConfig:
    """Infer the architecture of an official ``D`` state dict from its tensor shapes.

    channel_base / channel_max are read from the fromrgb widths; the minibatch-stddev group size is not
    stored in tensors and defaults to the yaml value for the resolution (8 up to 512, else 4).
    """
    blocks = sorted(int(k.split(".")[0][1:]) for k in state if k.startswith("b") and k.endswith(".conv0.weight"))
    if not blocks or "b4.conv.weight" not in state:
        raise ValueError("not a StyleNeRF discriminator state dict (no b{r}.conv0.weight / b4.conv.weight)")
    res = blocks[-1]
    widths = {r: state[f"b{r}.conv0.weight"].shape[0] for r in blocks}
    widths[4] = state["b4.conv.weight"].shape[0]
    channel_max = max(widths.values())
    narrow = [r for r in widths if widths[r] < channel_max]
    channel_base = max(narrow) * widths[max(narrow)] if narrow else channel_max * res
    arch = "resnet" if f"b{res}.skip.weight" in state else ("skip" if "b4.fromrgb.weight" in state else "orig")
    base = DiscriminatorConfig.official(res)
    return DiscriminatorConfig(img_resolution=res, architecture=arch, channel_base=channel_base,
                               channel_max=channel_max,
                               mbstd_group_size=mbstd_group_size or base.mbstd_group_size,
                               mbstd_num_channels=state["b4.conv.weight"].shape[1] - widths[4])


def discriminator_from_state(state: dict[str, torch.Tensor], mbstd_group_size: int | None = None) -> Discriminator:
    """Build a :class:`Discriminator` for ``state`` (e.g. ``read_official_pickle(p).d``) and load it strictly."""
    d = Discriminator(config_from_state(state, mbstd_group_size))
    d.load_state_dict(state, strict=True)
    return d


def load_official_discriminator(path: str | os.PathLike, mbstd_group_size: int | None = None) -> Discriminator:
    """The pretrained ``D`` of an official StyleNeRF ``.pkl``, read without executing pickled code (spec 6.4).

    Raises:
        ValueError: the snapshot has no ``D``.
    """

    d = read_official_pickle(path).d
    if d is None:
        raise ValueError(f"{path} holds no discriminator 'D'")
    return discriminator_from_state(d, mbstd_group_size)
