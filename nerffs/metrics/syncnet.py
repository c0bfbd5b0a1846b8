"""LSE-D / LSE-C (Prajwal et al. 2020, "A Lip Sync Expert Is All You Need", Wav2Lip section 4) with SyncNet
(Chung & Zisserman 2016, "Out of time: automated lip sync in the wild").

The metric is defined by the public SyncNet evaluation (syncnet_python with the ``syncnet_v2.model`` weights,
as driven by Wav2Lip's ``evaluation/scores_LSE`` scripts). Everything here is written in this project and
follows that evaluation step by step:

1. Audio: 16 kHz mono, 16-bit PCM samples (int16 values, not floats in [-1, 1]) ->
   ``python_speech_features.mfcc`` with its defaults (25 ms window, 10 ms step, 13 coefficients, 26 filters,
   512-point FFT, pre-emphasis 0.97, lifter 22, c0 replaced by the log frame energy) -> ``[13, F]`` at 100 Hz.
2. Video: 25 fps face crops, 224 x 224, **BGR** channel order (as ``cv2.imread`` returns them), float 0..255
   with no mean subtraction or scaling. Crop geometry (``face_crops``): half-size ``s = max(w, h) / 2`` of the
   face box, box centre and ``s`` median-filtered over the clip (kernel 13), frame padded with the value 110,
   rows ``[cy - s, cy + s (1 + 2 * 0.4))``, columns ``[cx - s (1 + 0.4), cx + s (1 + 0.4))``, resized to 224.
3. Windows: ``n = min(T, floor(num_samples / 640)) - 5``. Window ``i`` pairs frames ``i .. i+4`` (lip input
   ``[n, 3, 5, 224, 224]``) with MFCC columns ``4i .. 4i+19`` (audio input ``[n, 1, 13, 20]``): 4 MFCC steps per
   video frame.
4. Offsets: audio embeddings padded with ``vshift`` zero rows at both ends; ``d[i, j]`` = Euclidean distance
   (``F.pairwise_distance``) between lip window ``i`` and audio window ``i + j - vshift``, ``j = 0 .. 2 vshift``
   (``vshift = 15``). ``mdist[j]`` = mean of ``d[:, j]`` over the clip.
5. Per clip: LSE-D = ``min_j mdist[j]`` (the reference's ``minval``), LSE-C = ``median_j mdist[j] - min_j
   mdist[j]``, AV offset = ``vshift - argmin_j mdist[j]`` (positive: the sound of lip window ``i`` is in audio
   window ``i - offset``, i.e. the audio is ahead of the picture). Over a test set, LSE-D and LSE-C are the means
   of the per-clip values.

What has been verified (tests/nerffs/metrics/test_syncnet.py, no real weights needed):

* the network's parameter names and shapes are those of the reference model definition (strict load of a
  synthetic file with exactly that table, saved as a plain ``torch.save`` state dict; the file is read with
  ``torch.load(weights_only=True)``, never unpickled as code);
* the MFCC front end is ``python_speech_features.mfcc`` on int16 samples, 4 columns per video frame;
* the frame batch layout and BGR order match the reference's ``numpy.stack`` / ``transpose`` of ``cv2`` frames;
* steps 3-5 against an independent restatement in the test, and end to end: a planted audio-video offset is
  recovered by the offset search through the real front end and a seeded network, and a mismatched pairing
  scores worse (higher LSE-D, lower LSE-C).

What has **not** been verified:

* nothing has been run with the real ``syncnet_v2.model``: whether the file carries BatchNorm
  ``num_batches_tracked`` entries (both are accepted; they do not affect inference), and whether our numbers
  reproduce the reference's (its README: ``example.avi`` gives AV offset 3, min dist 5.353, confidence 10.021);
* face boxes come from our dlib detector, not the reference's S3FD tracker (scene cuts, detection threshold
  0.9 at scale 0.25, interpolation over missed frames, tracks of more than 100 frames): same crop formula,
  different boxes; a clip with any frame without a face is not scored;
* the reference decodes a re-encoded video (XVID crop video, JPEG frames) and resamples audio with ffmpeg; we
  score the decoded frames and the librosa-resampled waveform directly, and assume 25 fps.

So LSE values here are the reference metric's formula and front end on our crops, comparable within this
project; they are not yet confirmed to match published LSE-D / LSE-C tables.
"""
from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import medfilt
from torch import nn

