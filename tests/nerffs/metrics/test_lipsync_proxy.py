"""The lip-sync proxy finds lag 0 on a synthetic talking sequence, the imposed lag when shifted, and no
correlation with shuffled audio."""
import numpy as np
from scipy.ndimage import gaussian_filter1d

from nerffs.metrics.lipsync_proxy import frame_energy, lag_correlation, mouth_opening

FPS, SR, T = 25, 16000, 100


def _envelope(rng) -> np.ndarray:
    return np.abs(gaussian_filter1d(rng.normal(size=T), 1.5)) + 0.05  # syllable-like, [T]


def _landmarks(opening: np.ndarray) -> np.ndarray:
    pts = np.zeros((len(opening), 68, 2))
    pts[:, 36:42] = (30.0, 40.0)
    pts[:, 42:48] = (70.0, 40.0)                  # inter-ocular distance 40
    for k, (top, bottom) in enumerate(((61, 67), (62, 66), (63, 65))):
        pts[:, top] = (45.0 + 5 * k, 0.0)
        pts[:, bottom] = (45.0 + 5 * k, 0.0)
        pts[:, top, 1] = 80.0 - 10.0 * opening
        pts[:, bottom, 1] = 80.0 + 10.0 * opening
    return pts


def _audio(env: np.ndarray, rng) -> np.ndarray:
    per_frame = np.repeat(env, SR // FPS)
    return rng.normal(size=per_frame.shape) * per_frame


def test_lag_zero_on_synthetic_sequence():
    rng = np.random.default_rng(0)
    env = _envelope(rng)
    wave = _audio(env, rng)
    opening = mouth_opening(_landmarks(env))
    np.testing.assert_allclose(opening, 0.5 * env, rtol=1e-9)
    res = lag_correlation(opening, frame_energy(wave, SR, FPS, T), max_lag=8)
    assert res.best_lag == 0 and res.r_at_0 > 0.9 and "proxy" in res.label


def test_shifted_and_shuffled_audio():
    rng = np.random.default_rng(1)
    env = _envelope(rng)
    energy = frame_energy(_audio(env, rng), SR, FPS, T)
    late = mouth_opening(_landmarks(np.roll(env, 3)))  # the mouth follows the audio by 3 frames
    assert lag_correlation(late, energy, 8).best_lag == 3
    shuffled = energy[rng.permutation(T)]
    res = lag_correlation(mouth_opening(_landmarks(env)), shuffled, 8)
    assert res.best_lag != 0 and abs(res.r_at_0) < 0.3
