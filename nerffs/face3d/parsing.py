"""BiSeNet face parsing and the mouth / static-region masks.

Spec: spec-pipeline.md 5 (architecture, checkpoints, class ids, input pipeline), 10 (files), and
spec-stylenerf.md 7.3 (torso "static" points) and 7.4 (mouth mask; its causal average lives beside the
blending it serves, ``nerffs.talking.blend.TemporalMaskSmoother``).

Network: BiSeNet (Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic Segmentation",
ECCV 2018) in the face-parsing variant whose spatial path is replaced by the stride-8 ResNet-18 feature:
context path = ResNet-18 + attention refinement on the stride-16/32 features + a global-context branch,
then a feature-fusion module and three prediction heads (only the stride-8 one is used at inference).

Two public checkpoints share this architecture and differ in their label sets (spec 5 table):

* Barbershop ``seg.pth``, 16 classes (what NFS ships): mouth {7, 8, 9}, static {10, 14, 15};
* face-parsing.PyTorch ``79999_iter.pth``, 19 classes (CelebAMask-HQ): mouth {11, 12, 13}, static {17, 14, 16}.

:class:`ParsingConfig` names every class, and the masks are defined by names ("mouth" = inner mouth + both
lips, "static" = hair + neck + cloth), so both files give the same regions.

Input normalisation: the generator image in [-1, 1] is resized (bicubic) to 512, mapped to [0, 1] with
(x + 1) / 2, clamped, then normalised with ImageNet mean/std. NFS instead clamps the [-1, 1] image directly to
[0, 1] (negative values become 0); ``ParsingConfig.official_clamp=True`` reproduces that for comparisons.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nerffs.errors import CheckpointError, InputError
from nerffs.face3d.resnet import ResNet, ResNetConfig
from nerffs.utils.checkpoint import load_strict, read_state_dict

log = logging.getLogger(__name__)

_CLASS_NAMES_16 = ("background", "skin", "nose", "eyeglasses", "eyes", "brows", "ears", "mouth", "upper_lip",
                   "lower_lip", "hair", "hat", "earring", "necklace", "neck", "cloth")
_CLASS_NAMES_19 = ("background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "eyeglasses",
                   "left_ear", "right_ear", "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck",
                   "necklace", "cloth", "hair", "hat")


@dataclass(frozen=True)
class ParsingConfig:
    """Label set and input pipeline of a face-parsing checkpoint.

    Attributes:
        class_names: name of every class id, in id order; its length is the number of classes.
        mouth_classes: names forming the mouth region (inner mouth + both lips, spec 5 / 7.4).
        static_classes: names forming the static ("torso") region: hair, neck, cloth (spec 5 / 7.3).
        input_size: side the image is resized to before parsing (512 in NFS).
        official_clamp: True reproduces NFS's ``clamp(img, 0, 1)`` of the [-1, 1] image before mean/std;
            False (default) maps [-1, 1] to [0, 1] with (x + 1) / 2 first.
        mean: ImageNet channel means applied to the [0, 1] image.
        std: ImageNet channel standard deviations.
    """

    class_names: tuple[str, ...] = _CLASS_NAMES_16
    mouth_classes: tuple[str, ...] = ("mouth", "upper_lip", "lower_lip")
    static_classes: tuple[str, ...] = ("hair", "neck", "cloth")
    head_classes: tuple[str, ...] = ("hair", "hat")
    """Static classes that belong to the head: with head motion ('deform') they turn with it; the rest stay."""
    input_size: int = 512
    official_clamp: bool = False
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        unknown = [n for n in self.mouth_classes + self.static_classes + self.head_classes
                   if n not in self.class_names]
        if unknown:
            raise ValueError(f"ParsingConfig region classes {unknown} are not in class_names; fix the names")
        if self.input_size < 32:
            raise ValueError(f"ParsingConfig.input_size must be >= 32 (five stride-2 stages), got {self.input_size}")

    @property
    def num_classes(self) -> int:
        """Number of output channels of the network."""
        return len(self.class_names)

    def ids(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """Class ids of the given names (sorted)."""
        return tuple(sorted(self.class_names.index(n) for n in names))

    @property
    def mouth_ids(self) -> tuple[int, ...]:
        """Ids of the mouth region: (7, 8, 9) for 16 classes, (11, 12, 13) for 19."""
        return self.ids(self.mouth_classes)

    @property
    def static_ids(self) -> tuple[int, ...]:
        """Ids of the static region: (10, 14, 15) for 16 classes, (14, 16, 17) for 19."""
        return self.ids(self.static_classes)

    @property
    def head_ids(self) -> tuple[int, ...]:
        """Ids of the head's non-face classes (hair, hat)."""
        return self.ids(self.head_classes)

    @classmethod
    def barbershop16(cls, **overrides) -> "ParsingConfig":
        """Barbershop ``seg.pth`` (16 merged CelebAMask-HQ classes), the NFS checkpoint."""
        return cls(**{"class_names": _CLASS_NAMES_16, **overrides})

    @classmethod
    def celebamask19(cls, **overrides) -> "ParsingConfig":
        """face-parsing.PyTorch ``79999_iter.pth`` (19 CelebAMask-HQ classes)."""
        return cls(**{"class_names": _CLASS_NAMES_19, **overrides})

    @classmethod
    def for_num_classes(cls, num_classes: int, **overrides) -> "ParsingConfig":
        """The preset with ``num_classes`` classes (16 or 19)."""
        presets = {16: cls.barbershop16, 19: cls.celebamask19}
        if num_classes not in presets:
            raise CheckpointError(f"no face-parsing label set with {num_classes} classes is known; use the "
                                  "16-class seg.pth or the 19-class 79999_iter.pth")
        return presets[num_classes](**overrides)


