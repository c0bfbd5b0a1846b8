"""Wav2Lip/SadTalker mel spectrogram and per-video-frame mel windows (spec-pipeline.md sections 1.2-1.3).

Mel spectrogram (spec 1.2), for a 16 kHz signal x:

1. pre-emphasis y[n] = x[n] - 0.97 x[n-1];
2. centred STFT, n_fft = win = 800 (periodic Hann), hop 200. The signal is padded by n_fft // 2 = 400
   samples on each side with zeros (``AudioConfig.stft_pad_mode = 'constant'``, librosa >= 0.9 as pinned by
   NFS and SadTalker); ``'reflect'`` reproduces librosa <= 0.8. T_mel = 1 + floor(L / 200);
3. S = M |D| with M the 80-band Slaney mel filterbank (55-7600 Hz, Slaney area normalisation);
4. S_db = 20 log10(max(1e-5, S)) - 20;  5. M = clip(8 (S_db + 100) / 100 - 4, -4, 4).

Windows (spec 1.3): video frame i gets 16 consecutive mel frames starting at int(80 (i - 2) / 25), each index
clamped to [0, T_mel - 1]. ``int`` truncates toward zero, so frame 0 starts at -6 and frame 1 at -3. The -2
offset centres the 200 ms window on the 40 ms video frame (centre of frame i: 40 i + 20 ms; window start
80 (i - 2) / 25 mel frames = 40 i - 80 ms). We generalise to any fps by keeping that centring:

    start_i = trunc(mel_fps (i + 1/2) / fps - window / 2),

which equals int(80 (i - 2) / 25) exactly at 25 fps (integer arithmetic on exact fractions, no float rounding).
"""
from __future__ import annotations

import warnings
from fractions import Fraction

import numpy as np

from nerffs.audio.config import AudioConfig
from nerffs.audio.load import check_duration
from nerffs.errors import AudioError


def _as_signal(wav: np.ndarray) -> np.ndarray:
    """Validate a mono signal and return it as float64 [L]."""
    x = np.asarray(wav)
    if x.ndim != 1:
        raise AudioError(f"expected a mono signal of shape [L], got shape {x.shape}; average the channels first "
                         "(load_audio does this)")
    if x.size == 0:
        raise AudioError("the audio signal is empty; pass at least one video frame of audio")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        raise AudioError(f"the audio signal must be finite floating-point samples (got dtype {x.dtype} or NaN/inf); "
                         "convert it with load_audio")
    return x.astype(np.float64)


def mel_filterbank(cfg: AudioConfig | None = None) -> np.ndarray:
    """Slaney-scale, Slaney-normalised mel filterbank (librosa defaults htk=False, norm='slaney').

    Returns:
        [n_mels, n_fft // 2 + 1] float32 ([80, 401] with the defaults).
    """
    import librosa

    cfg = cfg or AudioConfig()
    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)


def melspectrogram(wav: np.ndarray, cfg: AudioConfig | None = None) -> np.ndarray:
    """Normalised log-mel spectrogram with the Wav2Lip hyper-parameters (spec 1.2).

    Args:
        wav: [L] mono signal at ``cfg.sample_rate`` (float, any amplitude; silence is fine).
        cfg: hyper-parameters; defaults to ``AudioConfig()``.

    Returns:
        mel: [n_mels, T_mel] float32 in [-max_abs_value, max_abs_value] ([80, 1 + L // 200], range [-4, 4]).
    """
    import librosa
    from scipy.signal import lfilter

    cfg = cfg or AudioConfig()
    x = lfilter([1.0, -cfg.preemphasis], [1.0], _as_signal(wav))
    with warnings.catch_warnings():  # signals shorter than n_fft are valid here: the centred padding covers them
        warnings.filterwarnings("ignore", message="n_fft=.* is too large", category=UserWarning)
        spec = np.abs(librosa.stft(x, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
                                   window="hann", center=True, pad_mode=cfg.stft_pad_mode))
    mel = mel_filterbank(cfg) @ spec
    floor = 10.0 ** (cfg.min_level_db / 20.0)
    mel_db = 20.0 * np.log10(np.maximum(floor, mel)) - cfg.ref_level_db
    scaled = 2.0 * cfg.max_abs_value * (mel_db - cfg.min_level_db) / -cfg.min_level_db - cfg.max_abs_value
    return np.clip(scaled, -cfg.max_abs_value, cfg.max_abs_value).astype(np.float32)


