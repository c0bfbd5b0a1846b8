"""Deep3D coefficient regressor: image -> 257 BFM09 coefficients (spec-pipeline.md 3.1, 3.6, 10, 11).

The network is the R-Net of Deng et al., "Accurate 3D Face Reconstruction with Weakly-Supervised Learning"
(CVPRW 2019): a ResNet-50 (no ``fc``) whose pooled [B, 2048, 1, 1] feature feeds seven 1x1 convolutions
(``final_layers.0..6``, with bias) giving id 80, exp 64, tex 80, angle 3, gamma 27, (tx, ty) 2 and tz 1
channels; their concatenation is the [B, 257] vector split by :class:`~nerffs.face3d.coeffs.FaceCoeffs`.

Input contract: RGB in [0, 1], 224 x 224, no mean/std normalisation (spec 3.1). Two ways to get there:

* :func:`preprocess_rgb_image` - a photo (uint8 or [0, 1]) resized to 224 and scaled by 1/255, what NFS does
  for the input-pose estimate and for driving frames (spec 3.6 items 1 and 3). NFS resizes with PIL bicubic,
  which low-pass filters when shrinking; torch's ``antialias=True`` bicubic is the matching filter.
* :func:`preprocess_generator_image` - a generator image in [-1, 1]: torch bicubic resize to 224 (no
  antialias), then ``clamp(x * 127.5 + 128, 0, 255) / 255`` (spec 3.6 item 2). The +128 (not +127.5) is
  kept on purpose: it is what the pretrained pipeline was run with; it shifts values by 0.5/255.

The official 5-point similarity alignment (spec 3.2) is not used by NFS and is not part of this module.

Checkpoints (spec 10): Deep3D's ``epoch_20.pth`` is a dict whose ``'net_recon'`` entry is the state dict
(332 tensors); SadTalker's ``SadTalker_V0.0.2_256.safetensors`` holds the same names under the prefix
``'face_3drecon.'``. A .safetensors file without that prefix is read as a bare regressor state dict (e.g.
one written from :meth:`Deep3DRegressor.state_dict`). Files are read without executing code.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nerffs.errors import InputError
from nerffs.face3d.coeffs import NUM_COEFFS, FaceCoeffs
from nerffs.face3d.resnet import ResNet, ResNetConfig
from nerffs.utils.checkpoint import load_strict, read_state_dict, safetensors_keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deep3DConfig:
    """Shape of the Deep3D regressor.

    Attributes:
        backbone: the ResNet trunk (ResNet-50 without ``fc`` for the official checkpoints).
        head_dims: output channels of ``final_layers.0..6`` in coefficient order (spec 3.1 table).
        input_size: side of the square [0, 1] RGB input the checkpoints were trained on.
    """

    backbone: ResNetConfig = field(default_factory=ResNetConfig.resnet50)
    head_dims: tuple[int, ...] = (80, 64, 80, 3, 27, 2, 1)
    input_size: int = 224

    def __post_init__(self) -> None:
        if sum(self.head_dims) != NUM_COEFFS:
            raise ValueError(f"Deep3DConfig.head_dims must sum to {NUM_COEFFS}, got {sum(self.head_dims)}")
        if self.backbone.num_classes is not None:
            raise ValueError("Deep3DConfig.backbone must have no fc (num_classes=None); the heads replace it")


class Deep3DRegressor(nn.Module):
    """ResNet-50 trunk + seven 1x1 heads; state-dict names ``backbone.*`` and ``final_layers.{0..6}.*``.

    Args:
        config: architecture; the default matches ``epoch_20.pth``.
    """

    def __init__(self, config: Deep3DConfig | None = None):
        super().__init__()
        self.config = config or Deep3DConfig()
        self.backbone = ResNet(self.config.backbone)
        width = self.config.backbone.out_channels
        self.final_layers = nn.ModuleList(nn.Conv2d(width, n, kernel_size=1, bias=True)
                                          for n in self.config.head_dims)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Regress coefficients.

        Args:
            image: [B, 3, 224, 224] RGB in [0, 1] (see the ``preprocess_*`` functions).

        Returns:
            [B, 257] coefficients in the order id | exp | tex | angle | gamma | trans.
        """
        size = self.config.input_size
        if image.ndim != 4 or tuple(image.shape[1:]) != (3, size, size):
            raise InputError(f"Deep3D expects images [B, 3, {size}, {size}] in [0, 1], got "
                             f"{tuple(image.shape)}; pass them through preprocess_rgb_image or "
                             "preprocess_generator_image first")
        pooled = self.backbone(image)[:, :, None, None]  # [B, 2048, 1, 1]: the heads are 1x1 convs
        return torch.cat([torch.flatten(head(pooled), 1) for head in self.final_layers], dim=1)

    def predict(self, image: torch.Tensor) -> FaceCoeffs:
        """:meth:`forward` split into named parts.

        Args:
            image: [B, 3, 224, 224] RGB in [0, 1].

        Returns:
            FaceCoeffs with id [B, 80], exp [B, 64], tex [B, 80], angle [B, 3], gamma [B, 27], trans [B, 3].
        """
        return FaceCoeffs.from_vector(self(image))


