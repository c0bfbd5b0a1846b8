"""Mel spectrogram against an independent numpy reference, and the per-video-frame window table (spec 1.2-1.3)."""
from __future__ import annotations

import numpy as np
import pytest

from nerffs.audio import (AudioConfig, AudioError, frame_window_indices, frame_window_starts, frame_windows,
                          mel_windows, melspectrogram)

SR, N_FFT, HOP, N_MELS, FMIN, FMAX = 16000, 800, 200, 80, 55.0, 7600.0


# ------------------------------------------------------------------ independent reference (written out)
def hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's Auditory Toolbox scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz / (200.0 / 3.0), 15.0 + np.log(np.maximum(hz, 1e-12) / 1000.0) / log_step)


def mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, mel * (200.0 / 3.0), 1000.0 * np.exp(log_step * (mel - 15.0)))


def band_edges_hz() -> np.ndarray:
    """n_mels + 2 frequencies equally spaced on the Slaney mel scale between fmin and fmax."""
    return mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(FMIN), hz_to_mel_slaney(FMAX), N_MELS + 2))


def slaney_filterbank() -> np.ndarray:
    """[80, 401] triangles on the FFT bin frequencies, each scaled to unit area (2 / bandwidth)."""
    freqs = np.arange(N_FFT // 2 + 1) * SR / N_FFT
    edges = band_edges_hz()
    bank = np.zeros((N_MELS, len(freqs)))
    for m in range(N_MELS):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[m] = np.maximum(0.0, np.minimum(rising, falling)) * 2.0 / (hi - lo)
    return bank


def reference_mel(wav: np.ndarray, pad_mode: str = "constant") -> np.ndarray:
    x = np.asarray(wav, dtype=np.float64)
    y = x.copy()
    y[1:] -= 0.97 * x[:-1]                                               # pre-emphasis, zero initial state
    padded = np.pad(y, N_FFT // 2, mode=pad_mode)                         # centred frames
    num = 1 + len(y) // HOP
    frames = np.stack([padded[t * HOP:t * HOP + N_FFT] for t in range(num)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)   # periodic Hann
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1)).T            # [401, T]
    mel = slaney_filterbank() @ magnitude
    db = 20 * np.log10(np.maximum(1e-5, mel)) - 20
    return np.clip(8 * (db + 100) / 100 - 4, -4, 4)


def test_reference_window_is_scipy_periodic_hann() -> None:
    from scipy.signal import get_window

    np.testing.assert_allclose(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT),
                               get_window("hann", N_FFT, fftbins=True), atol=1e-12)


def test_filterbank_matches_written_out_slaney() -> None:
    from nerffs.audio import mel_filterbank

    bank = mel_filterbank()
    assert bank.shape == (80, 401)
    np.testing.assert_allclose(bank, slaney_filterbank(), rtol=1e-5, atol=1e-9)


def synthetic_signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(1.3 * SR) + 37) / SR
    chirp = 0.3 * np.sin(2 * np.pi * (100 * t + 1500 * t ** 2))
    return {
        "chirp": chirp,
        "noise": rng.normal(0, 0.1, 9999),
        "chirp_plus_noise": chirp + rng.normal(0, 0.02, t.shape),
        "bursts": np.repeat(rng.uniform(-0.5, 0.5, 40), 200) * rng.normal(0, 1, 8000),
    }


@pytest.mark.parametrize("name", list(synthetic_signals()))
@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_matches_independent_reference(name: str, pad_mode: str) -> None:
    wav = synthetic_signals()[name].astype(np.float32)
    ours = melspectrogram(wav, AudioConfig(stft_pad_mode=pad_mode))
    expected = reference_mel(wav, pad_mode)
    assert ours.shape == expected.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=2e-4)


@pytest.mark.parametrize("freq", [440.0, 1000.0, 3000.0, 6000.0])
def test_pure_tone_lands_in_its_mel_band(freq: float) -> None:
    t = np.arange(SR) / SR
    mel = melspectrogram(0.5 * np.sin(2 * np.pi * freq * t))
    centres = band_edges_hz()[1:-1]
    expected_band = int(np.argmin(np.abs(centres - freq)))
    assert int(np.argmax(mel[:, 5:-5].mean(axis=1))) == expected_band


