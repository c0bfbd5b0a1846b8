"""Offline lip-sync **proxy** (not LSE-D/LSE-C): correlation of landmark mouth opening with audio energy.

Mouth opening per frame = mean gap of the three inner-lip point pairs (61-67, 62-66, 63-65, iBUG 68 layout)
divided by the inter-ocular distance; audio energy = RMS of the waveform over each video frame. The score is
the Pearson correlation at every lag in ``[-max_lag, max_lag]`` frames; a well-synchronised video peaks near
lag 0. A positive lag means the mouth follows the audio by that many frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerffs.errors import InputError, NoFaceError

INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))


@dataclass(frozen=True)
class LipSyncProxy:
    """Correlations ``r[lag]`` for lags ``-max_lag..max_lag``, the best lag and its r, and r at lag 0."""

    lags: np.ndarray
    r: np.ndarray
    best_lag: int
    best_r: float
    r_at_0: float
    label: str = "lip-sync proxy (mouth opening vs audio energy; not LSE)"


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Landmarks [T, 68, 2] -> normalised mouth opening [T] (NaN where a frame has NaN points)."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise InputError(f"expected landmarks [T, 68, 2], got {pts.shape}")
    gap = np.mean([np.linalg.norm(pts[:, a] - pts[:, b], axis=-1) for a, b in INNER_LIP_PAIRS], axis=0)
    eyes = np.linalg.norm(pts[:, 36:42].mean(1) - pts[:, 42:48].mean(1), axis=-1)
    return gap / np.maximum(eyes, 1e-6)


def frame_energy(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int | None = None) -> np.ndarray:
    """RMS of ``wave`` [S] over each video frame -> [T] (T = ``num_frames`` or the audio's frame count)."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    hop = sample_rate / fps
    count = int(len(wave) // hop) if num_frames is None else num_frames
    out = np.zeros(count)
    for t in range(count):
        seg = wave[int(round(t * hop)):int(round((t + 1) * hop))]
        out[t] = np.sqrt(np.mean(seg ** 2)) if len(seg) else 0.0
    return out


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-12 or b[ok].std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def lag_correlation(opening: np.ndarray, energy: np.ndarray, max_lag: int = 10) -> LipSyncProxy:
    """Pearson r between ``opening[t]`` and ``energy[t - lag]`` for each lag; picks the lag with the largest r."""
    n = min(len(opening), len(energy))
    if n < 4:
        raise InputError(f"lip-sync proxy needs at least 4 frames, got {n}")
    o, e = np.asarray(opening[:n], float), np.asarray(energy[:n], float)
    lags = np.arange(-max_lag, max_lag + 1)
    r = np.array([_corr(o[lag:], e[:n - lag]) if lag >= 0 else _corr(o[:n + lag], e[-lag:]) for lag in lags])
    if np.all(np.isnan(r)):
        return LipSyncProxy(lags, r, 0, float("nan"), float("nan"))
    best = int(np.nanargmax(r))
    return LipSyncProxy(lags, r, int(lags[best]), float(r[best]), float(r[max_lag]))


def video_landmarks(frames: np.ndarray, detector) -> np.ndarray:
    """68 landmarks of the largest face in each frame -> [T, 68, 2] (NaN where no face is found)."""
    out = np.full((len(frames), 68, 2), np.nan)
    for t, frame in enumerate(frames):
        try:
            out[t] = detector.detect(frame).points
        except NoFaceError:
            pass
    return out


def lipsync_proxy(frames: np.ndarray, wave: np.ndarray, sample_rate: int, fps: float, detector,
                  max_lag: int = 10) -> LipSyncProxy:
    """The proxy for a video: frames [T, H, W, 3] uint8, mono audio ``wave`` [S] at ``sample_rate``."""
    opening = mouth_opening(video_landmarks(frames, detector))
    return lag_correlation(opening, frame_energy(wave, sample_rate, fps, len(frames)), max_lag)