def _check_image(image: torch.Tensor, name: str) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"{name} expects an RGB batch [B, 3, H, W], got {shape}; add a batch dimension "
                         "and put channels first")


def preprocess_generator_image(image: torch.Tensor, size: int = 224) -> torch.Tensor:
    """A generator image in [-1, 1] -> Deep3D input, exactly as NFS feeds its frontal render (spec 3.6).

    Steps: bicubic resize to ``size`` (torch, align_corners=False, no antialias), then
    ``clamp(x * 127.5 + 128, 0, 255) / 255``.

    Args:
        image: [B, 3, H, W] float in [-1, 1].
        size: output side.

    Returns:
        [B, 3, size, size] float in [0, 1].
    """
    _check_image(image, "preprocess_generator_image")
    if not image.is_floating_point():
        raise InputError(f"preprocess_generator_image expects a float image in [-1, 1], got {image.dtype}; "
                         "use preprocess_rgb_image for uint8 photos")
    resized = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False)
    return (resized * 127.5 + 128.0).clamp(0.0, 255.0) / 255.0


def preprocess_rgb_image(image: torch.Tensor, size: int = 224) -> torch.Tensor:
    """A photo -> Deep3D input: resize to ``size`` and scale to [0, 1] (spec 3.6 items 1 and 3).

    NFS resizes a PIL image with bicubic filtering (which low-passes when shrinking) and divides the uint8
    result by 255. Here: bicubic with ``antialias=True``; for uint8 input the result is rounded back to the
    uint8 grid as PIL's uint8 output is.

    Args:
        image: [B, 3, H, W] uint8 in [0, 255] or float in [0, 1].
        size: output side.

    Returns:
        [B, 3, size, size] float32 in [0, 1].
    """
    _check_image(image, "preprocess_rgb_image")
    if image.dtype == torch.uint8:
        resized = F.interpolate(image.float(), size=(size, size), mode="bicubic", align_corners=False,
                                antialias=True)
        return resized.round().clamp(0.0, 255.0) / 255.0
    if not image.is_floating_point():
        raise InputError(f"preprocess_rgb_image expects uint8 or float in [0, 1], got {image.dtype}")
    resized = F.interpolate(image, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    return resized.clamp(0.0, 1.0)


def _fill_bn_counters(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add BatchNorm ``num_batches_tracked`` counters absent from a file (spec 11: unknown whether SadTalker's
    safetensors stores them). They only matter in training with momentum=None, never in eval."""
    own = module.state_dict()
    filled = dict(state)
    added = 0
    for name, value in own.items():
        if name.endswith(".num_batches_tracked") and name not in filled:
            if name[: -len("num_batches_tracked")] + "running_mean" in filled:
                filled[name] = torch.zeros_like(value)
                added += 1
    if added:
        log.debug("filled %d missing BatchNorm num_batches_tracked counters with 0", added)
    return filled


def read_deep3d_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The regressor's state dict from an official or converted file (names as in :class:`Deep3DRegressor`).

    Args:
        path: ``epoch_20.pth`` (dict with ``'net_recon'``), ``SadTalker_V0.0.2_256.safetensors`` (prefix
            ``'face_3drecon.'``) or a bare regressor ``.safetensors``.

    Returns:
        dict name -> tensor.

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: unreadable, unsafe, or without the expected entry / prefix.
    """
    what = "Deep3D checkpoint"
    if Path(path).suffix == ".safetensors":
        # SadTalker bundle: read only the Deep3D part (the header says whether the prefix is there).
        bundle = Path(path).is_file() and any(k.startswith("face_3drecon.") for k in safetensors_keys(path))
        return read_state_dict(path, prefix="face_3drecon." if bundle else None, what=what)
    return read_state_dict(path, key="net_recon", what=what)


def load_deep3d(path: str | os.PathLike, *, device: torch.device | str = "cpu",
                config: Deep3DConfig | None = None) -> Deep3DRegressor:
    """Build :class:`Deep3DRegressor` and load a checkpoint strictly (every name and shape must match).

    Args:
        path: see :func:`read_deep3d_state_dict`.
        device: where the model lives.
        config: architecture; default ResNet-50 + the seven official heads.

    Returns:
        The regressor in eval mode with frozen parameters.

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: unreadable file, or names/shapes that do not match the regressor (one line).
    """
    model = Deep3DRegressor(config)
    state = _fill_bn_counters(model, read_deep3d_state_dict(path))
    load_strict(model, state, what=f"Deep3D checkpoint {Path(path).name}")
    log.info("loaded Deep3D regressor from %s (%d tensors)", path, len(state))
    return model.to(device).eval().requires_grad_(False)