def frame_window_starts(num_frames: int, fps: float = 25.0, *, mel_fps: float = 80.0, window: int = 16) -> np.ndarray:
    """First mel index of each video frame's window, before clamping.

    Args:
        num_frames: T, number of video frames.
        fps: video frame rate.
        mel_fps: mel frames per second (sample_rate / hop = 80).
        window: mel frames per window (16).

    Returns:
        [T] int64; ``int(80 * (i - 2) / 25)`` at the defaults (i = 0 -> -6, i = 1 -> -3, i = 2 -> 0).
    """
    f = Fraction(fps).limit_denominator(1_000_000)
    m = Fraction(mel_fps).limit_denominator(1_000_000)
    # start_i = (m (2i + 1) / (2 f)) - window / 2 = num_i / den with integers num_i, den > 0.
    den = 2 * m.denominator * f.numerator
    i = np.arange(num_frames, dtype=np.int64)
    num = m.numerator * f.denominator * (2 * i + 1) - window * m.denominator * f.numerator
    return np.where(num >= 0, num // den, -((-num) // den))  # truncation toward zero, like int()


def frame_window_indices(num_frames: int, num_mel_frames: int, fps: float = 25.0, *, mel_fps: float = 80.0,
                         window: int = 16) -> np.ndarray:
    """Mel frame indices of every video frame's window, clamped at both ends (edge replication, spec 1.3).

    Args:
        num_frames: T, number of video frames (>= 1).
        num_mel_frames: T_mel, columns of the mel spectrogram (>= 1).
        fps, mel_fps, window: as in :func:`frame_window_starts`.

    Returns:
        [T, window] int64 in [0, T_mel - 1]; row 0 is [0, 0, 0, 0, 0, 0, 0, 1, ..., 9] at the defaults.
    """
    if num_frames < 1 or num_mel_frames < 1:
        raise AudioError(f"need at least one video frame and one mel frame, got {num_frames} and {num_mel_frames}")
    starts = frame_window_starts(num_frames, fps, mel_fps=mel_fps, window=window)
    idx = starts[:, None] + np.arange(window, dtype=np.int64)[None, :]
    return np.clip(idx, 0, num_mel_frames - 1)


def frame_windows(mel: np.ndarray, num_frames: int, fps: float = 25.0, *, mel_fps: float = 80.0,
                  window: int = 16) -> np.ndarray:
    """Cut a mel spectrogram into one window per video frame (spec 1.3).

    Args:
        mel: [n_mels, T_mel] spectrogram from :func:`melspectrogram`.
        num_frames: T, number of video frames.
        fps, mel_fps, window: as in :func:`frame_window_starts`.

    Returns:
        [T, n_mels, window] (``[T, 80, 16]``), same dtype as ``mel``.
    """
    mel = np.asarray(mel)
    if mel.ndim != 2:
        raise AudioError(f"expected a mel spectrogram of shape [n_mels, T_mel], got shape {mel.shape}")
    idx = frame_window_indices(num_frames, mel.shape[1], fps, mel_fps=mel_fps, window=window)
    return np.ascontiguousarray(mel[:, idx].transpose(1, 0, 2))  # [n_mels, T, W] -> [T, n_mels, W]


def mel_windows(wav: np.ndarray, cfg: AudioConfig | None = None) -> np.ndarray:
    """Signal -> per-video-frame mel windows, as SadTalker's ``get_data_mel`` (spec 1.1-1.3).

    The signal is cropped to the T = floor(L * fps / sample_rate) whole video frames it covers (T * 640
    samples at the defaults) before the mel spectrogram is computed, so T_mel = 1 + floor(T * 640 / 200).

    Args:
        wav: [L] mono signal at ``cfg.sample_rate``.
        cfg: options; defaults to ``AudioConfig()``.

    Returns:
        [T, n_mels, mel_window] float32 (``[T, 80, 16]``).
    """
    cfg = cfg or AudioConfig()
    x = _as_signal(wav)
    check_duration(x.shape[0], cfg, source="the audio signal")
    num_frames = cfg.num_video_frames(x.shape[0])
    mel = melspectrogram(x[: cfg.frames_to_samples(num_frames)], cfg)
    return frame_windows(mel, num_frames, cfg.fps, mel_fps=cfg.mel_fps, window=cfg.mel_window)