@pytest.mark.parametrize("length", [1, 199, 200, 201, 12345, 16000, 128000])
def test_frame_count(length: int) -> None:
    wav = np.random.default_rng(length).normal(0, 0.1, length)
    assert melspectrogram(wav).shape == (80, 1 + length // 200)


def test_value_range_silence_and_clipping() -> None:
    assert np.all(melspectrogram(np.zeros(4000)) == -4.0)
    loud = melspectrogram(100.0 * np.sign(np.sin(2 * np.pi * 300 * np.arange(8000) / SR)))
    assert loud.max() == 4.0 and loud.min() >= -4.0
    speechlike = melspectrogram(np.random.default_rng(1).normal(0, 0.05, 8000))
    assert -4.0 < speechlike.mean() < 4.0


def test_pad_mode_only_changes_the_edges() -> None:
    wav = synthetic_signals()["chirp_plus_noise"]
    zeros, reflect = melspectrogram(wav), melspectrogram(wav, AudioConfig(stft_pad_mode="reflect"))
    np.testing.assert_array_equal(zeros[:, 3:-3], reflect[:, 3:-3])
    assert not np.array_equal(zeros[:, :2], reflect[:, :2])


@pytest.mark.parametrize("bad", [np.zeros((2, 100)), np.zeros(0), np.array([0.0, np.nan, 0.0]),
                                 np.arange(100, dtype=np.int16)], ids=["2d", "empty", "nan", "int"])
def test_bad_signal_raises(bad: np.ndarray) -> None:
    with pytest.raises(AudioError):
        melspectrogram(bad)


# ------------------------------------------------------------------------------------------ windows
def sadtalker_indices(num_frames: int, num_mel: int) -> np.ndarray:
    """Spec 1.3 written literally: start = int(80 (i - 2) / 25), 16 indices clamped to [0, T_mel - 1]."""
    rows = []
    for i in range(num_frames):
        start = int(80.0 * ((i - 2) / 25.0))
        rows.append([min(max(start + k, 0), num_mel - 1) for k in range(16)])
    return np.array(rows)


def test_first_frames_and_last_frame_of_the_table() -> None:
    idx = frame_window_indices(200, 641)
    assert idx.shape == (200, 16)
    assert idx[0].tolist() == [0] * 7 + list(range(1, 10))
    assert idx[1].tolist() == [0] * 4 + list(range(1, 13))
    assert idx[2].tolist() == list(range(16))
    assert idx[-1].tolist() == list(range(630, 641)) + [640] * 5
    assert frame_window_starts(3).tolist() == [-6, -3, 0]


@pytest.mark.parametrize("num_frames", [1, 2, 3, 7, 25, 199, 200, 1001])
def test_table_equals_sadtalker_formula(num_frames: int) -> None:
    num_mel = 1 + (num_frames * 640) // 200
    np.testing.assert_array_equal(frame_window_indices(num_frames, num_mel), sadtalker_indices(num_frames, num_mel))


@pytest.mark.parametrize("fps", [24.0, 30.0, 30000 / 1001, 50.0])
def test_other_fps_keeps_windows_centred_on_their_frame(fps: float) -> None:
    starts = frame_window_starts(500, fps)
    centre_mel = 80.0 * (np.arange(500) + 0.5) / fps  # centre of video frame i, in mel frames
    offset = starts + 8 - centre_mel
    assert np.all(np.abs(offset) < 1.0)  # int() truncation moves the start by less than one mel frame
    assert np.all(offset[centre_mel >= 8.0] <= 1e-9)  # toward zero = down for non-negative starts
    assert np.all(np.diff(starts) >= 0)


def test_frame_windows_gathers_the_indexed_columns() -> None:
    mel = np.random.default_rng(0).uniform(-4, 4, (80, 33)).astype(np.float32)
    out = frame_windows(mel, 10)
    idx = frame_window_indices(10, 33)
    assert out.shape == (10, 80, 16) and out.dtype == np.float32
    for i in range(10):
        np.testing.assert_array_equal(out[i], mel[:, idx[i]])


def test_mel_windows_crops_to_whole_frames() -> None:
    wav = np.random.default_rng(0).normal(0, 0.1, 128174).astype(np.float32)  # spec 1.1 example: 200 frames
    out = mel_windows(wav)
    mel = melspectrogram(wav[:128000])
    assert mel.shape == (80, 641) and out.shape == (200, 80, 16)
    np.testing.assert_array_equal(out, frame_windows(mel, 200))
    np.testing.assert_array_equal(out[-1][:, -1], mel[:, 640])


def test_mel_windows_at_30_fps() -> None:
    wav = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    out = mel_windows(wav, AudioConfig(fps=30.0))
    assert out.shape == (30, 80, 16)


def test_mel_windows_refuses_less_than_one_frame() -> None:
    with pytest.raises(AudioError, match="shorter than one video frame"):
        mel_windows(np.zeros(639, np.float32))
    with pytest.raises(AudioError, match=r"\[n_mels, T_mel\]"):
        frame_windows(np.zeros((2, 80, 16)), 1)