from nerffs.audio.load import to_mono_16k
from nerffs.errors import InputError, MissingDependencyError, NoFaceError, WeightsMissingError
from nerffs.utils.checkpoint import load_strict, read_state_dict
from nerffs.weights.paths import resolve

log = logging.getLogger(__name__)

SYNCNET_ASSET = "syncnet"
"""Registry name of ``syncnet_v2.model`` (``nerffs.weights.registry``)."""
SAMPLE_RATE = 16000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
MFCC_PER_FRAME = 4  # 100 Hz MFCC steps per 25 fps frame
WINDOW_FRAMES = 5
MFCC_WINDOW = WINDOW_FRAMES * MFCC_PER_FRAME  # 20
FACE_SIZE = 224
CROP_SCALE = 0.4
CROP_PAD_VALUE = 110
BOX_FILTER = 13
VSHIFT = 15
BATCH_SIZE = 20


def _c2(cin, cout, k, s=1, p=0):
    return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _c3(cin, cout, k, s=1, p=0):
    return [nn.Conv3d(cin, cout, k, s, p), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, 1024))


class SyncNet(nn.Module):
    """The two-stream "v2" SyncNet; attribute names and ``Sequential`` indices are those of the official state dict.

    ``forward_aud``: MFCC windows ``[N, 1, 13, 20]`` -> ``[N, 1024]``.
    ``forward_lip``: BGR frame stacks ``[N, 3, 5, 224, 224]`` (float 0..255) -> ``[N, 1024]``.
    """

    def __init__(self):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_c2(1, 64, 3, 1, 1), nn.MaxPool2d(1, 1), *_c2(64, 192, 3, 1, 1), nn.MaxPool2d(3, (1, 2)),
            *_c2(192, 384, 3, 1, 1), *_c2(384, 256, 3, 1, 1), *_c2(256, 256, 3, 1, 1), nn.MaxPool2d(3, 2),
            *_c2(256, 512, (5, 4)))
        self.netfcaud = _head()
        self.netcnnlip = nn.Sequential(
            *_c3(3, 96, (5, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_c3(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), *_c3(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_c3(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_c3(256, 512, (1, 6, 6)))
        self.netfclip = _head()

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, lips: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(lips).flatten(1))


def load_syncnet(path: str | os.PathLike | None = None) -> SyncNet:
    """SyncNet with the official weights, loaded strictly by parameter name.

    Args:
        path: ``syncnet_v2.model`` (a plain ``torch.save`` state dict, read with ``weights_only=True``) or its
            converted ``.safetensors`` form; None resolves the ``syncnet`` asset under the weights directory.

    Raises:
        WeightsMissingError: no file (LSE is then skipped by ``syncnet_or_none``).
        CheckpointError: unreadable or unsafe file, or names/shapes that differ from the reference model.
    """
    try:
        state = read_state_dict(resolve(SYNCNET_ASSET) if path is None else path, what="SyncNet syncnet_v2.model")
    except WeightsMissingError as exc:
        raise WeightsMissingError(f"{exc}; LSE-D/LSE-C are skipped (the offline lip-sync proxy is reported "
                                  "instead)") from exc
    model = SyncNet()
    # BatchNorm's num_batches_tracked only counts training steps; files saved before it existed lack it.
    counters = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    load_strict(model, {**counters, **state}, what=f"SyncNet weights {path or SYNCNET_ASSET}")
    return model.eval()


def syncnet_or_none(path: str | os.PathLike | None = None) -> SyncNet | None:
    """The SyncNet model, or None with a logged skip message when the weights are absent."""
    try:
        return load_syncnet(path)
    except WeightsMissingError as exc:
        log.info("%s", exc)
        return None


@dataclass(frozen=True)
class LSEScore:
    """Per-clip SyncNet scores (module docstring, step 5)."""

    lse_d: float
    lse_c: float
    offset: int
    """AV offset in frames; positive when the audio is ahead of the picture."""
    dists: np.ndarray
    """``[2 * vshift + 1]`` mean distance per offset column ``j`` (audio window ``i + j - vshift``)."""


# ---- 1. audio front end ------------------------------------------------------------------------------------
def pcm16(wave: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> int16, as ffmpeg writes ``pcm_s16le`` (round to nearest even, clip).

    int16 input is returned as it is.
    """
    w = np.asarray(wave)
    if w.dtype == np.int16:
        return w
    if not np.issubdtype(w.dtype, np.floating):
        raise InputError(f"expected float samples in [-1, 1] or int16 PCM, got dtype {w.dtype}")
    return np.clip(np.rint(w.astype(np.float32) * np.float32(32768.0)), -32768, 32767).astype(np.int16)


def _speech_features() -> Any:
    try:
        import python_speech_features
    except ImportError as exc:
        raise MissingDependencyError("LSE needs python_speech_features (the reference MFCC front end); run "
                                     "`pip install python_speech_features==0.6`") from exc
    return python_speech_features


def pcm16_at_16k(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono audio (float in [-1, 1] or int16) at ``sample_rate`` -> int16 ``[L]`` at 16 kHz.

    Other rates are resampled with librosa's soxr (``nerffs.audio.load.to_mono_16k``); the reference uses ffmpeg.
    """
    w = np.asarray(wave)
    if w.ndim != 1:
        raise InputError(f"expected mono audio [L], got {w.shape}")
    if sample_rate != SAMPLE_RATE:
        w = to_mono_16k(w.astype(np.float32) / 32768.0 if w.dtype == np.int16 else w, sample_rate)
    return pcm16(w)


def mfcc_features(wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono audio -> MFCC ``[13, F]`` float32 at 100 Hz (module docstring, step 1).

    ``F = 1 + ceil((L - 400) / 160)`` columns for ``L >= 400`` 16 kHz samples (e.g. ``4 k - 1`` for ``L = 640 k``).
    """
    return _speech_features().mfcc(pcm16_at_16k(wave, sample_rate), SAMPLE_RATE).T.astype(np.float32)


# ---- 2.-3. windows and embeddings ------------------------------------------------------------------------
def num_windows(num_frames: int, num_samples: int) -> int:
    """Number of 5-frame windows scored: ``min(T, floor(L / 640)) - 5`` (may be < 1)."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


def lip_windows(faces_bgr: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """BGR crops ``[T, H, W, 3]`` -> float frame stacks ``[stop - start, 3, 5, H, W]`` (windows ``start..stop-1``)."""
    clip = faces_bgr[start:stop + WINDOW_FRAMES - 1].permute(3, 0, 1, 2).float()  # [3, t, H, W]
    return torch.stack([clip[:, i:i + WINDOW_FRAMES] for i in range(stop - start)])


def audio_windows(mfcc: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """MFCC ``[13, F]`` -> ``[stop - start, 1, 13, 20]``: window ``i`` holds columns ``4i .. 4i+19``."""
    return torch.stack([mfcc[:, i * MFCC_PER_FRAME:i * MFCC_PER_FRAME + MFCC_WINDOW]
                        for i in range(start, stop)])[:, None]


@torch.inference_mode()
def embed_windows(model: SyncNet, faces_bgr: np.ndarray, mfcc: np.ndarray, count: int,
                  batch_size: int = BATCH_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings ``[count, 1024]`` each (float32, CPU) of the first ``count`` windows."""
    device = next(model.parameters()).device
    video, cc = torch.from_numpy(np.ascontiguousarray(faces_bgr)), torch.from_numpy(np.ascontiguousarray(mfcc))
    lip, aud = [], []
    for start in range(0, count, batch_size):
        stop = min(count, start + batch_size)
        lip.append(model.forward_lip(lip_windows(video, start, stop).to(device)).float().cpu())
        aud.append(model.forward_aud(audio_windows(cc, start, stop).float().to(device)).float().cpu())
    return torch.cat(lip), torch.cat(aud)


# ---- 4.-5. offset search and scores ----------------------------------------------------------------------
def offset_distances(lip: torch.Tensor, aud: torch.Tensor, vshift: int = VSHIFT) -> torch.Tensor:
    """Distances ``d [n, 2 vshift + 1]``: ``d[i, j]`` compares lip window ``i`` with audio window ``i + j - vshift``.

    Audio windows outside ``0 .. n-1`` are zero vectors (the reference pads the embeddings with zero rows).
    """
    if lip.shape != aud.shape or lip.ndim != 2:
        raise InputError(f"expected lip and audio embeddings [n, D] of one shape, got {lip.shape}, {aud.shape}")
    padded = F.pad(aud, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1).transpose(1, 2)  # [n, 2v+1, D]
    return F.pairwise_distance(lip[:, None, :], shifted)


def scores_from_distances(dists: torch.Tensor, vshift: int = VSHIFT) -> LSEScore:
    """Step 5 of the module docstring on ``d [n, 2 vshift + 1]``."""
    mdist = dists.mean(0)
    minval, minidx = torch.min(mdist, 0)
    conf = torch.median(mdist) - minval
    return LSEScore(lse_d=float(minval), lse_c=float(conf), offset=vshift - int(minidx),
                    dists=mdist.double().numpy())


def lse_scores(model: SyncNet, faces: np.ndarray, wave: np.ndarray, sample_rate: int, vshift: int = VSHIFT,
               batch_size: int = BATCH_SIZE) -> LSEScore:
    """LSE-D / LSE-C of one clip.

    Args:
        model: ``load_syncnet()`` (eval mode).
        faces: ``[T, 224, 224, 3]`` uint8 **RGB** face crops at 25 fps (``face_crops``); flipped to BGR here.
        wave: ``[L]`` mono audio of the same clip (float in [-1, 1] or int16), starting with frame 0.
        sample_rate: rate of ``wave``.
        vshift: offsets searched, in frames each way.
        batch_size: windows per forward pass (does not change the result: BatchNorm is in eval mode).
    """
    if faces.ndim != 4 or faces.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
        raise InputError(f"SyncNet expects face crops [T, {FACE_SIZE}, {FACE_SIZE}, 3], got {faces.shape}")
    pcm = pcm16_at_16k(wave, sample_rate)
    mfcc = mfcc_features(pcm)
    count = num_windows(len(faces), len(pcm))
    if count < 1:
        raise InputError(f"LSE needs more than {WINDOW_FRAMES} frames with audio, got {len(faces)} frames and "
                         f"{len(pcm) / SAMPLE_RATE:.3f} s")
    lip, aud = embed_windows(model, faces[..., ::-1], mfcc, count, batch_size)
    return scores_from_distances(offset_distances(lip, aud, vshift), vshift)


# ---- face crops (module docstring, step 2) ---------------------------------------------------------------
def smooth_boxes(boxes: np.ndarray) -> np.ndarray:
    """Face boxes ``[T, 4]`` (left, top, right, bottom) -> ``[T, 3]`` (cx, cy, half size), median-filtered (13)."""
    b = np.asarray(boxes, dtype=np.float64)
    raw = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                    np.maximum(b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]) / 2], axis=1)
    with warnings.catch_warnings():  # medfilt warns on clips shorter than 13; it zero-pads the ends either way
        warnings.simplefilter("ignore", UserWarning)
        return np.stack([medfilt(raw[:, k], kernel_size=BOX_FILTER) for k in range(3)], axis=1)


def crop_face(frame: np.ndarray, cx: float, cy: float, half: float, size: int = FACE_SIZE) -> np.ndarray:
    """The SyncNet crop of one frame ``[H, W, 3]`` uint8 around a smoothed box -> ``[size, size, 3]``."""
    import cv2

    pad = int(half * (1 + 2 * CROP_SCALE))
    padded = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), mode="constant", constant_values=CROP_PAD_VALUE)
    my, mx = cy + pad, cx + pad
    face = padded[int(my - half):int(my + half * (1 + 2 * CROP_SCALE)),
                  int(mx - half * (1 + CROP_SCALE)):int(mx + half * (1 + CROP_SCALE))]
    return cv2.resize(face, (size, size))


def face_crops(frames: np.ndarray, detector, size: int = FACE_SIZE) -> np.ndarray | None:
    """SyncNet face crops ``[T, size, size, 3]`` of every frame ``[T, H, W, 3]`` (None if a frame has no face).

    Args:
        frames: uint8 video frames (any channel order; the crop does not mix channels), at least 7 of them.
        detector: anything with ``detect(frame).box`` = (left, top, right, bottom), e.g. ``DlibLandmarks``.

    Raises:
        InputError: fewer than 7 frames (the zero-padded 13-frame median filter would shrink the boxes to 0).
    """
    if len(frames) <= BOX_FILTER // 2:
        raise InputError(f"SyncNet face crops need at least {BOX_FILTER // 2 + 1} frames, got {len(frames)}")
    try:
        boxes = np.stack([detector.detect(frame).box for frame in frames])
    except NoFaceError:
        return None
    return np.stack([crop_face(f, *box, size=size) for f, box in zip(frames, smooth_boxes(boxes))])
