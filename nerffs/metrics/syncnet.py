"""LSE-D / LSE-C (Prajwal et al. 2020, Wav2Lip) with SyncNet (Chung & Zisserman 2016, "Out of time").

The network (the "v2" two-stream model: an MFCC audio CNN and a 5-frame lip 3D CNN, 1024-d outputs) is
written here; the official ``syncnet_v2.model`` state dict is loaded strictly from
``$NERFFS_WEIGHTS/syncnet_v2.model`` when present. It is not on PyPI (offline-assets.md section 3), so without
it LSE is skipped with a message (``syncnet_or_none``). MFCCs come from librosa (13 coefficients, 25 ms window,
10 ms hop), not python_speech_features, and faces are cropped from dlib landmarks rather than the S3FD
tracker: scores are close to but not bit-identical with the reference evaluation.

LSE-D = the minimum over audio-video offsets (+-15 frames) of the mean embedding distance; LSE-C = median
minus minimum of those mean distances.
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

from nerffs.errors import InputError, WeightsMissingError

log = logging.getLogger(__name__)

SYNCNET_FILE = "syncnet_v2.model"
FACE_SIZE = 224


def _c2(cin, cout, k, s=1, p=0):
    return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _c3(cin, cout, k, s=1, p=0):
    return [nn.Conv3d(cin, cout, k, s, p), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


class SyncNet(nn.Module):
    """audio MFCC [N, 1, 13, 20] -> [N, 1024]; lips [N, 3, 5, 224, 224] (0..255) -> [N, 1024]."""

    def __init__(self):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_c2(1, 64, 3, 1, 1), nn.MaxPool2d(1, 1), *_c2(64, 192, 3, 1, 1), nn.MaxPool2d(3, (1, 2)),
            *_c2(192, 384, 3, 1, 1), *_c2(384, 256, 3, 1, 1), *_c2(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
            *_c2(256, 512, (5, 4)))
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                      nn.Linear(512, 1024))
        self.netcnnlip = nn.Sequential(
            *_c3(3, 96, (5, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), *_c3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_c3(256, 512, (1, 6, 6)))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                      nn.Linear(512, 1024))

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(lips).flatten(1))


def load_syncnet(path: str | os.PathLike | None = None) -> SyncNet:
    """SyncNet with the official ``syncnet_v2.model`` state dict (default under ``$NERFFS_WEIGHTS``)."""
    from nerffs.weights.paths import weights_dir

    path = Path(path) if path is not None else weights_dir() / SYNCNET_FILE
    if not path.is_file():
        raise WeightsMissingError(f"SyncNet weights not found at {path}: LSE-D/LSE-C are skipped (put the official "
                                  "syncnet_v2.model there; the offline lip-sync proxy is reported instead)")
    model = SyncNet()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def syncnet_or_none(path: str | os.PathLike | None = None) -> SyncNet | None:
    """The SyncNet model, or None with a logged skip message."""
    try:
        return load_syncnet(path)
    except WeightsMissingError as exc:
        log.info("%s", exc)
        return None


@dataclass(frozen=True)
class LSEScore:
    lse_d: float
    lse_c: float
    offset: int
    dists: np.ndarray  # [2 * vshift + 1] mean distance per offset


def mfcc_features(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono audio -> MFCC [13, F] at 100 frames per second (16 kHz)."""
    import librosa

    if sample_rate != 16000:
        wave = librosa.resample(np.asarray(wave, np.float32), orig_sr=sample_rate, target_sr=16000)
    return librosa.feature.mfcc(y=np.asarray(wave, np.float32), sr=16000, n_mfcc=13, n_fft=512, win_length=400,
                                hop_length=160, center=False)


@torch.inference_mode()
def lse_scores(model: SyncNet, faces: np.ndarray, wave: np.ndarray, sample_rate: int, vshift: int = 15,
               batch_size: int = 20) -> LSEScore:
    """LSE from face crops [T, 224, 224, 3] uint8 at 25 fps and the matching mono audio."""
    if faces.ndim != 4 or faces.shape[1:3] != (FACE_SIZE, FACE_SIZE):
        raise InputError(f"SyncNet expects face crops [T, {FACE_SIZE}, {FACE_SIZE}, 3], got {faces.shape}")
    mfcc = torch.from_numpy(mfcc_features(wave, sample_rate)).float()
    video = torch.from_numpy(faces).float().permute(3, 0, 1, 2)  # [3, T, H, W]
    n = min(faces.shape[0] - 5, mfcc.shape[1] // 4 - 5)
    if n < 1:
        raise InputError(f"LSE needs at least 6 frames with audio, got {faces.shape[0]}")
    lip, aud = [], []
    for i in range(0, n, batch_size):
        idx = range(i, min(n, i + batch_size))
        lip.append(model.forward_lip(torch.stack([video[:, j:j + 5] for j in idx])))
        aud.append(model.forward_aud(torch.stack([mfcc[:, j * 4:j * 4 + 20] for j in idx])[:, None]))
    lip, aud = torch.cat(lip), torch.cat(aud)
    aud_pad = F.pad(aud, (0, 0, vshift, vshift))
    dists = torch.stack([F.pairwise_distance(lip[i:i + 1].expand(2 * vshift + 1, -1), aud_pad[i:i + 2 * vshift + 1])
                         for i in range(n)])  # [n, offsets]
    mean = dists.mean(0).numpy()
    best = int(mean.argmin())
    return LSEScore(float(mean[best]), float(np.median(mean) - mean[best]), vshift - best, mean)


def face_crops(frames: np.ndarray, detector, size: int = FACE_SIZE) -> np.ndarray | None:
    """Square face crops of every frame from dlib landmarks (None if any frame has no face)."""
    from nerffs.errors import NoFaceError
    from nerffs.metrics.identity import _square_crop

    out = []
    for frame in frames:
        try:
            out.append(_square_crop(frame, detector.detect(frame).points, size, scale=1.4))
        except NoFaceError:
            return None
    return np.stack(out)
