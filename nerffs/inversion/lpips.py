"""LPIPS perceptual distance (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018), version 0.1, written without torchvision (it does not import here, offline-assets.md 0).

Distance between images ``x`` and ``y`` in [-1, 1]:

1. Scale: ``(x - shift) / scale`` with the ImageNet mean/std expressed in the [-1, 1] range
   (``shift = 2 * mean - 1``, ``scale = 2 * std``).
2. Features: the outputs of five ReLUs of an ImageNet classifier trunk (VGG16: relu1_2, relu2_2, relu3_3,
   relu4_3, relu5_3; AlexNet: relu1 ... relu5).
3. Unit-normalise every feature vector along channels, square the difference of the two images' vectors,
   weight the channels with a learned non-negative 1x1 "linear head" per layer, average over space and sum
   over the five layers.

The trunk modules are named as torchvision's ``vgg16().features`` / ``alexnet().features`` (``features.{i}``),
so torchvision's ImageNet checkpoint files load by name (their ``classifier.*`` entries are ignored). The
linear heads are the v0.1 files shipped inside the ``lpips`` pip package; they are located through
``importlib`` without importing the package (which would import torchvision).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from nerffs.errors import CheckpointError, WeightsMissingError
from nerffs.utils.checkpoint import read_state_dict
from nerffs.utils.packages import package_dir
from nerffs.weights import REGISTRY, asset_path, fetch_command, resolve

log = logging.getLogger(__name__)

Net = Literal["vgg", "alex"]

# Trunk layouts as in torchvision: (out_channels, kernel, stride, padding) per conv, "M" = 2x2 (VGG) or 3x3/2
# (AlexNet) max-pool. Each conv is followed by a ReLU, so module indices match torchvision's.
_VGG16 = [(64, 3, 1, 1), (64, 3, 1, 1), "M", (128, 3, 1, 1), (128, 3, 1, 1), "M", (256, 3, 1, 1), (256, 3, 1, 1),
          (256, 3, 1, 1), "M", (512, 3, 1, 1), (512, 3, 1, 1), (512, 3, 1, 1), "M", (512, 3, 1, 1), (512, 3, 1, 1),
          (512, 3, 1, 1), "M"]
_ALEX = [(64, 11, 4, 2), "M", (192, 5, 1, 2), "M", (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1), "M"]
# Index (in ``features``) of the ReLU whose output each of the five LPIPS layers reads.
_TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}
_LAYOUTS = {"vgg": _VGG16, "alex": _ALEX}
# ImageNet mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) in [-1, 1] units.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

BACKBONE_ASSETS = {"vgg": "lpips_vgg16_backbone", "alex": "lpips_alexnet_backbone"}
"""Weights-registry asset of each net's trunk: torchvision's ImageNet checkpoints, unchanged."""
BACKBONE_FILES = {net: REGISTRY[name].filename for net, name in BACKBONE_ASSETS.items()}
"""Trunk file of each net, relative to the weights directory (from the registry)."""
HEAD_FILES = {"vgg": "weights/v0.1/vgg.pth", "alex": "weights/v0.1/alex.pth"}
"""Linear-head files inside the installed ``lpips`` package directory."""
LPIPS_REQUIREMENT = "lpips==0.1.4"


def _check_net(net: str) -> None:
    if net not in _LAYOUTS:
        raise ValueError(f"LPIPS net must be 'vgg' or 'alex', got {net!r}")


def _build_trunk(net: str) -> nn.Sequential:
    """torchvision-compatible ``features`` trunk (conv/ReLU/max-pool with torchvision's module indices)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for item in _LAYOUTS[net]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2) if net == "vgg" else nn.MaxPool2d(3, 2))
            continue
        out_ch, k, s, p = item
        layers += [nn.Conv2d(in_ch, out_ch, k, stride=s, padding=p), nn.ReLU()]
        in_ch = out_ch
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with a VGG16 or AlexNet trunk.

    Parameters are created uninitialised-but-deterministic (zeros); load real weights with ``load_backbone``
    and ``load_heads``, or random ones with ``randomize_backbone`` (tests and smoke runs only). The module
    has no trainable role: use it in eval mode with ``requires_grad_(False)``; gradients still flow to the
    input images.

    Attributes:
        net: 'vgg' or 'alex'.
        features: the trunk, names ``features.{i}.weight/bias`` as in torchvision.
        heads: five 1x1 convolutions without bias, ``heads.{k}.weight`` [1, C_k, 1, 1].
        backbone_source: where the trunk weights came from (a path, or 'random(seed=...)').
    """

    def __init__(self, net: Net = "vgg") -> None:
        super().__init__()
        _check_net(net)
        self.net = net
        self.features = _build_trunk(net)
        self.taps = _TAPS[net]
        chans = [self.features[i - 1].out_channels for i in self.taps]
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in chans)
        for p in self.parameters():
            nn.init.zeros_(p)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.backbone_source = "uninitialised"

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, 3, H, W] in [-1, 1] -> five channel-normalised feature maps [B, C_k, H_k, W_k]."""
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features[: self.taps[-1] + 1]):
            h = layer(h)
            if i in self.taps:
                out.append(h / (h.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Perceptual distance.

        Args:
            x: [B, 3, H, W] images in [-1, 1] (H, W >= 16 for VGG, >= 32 for AlexNet, so every layer is non-empty).
            y: [B, 3, H, W] images in [-1, 1], or [1, 3, H, W] broadcast against ``x``.

        Returns:
            [B] distances (0 for identical images; about 0.1-0.7 for visibly different natural images).
        """
        if y.ndim != 4 or y.shape[0] not in (1, x.shape[0]) or y.shape[1:] != x.shape[1:]:
            raise ValueError(f"LPIPS expects two [B, 3, H, W] images of equal size, got {tuple(x.shape)} and "
                             f"{tuple(y.shape)}")
        return self.distance(x, self.layer_features(y))

    def distance(self, x: torch.Tensor, y_features: list[torch.Tensor]) -> torch.Tensor:
        """Distance from images x [B, 3, H, W] to precomputed ``layer_features(y)`` (a fixed target). -> [B]"""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects [B, 3, H, W] images, got {tuple(x.shape)}")
        total = x.new_zeros(x.shape[0])
        for fx, fy, head in zip(self.layer_features(x), y_features, self.heads):
            if fx.shape[1:] != fy.shape[1:]:
                raise ValueError(f"LPIPS target features {tuple(fy.shape)} do not match the image's {tuple(fx.shape)}")
            total = total + head((fx - fy).square()).mean(dim=(1, 2, 3))
        return total

    # ---- weights ------------------------------------------------------------------------------------------
    def load_backbone(self, state: Mapping[str, torch.Tensor], what: str = "LPIPS backbone") -> None:
        """Load trunk weights from a torchvision-named state dict (``features.*``; ``classifier.*`` ignored).

        Raises:
            CheckpointError: a trunk tensor is missing or misshaped, or the file holds unrelated names.
        """
        own = {k: v for k, v in self.state_dict().items() if k.startswith("features.")}
        foreign = [k for k in state if not k.startswith(("features.", "classifier."))]
        missing = [k for k in own if k not in state]
        bad = [f"{k} {tuple(state[k].shape)}!={tuple(v.shape)}" for k, v in own.items()
               if k in state and state[k].shape != v.shape]
        extra = [k for k in state if k.startswith("features.") and k not in own]
        if foreign or missing or bad or extra:
            first = (missing + bad + extra + foreign)[:3]
            raise CheckpointError(f"{what} is not a torchvision {self.net} checkpoint ({len(missing)} missing, "
                                  f"{len(bad)} misshaped, {len(extra) + len(foreign)} unexpected: {first}); "
                                  f"expected {BACKBONE_FILES[self.net]}")
        with torch.no_grad():
            for name, tensor in self.features.named_parameters():
                tensor.copy_(state[f"features.{name}"].to(tensor.dtype))

    def load_heads(self, state: Mapping[str, torch.Tensor], what: str = "LPIPS heads") -> None:
        """Load the five linear heads from an ``lpips`` v0.1 file (names ``lin{k}.model.1.weight``)."""
        for k, head in enumerate(self.heads):
            key = f"lin{k}.model.1.weight"
            if key not in state or state[key].shape != head.weight.shape:
                found = tuple(state[key].shape) if key in state else "absent"
                raise CheckpointError(f"{what}: {key} is {found}, expected {tuple(head.weight.shape)}; "
                                      f"is it the {self.net} file of {LPIPS_REQUIREMENT}?")
            with torch.no_grad():
                head.weight.copy_(state[key])

    def randomize_backbone(self, rng: torch.Generator) -> None:
        """Random He-normal trunk weights, zero biases (for tests and smoke runs: NOT a perceptual metric)."""
        with torch.no_grad():
            for m in self.features:
                if isinstance(m, nn.Conv2d):
                    fan_in = m.weight[0].numel()
                    m.weight.copy_(torch.randn(m.weight.shape, generator=rng) * (2.0 / fan_in) ** 0.5)
                    m.bias.zero_()


def lpips_package_dir() -> Path:
    """Directory of the installed ``lpips`` package, found without importing it (it imports torchvision)."""
    root = package_dir("lpips")
    if root is None:
        raise WeightsMissingError(f"the LPIPS linear heads come from the 'lpips' package, which is not installed; "
                                  f"run: pip install --no-deps {LPIPS_REQUIREMENT}")
    return root


def head_path(net: Net) -> Path:
    """Path of the v0.1 linear-head file of ``net`` inside the installed ``lpips`` package."""
    _check_net(net)
    path = lpips_package_dir() / HEAD_FILES[net]
    if not path.is_file():
        raise WeightsMissingError(f"LPIPS head file {path} is missing; reinstall: pip install --no-deps "
                                  f"--force-reinstall {LPIPS_REQUIREMENT}")
    return path


def default_backbone_path(net: Net) -> Path:
    """Default location of the torchvision ImageNet trunk file of ``net`` in the weights directory."""
    _check_net(net)
    return asset_path(BACKBONE_ASSETS[net])


def load_lpips(net: Net = "vgg", backbone_path: str | os.PathLike | None = None, allow_random: bool = False,
               random_seed: int = 0, device: torch.device | str = "cpu") -> LPIPS:
    """Build an LPIPS metric with the package's heads and torchvision's ImageNet trunk.

    Args:
        net: 'vgg' (VGG16) or 'alex' (AlexNet).
        backbone_path: the torchvision checkpoint; None uses ``default_backbone_path(net)``.
        allow_random: when the trunk file is absent, use random trunk weights (seeded by ``random_seed``) and
            log that the metric is not perceptual, instead of raising. Only for tests and smoke runs.
        random_seed: seed of the random trunk.
        device: where the module lives.

    Returns:
        ``LPIPS`` in eval mode with ``requires_grad`` off.

    Raises:
        WeightsMissingError: the trunk file (or the lpips package) is missing; the message names the file,
            the directory to put it in and where to download it.
    """
    _check_net(net)
    model = LPIPS(net)
    model.load_heads(read_state_dict(head_path(net), what=f"LPIPS {net} heads"), what=f"LPIPS {net} heads")
    path = Path(backbone_path) if backbone_path is not None else default_backbone_path(net)
    if path.is_file():
        model.load_backbone(read_state_dict(path, what=f"LPIPS {net} backbone"), what=f"LPIPS {net} backbone {path}")
        model.backbone_source = str(path)
    elif allow_random:
        log.warning("LPIPS-%s: backbone %s not found; using RANDOM trunk weights (seed %d): smoke/test "
                       "metric, not perceptual", net, path, random_seed)
        model.randomize_backbone(torch.Generator().manual_seed(random_seed))
        model.backbone_source = f"random(seed={random_seed})"
    else:
        raise WeightsMissingError(f"LPIPS-{net} backbone {path.name} not found at {path}: fetch it with "
                                  f"{fetch_command([BACKBONE_ASSETS[net]])} (or put torchvision's file there)")
    return model.to(device).eval().requires_grad_(False)


def load_lpips_pair(root: str | os.PathLike | None = None, allow_random: bool = False, random_seed: int = 0,
                    device: torch.device | str = "cpu") -> dict[str, LPIPS]:
    """Both LPIPS nets (``{'vgg': ..., 'alex': ...}``, what PTI's two stages use) with their trunks from the
    weights directory ``root``.

    Args:
        root: weights directory (default ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights``).
        allow_random: a missing trunk becomes a seeded random one (logged: a smoke metric, not perceptual)
            instead of an error. Only for smoke runs.
        random_seed: seed of random trunks.
        device: where the modules live.

    Raises:
        WeightsMissingError: a trunk is missing (and not ``allow_random``): the line names the file and the
            command that fetches it into ``root``.
    """
    out = {}
    for net, asset in BACKBONE_ASSETS.items():
        try:
            path = resolve(asset, root)
        except WeightsMissingError:
            if not allow_random:
                raise
            path = asset_path(asset, root)
        out[net] = load_lpips(net, path, allow_random=allow_random, random_seed=random_seed, device=device)
    return out
