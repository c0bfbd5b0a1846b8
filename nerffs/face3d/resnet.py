"""ResNet-18 / ResNet-50 backbones whose parameter and buffer names follow the torchvision layout.

Two pretrained networks of the pipeline embed a ResNet and were saved with torchvision's names:

* the Deep3D coefficient regressor (spec-pipeline.md 3.1): ResNet-50 v1.5 (stride on the 3x3 conv of the
  bottleneck), stages [3, 4, 6, 3], no ``fc``;
* the BiSeNet face-parsing context path (spec-pipeline.md 5): ResNet-18, stages [2, 2, 2, 2], no ``fc``.

The architecture is the one of He et al., "Deep Residual Learning for Image Recognition" (CVPR 2016). Names
are ``conv1``, ``bn1``, ``layer{1..4}.{i}.{conv1,bn1,conv2,bn2[,conv3,bn3]}``,
``layer{l}.0.downsample.{0,1}`` and an optional ``fc``, so that checkpoints in that format load by name
with ``strict=True``. No torchvision import is needed (or possible) here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

BlockKind = Literal["basic", "bottleneck"]


@dataclass(frozen=True)
class ResNetConfig:
    """Shape of a ResNet backbone.

    Attributes:
        block: ``'basic'`` (two 3x3 convs, expansion 1; ResNet-18/34) or ``'bottleneck'`` (1x1-3x3-1x1,
            expansion 4, stride on the 3x3 conv; ResNet-50/101).
        layers: number of blocks in each of the four stages.
        num_classes: size of the final linear classifier ``fc``; None builds no ``fc`` (Deep3D, BiSeNet).
    """

    block: BlockKind
    layers: tuple[int, int, int, int]
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(f"ResNetConfig.block must be 'basic' or 'bottleneck', got {self.block!r}")
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"ResNetConfig.layers needs four positive block counts, got {self.layers!r}")

    @property
    def expansion(self) -> int:
        """Ratio of a block's output channels to its inner width."""
        return 1 if self.block == "basic" else 4

    @property
    def out_channels(self) -> int:
        """Channels of the last stage (512 for ResNet-18, 2048 for ResNet-50)."""
        return 512 * self.expansion

    @classmethod
    def resnet18(cls, num_classes: int | None = None) -> "ResNetConfig":
        """ResNet-18: basic blocks, stages [2, 2, 2, 2]."""
        return cls(block="basic", layers=(2, 2, 2, 2), num_classes=num_classes)

    @classmethod
    def resnet50(cls, num_classes: int | None = None) -> "ResNetConfig":
        """ResNet-50 v1.5: bottleneck blocks, stages [3, 4, 6, 3]."""
        return cls(block="bottleneck", layers=(3, 4, 6, 3), num_classes=num_classes)


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus an identity (or 1x1 projection) shortcut; ReLU after the sum.

    Args:
        in_ch: input channels.
        width: output channels (expansion 1).
        stride: stride of the first 3x3 conv (2 at the first block of stages 2-4).
        downsample: projection shortcut ``Sequential(conv1x1, BN)`` named ``downsample.0/1``, or None.
    """

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Sequential | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_ch, H, W] -> [B, width, H/stride, W/stride]."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, "v1.5"), 1x1 expand (x4), each followed by BN; shortcut added before ReLU.

    Args:
        in_ch: input channels.
        width: inner width; the block outputs ``4 * width`` channels.
        stride: stride of the 3x3 conv.
        downsample: projection shortcut ``Sequential(conv1x1, BN)`` named ``downsample.0/1``, or None.
    """

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int = 1, downsample: nn.Sequential | None = None):
        super().__init__()
        self.conv1 = _conv1x1(in_ch, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_ch, H, W] -> [B, 4 * width, H/stride, W/stride]."""
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """ResNet backbone: 7x7/2 stem + 3x3/2 max-pool, four residual stages (strides 1, 2, 2, 2), global pool.

    Args:
        config: block type, stage depths and optional classifier size.
    """

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        block = BasicBlock if config.block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_ch = 64
        stages = []
        for index, (width, depth) in enumerate(zip((64, 128, 256, 512), config.layers)):
            stage, in_ch = _make_stage(block, in_ch, width, depth, stride=1 if index == 0 else 2)
            stages.append(stage)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = None if config.num_classes is None else nn.Linear(in_ch, config.num_classes)

    def forward_stages(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feature maps of the four stages.

        Args:
            x: [B, 3, H, W] image (normalisation is the caller's, it depends on the checkpoint).

        Returns:
            (c2, c3, c4, c5) at strides 4, 8, 16, 32 with 64e, 128e, 256e, 512e channels (e = expansion).
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ResNet expects an image batch [B, 3, H, W], got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return c2, c3, c4, c5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled features, or class logits when the model has an ``fc``.

        Args:
            x: [B, 3, H, W] image.

        Returns:
            [B, out_channels] pooled features, or [B, num_classes] logits.
        """
        pooled = torch.flatten(self.avgpool(self.forward_stages(x)[-1]), 1)
        return pooled if self.fc is None else self.fc(pooled)


def _make_stage(block: type[BasicBlock] | type[Bottleneck], in_ch: int, width: int, depth: int,
                stride: int) -> tuple[nn.Sequential, int]:
    """One residual stage; only its first block changes resolution/channels and so carries ``downsample``."""
    out_ch = width * block.expansion
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(_conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))
    blocks = [block(in_ch, width, stride, downsample)]
    blocks += [block(out_ch, width) for _ in range(depth - 1)]
    return nn.Sequential(*blocks), out_ch