class ConvBNReLU(nn.Module):
    """conv (no bias) -> BN -> ReLU; names ``conv``, ``bn``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=1, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_ch, H, W] -> [B, out_ch, H, W]."""
        return F.relu(self.bn(self.conv(x)))


class AttentionRefinement(nn.Module):
    """ConvBNReLU 3x3, then channel attention sigmoid(BN(conv1x1(global average))) multiplied in."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_ch, H, W] -> [B, out_ch, H, W]."""
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten


class ContextPath(nn.Module):
    """ResNet-18 features refined top-down: stride 32 (+ global context) -> 16 -> 8, nearest upsampling."""

    def __init__(self):
        super().__init__()
        self.resnet = ResNet(ResNetConfig.resnet18())
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, 3, H, W] -> (feat8 [B, 128, H/8, W/8] from ResNet, refined8 [B, 128, H/8, W/8],
        refined16 [B, 128, H/16, W/16])."""
        _, feat8, feat16, feat32 = self.resnet.forward_stages(x)
        context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        top32 = self.arm32(feat32) + F.interpolate(context, size=feat32.shape[2:], mode="nearest")
        up16 = self.conv_head32(F.interpolate(top32, size=feat16.shape[2:], mode="nearest"))
        top16 = self.arm16(feat16) + up16
        up8 = self.conv_head16(F.interpolate(top16, size=feat8.shape[2:], mode="nearest"))
        return feat8, up8, up16


class FeatureFusion(nn.Module):
    """Concatenate two feature maps, ConvBNReLU 1x1, then add a channel-attention-weighted copy."""

    def __init__(self, in_ch: int = 256, out_ch: int = 256):
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, kernel_size=1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """Two [B, C_i, h, w] maps with C_1 + C_2 = in_ch -> [B, out_ch, h, w]."""
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * atten + feat


class ParsingHead(nn.Module):
    """ConvBNReLU 3x3 -> 1x1 conv (no bias) to class logits; names ``conv``, ``conv_out``."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.conv_out = nn.Conv2d(mid_ch, num_classes, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_ch, h, w] -> [B, num_classes, h, w]."""
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """Face-parsing BiSeNet with the mask helpers of the pipeline.

    State-dict names: ``cp.*`` (context path), ``ffm.*``, ``conv_out.*``, ``conv_out16.*``, ``conv_out32.*``.

    Args:
        config: label set and input pipeline; ``config.num_classes`` sets the head widths.
    """

    def __init__(self, config: ParsingConfig | None = None):
        super().__init__()
        self.config = config or ParsingConfig()
        n = self.config.num_classes
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = ParsingHead(256, 256, n)
        self.conv_out16 = ParsingHead(128, 64, n)
        self.conv_out32 = ParsingHead(128, 64, n)

    def forward(self, x: torch.Tensor, return_aux: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class logits at the input resolution (bilinear, align_corners=True).

        Args:
            x: [B, 3, H, W] normalised image (see :func:`normalize_for_parsing`).
            return_aux: also return the two auxiliary (training-time) heads.

        Returns:
            [B, num_classes, H, W] logits, or a tuple (main, aux16, aux32) of such.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"BiSeNet expects a normalised image batch [B, 3, H, W], got {tuple(x.shape)}")
        feat8, refined8, refined16 = self.cp(x)
        logits = [self.conv_out(self.ffm(feat8, refined8))]
        if return_aux:
            logits += [self.conv_out16(refined8), self.conv_out32(refined16)]
        size = x.shape[2:]
        up = [F.interpolate(t, size=size, mode="bilinear", align_corners=True) for t in logits]
        return tuple(up) if return_aux else up[0]

    @torch.no_grad()
    def parse(self, image: torch.Tensor) -> torch.Tensor:
        """Per-pixel class ids of a generator image.

        Args:
            image: [B, 3, H, W] float in [-1, 1].

        Returns:
            [B, S, S] int64 labels, S = ``config.input_size`` (512: the resolution NFS parses at).
        """
        return self(normalize_for_parsing(image, self.config)).argmax(dim=1)

    def mouth_mask(self, image: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """1 on the mouth region (inner mouth + lips), 0 elsewhere.

        NFS's blending mask is ``1 - mouth_mask`` (1 = keep the deformed render, spec-stylenerf.md 7.4).

        Args:
            image: [B, 3, H, W] float in [-1, 1].
            size: output size; None gives (H, W). NFS works at the parsing resolution, ``input_size``.

        Returns:
            [B, 1, *size] float {0, 1}.
        """
        return labels_to_mask(self.parse(image), self.config.mouth_ids, _out_size(image, size))

    def static_mask(self, image: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """1 on the static region (hair, neck, cloth) whose points are pinned (spec-stylenerf.md 7.3).

        Args:
            image: [B, 3, H, W] float in [-1, 1].
            size: output size; None gives (H, W). NFS takes torso pixel coordinates at ``input_size``.

        Returns:
            [B, 1, *size] float {0, 1}.
        """
        return labels_to_mask(self.parse(image), self.config.static_ids, _out_size(image, size))


    supports_crops = True
    """A crop can be parsed on its own (``mouth_mask_crop``): BiSeNet is convolutional."""

    def mouth_mask_crop(self, crop: torch.Tensor, image_size: int, size: tuple[int, int]) -> torch.Tensor:
        """Mouth mask of a crop of an ``image_size`` image, parsed at the scale the whole image is parsed at.

        Not identical to cutting the whole image's mask: the attention and global-context branches pool over
        what they see (here the crop). Used by the loop's mouth-only LipaintNet pass.

        Args:
            crop: [B, 3, h, w] float in [-1, 1].
            image_size: side of the image the crop comes from.
            size: (h', w') of the returned mask (the crop at the parsing resolution of the loop).

        Returns:
            [B, 1, *size] float {0, 1}.
        """
        scale = self.config.input_size / image_size
        target = (max(32, round(crop.shape[-2] * scale)), max(32, round(crop.shape[-1] * scale)))
        labels = self(normalize_for_parsing(crop, self.config, target)).argmax(dim=1)
        return labels_to_mask(labels, self.config.mouth_ids, size)

    def head_mask(self, image: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """1 on the head's non-face region (hair, hat): the static points there turn with the head.

        Args:
            image: [B, 3, H, W] float in [-1, 1].
            size: output size; None gives (H, W).

        Returns:
            [B, 1, *size] float {0, 1}.
        """
        return labels_to_mask(self.parse(image), self.config.head_ids, _out_size(image, size))


def _out_size(image: torch.Tensor, size: int | tuple[int, int] | None) -> tuple[int, int]:
    if size is None:
        return int(image.shape[-2]), int(image.shape[-1])
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def normalize_for_parsing(image: torch.Tensor, config: ParsingConfig,
                          size: tuple[int, int] | None = None) -> torch.Tensor:
    """Generator image -> BiSeNet input: bicubic resize to ``input_size``, to [0, 1], ImageNet mean/std.

    Args:
        image: [B, 3, H, W] float in [-1, 1].
        config: ``input_size``, ``official_clamp`` (NFS: ``clamp(x, 0, 1)``; default: ``clamp((x + 1) / 2,
            0, 1)``), ``mean`` and ``std``.
        size: (h, w) to resize to instead of ``input_size`` square (a crop parsed at the whole image's scale).

    Returns:
        [B, 3, input_size, input_size] (or [B, 3, *size]) normalised float.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"face parsing expects an RGB batch [B, 3, H, W] in [-1, 1], got {shape}")
    if not image.is_floating_point():
        raise InputError(f"face parsing expects a float image in [-1, 1], got {image.dtype}; convert with "
                         "x / 127.5 - 1")
    target = size or (config.input_size, config.input_size)
    if tuple(image.shape[2:]) != tuple(target):
        image = F.interpolate(image, size=tuple(target), mode="bicubic", align_corners=False)
    unit = image.clamp(0.0, 1.0) if config.official_clamp else ((image + 1.0) * 0.5).clamp(0.0, 1.0)
    mean = torch.tensor(config.mean, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=unit.dtype, device=unit.device).view(1, 3, 1, 1)
    return (unit - mean) / std


def labels_to_mask(labels: torch.Tensor, ids: tuple[int, ...],
                   size: tuple[int, int] | None = None) -> torch.Tensor:
    """Binary mask of the pixels whose label is in ``ids``.

    Args:
        labels: [B, h, w] integer class ids.
        ids: class ids forming the region (e.g. ``config.mouth_ids``).
        size: output (H, W); resized with nearest neighbour when it differs from (h, w).

    Returns:
        [B, 1, H, W] float32 in {0, 1}.
    """
    if labels.ndim != 3:
        raise InputError(f"labels must be [B, h, w] class ids, got {tuple(labels.shape)}")
    wanted = torch.tensor(ids, dtype=labels.dtype, device=labels.device)
    mask = torch.isin(labels, wanted).to(torch.float32)[:, None]
    if size is not None and tuple(mask.shape[2:]) != tuple(size):
        mask = F.interpolate(mask, size=size, mode="nearest")
    return mask


def load_bisenet(path: str | os.PathLike, num_classes: int | None = None, *,
                 device: torch.device | str = "cpu", **config_overrides) -> BiSeNet:
    """Build a :class:`BiSeNet` for a face-parsing checkpoint and load it strictly.

    Args:
        path: ``seg.pth`` (16 classes), ``79999_iter.pth`` (19 classes) or a ``.safetensors`` of the same
            names. A ``module.`` prefix (DataParallel) is stripped.
        num_classes: expected class count; None infers it from ``conv_out.conv_out.weight``.
        device: where the model lives.
        **config_overrides: further :class:`ParsingConfig` fields (e.g. ``official_clamp=True``).

    Returns:
        The network in eval mode with frozen parameters; ``net.config`` holds the matching label set.

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: unreadable file, not a BiSeNet, a class count that differs from ``num_classes``,
            or names/shapes that do not match (one line).
    """
    name = Path(path).name
    state = read_state_dict(path, what="face-parsing checkpoint")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    head = state.get("conv_out.conv_out.weight")
    if head is None or head.ndim != 4:
        raise CheckpointError(f"face-parsing checkpoint {name} has no 'conv_out.conv_out.weight' "
                              "[classes, 256, 1, 1]; is it a BiSeNet seg.pth / 79999_iter.pth?")
    found = int(head.shape[0])
    if num_classes is not None and num_classes != found:
        raise CheckpointError(f"face-parsing checkpoint {name} has {found} classes but num_classes="
                              f"{num_classes} was requested; pass num_classes={found} or None")
    net = BiSeNet(ParsingConfig.for_num_classes(found, **config_overrides))
    load_strict(net, state, what=f"face-parsing checkpoint {name}")
    log.info("loaded %d-class BiSeNet from %s", found, path)
    return net.to(device).eval().requires_grad_(False)

