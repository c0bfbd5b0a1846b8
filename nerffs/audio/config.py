"""Configuration and error type of the audio stack (spec-pipeline.md sections 1.1-1.3, 2.4).

The mel fields hold the Wav2Lip hyper-parameters that SadTalker vendors (spec 1.2). The released Audio2Exp
weights were trained on exactly these values, so they are fields only to keep every number in one
documented place; changing them makes the features differ from what the checkpoint expects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from nerffs.errors import AudioError

BlinkMode = Literal["none", "random"]


@dataclass(frozen=True)
class AudioConfig:
    """Everything the audio front end and Audio2Exp driver need (spec 1 and 2.4)."""

    # --- loading (spec 1.1) ---
    sample_rate: int = 16000
    """Rate every input is resampled to (Hz). Audio2Exp was trained at 16 kHz."""
    fps: float = 25.0
    """Video frame rate; one expression vector is produced per video frame."""
    max_seconds: float = 600.0
    """Longest accepted input (seconds). Longer files are refused before they are fully decoded."""
    ffmpeg: str | None = None
    """ffmpeg executable used for decoding; None uses imageio-ffmpeg's binary, then ``ffmpeg`` on PATH."""
    resample_type: str = "soxr_hq"
    """librosa ``res_type`` of the resampler (``soxr_hq`` is what librosa >= 0.10 uses in ``load``)."""

    # --- mel spectrogram (spec 1.2, Wav2Lip hparams) ---
    preemphasis: float = 0.97
    """Pre-emphasis coefficient k of y[n] = x[n] - k x[n-1] (zero initial state)."""
    n_fft: int = 800
    """FFT size (50 ms at 16 kHz)."""
    hop_length: int = 200
    """STFT hop in samples (12.5 ms, i.e. 80 mel frames per second)."""
    win_length: int = 800
    """Periodic Hann window length in samples."""
    stft_pad_mode: str = "constant"
    """Padding of the centred STFT (n_fft // 2 samples each side): ``'constant'`` (zeros) as librosa >= 0.9,
    which NFS and SadTalker pin; ``'reflect'`` reproduces librosa <= 0.8 (Wav2Lip). Only ~2 edge frames differ."""
    n_mels: int = 80
    """Number of Slaney-scale, Slaney-normalised mel bands."""
    fmin: float = 55.0
    """Lowest mel band edge (Hz)."""
    fmax: float = 7600.0
    """Highest mel band edge (Hz)."""
    ref_level_db: float = 20.0
    """Reference level subtracted after 20 log10 (dB)."""
    min_level_db: float = -100.0
    """Floor of the dB scale; the amplitude floor is 10^(min_level_db / 20)."""
    max_abs_value: float = 4.0
    """Normalised mels are mapped to [-max_abs_value, max_abs_value] and clipped there."""

    # --- per-video-frame windows (spec 1.3) ---
    mel_window: int = 16
    """Mel frames per video-frame window (SyncNet step, 200 ms)."""

    # --- expression driving (spec 2.4) ---
    ref_momentum: float = 0.5
    """a_m: reference update ref_{i+1} = (1 - a_m) e0 + a_m pred_i; 0 keeps the reference fixed at e0."""
    exp_scale: float = 1.5
    """l_exp: the predicted absolute expression coefficients are multiplied by this factor."""
    blink: BlinkMode = "none"
    """Eye-blink input of Audio2Exp: ``'none'`` (zeros, as NFS) or ``'random'`` (SadTalker-style bumps)."""
    blink_profile: tuple[float, ...] = (0.5, 0.9, 1.0, 0.9, 0.5)
    """Values of one blink, one per frame."""
    blink_min_gap: int = 10
    """Smallest number of frames from the end of one blink (or the start) to the next blink."""
    blink_max_gap: int = 70
    """Gaps are drawn uniformly from [blink_min_gap, min(blink_max_gap, T // 2)) frames."""
    blink_min_frames: int = 21
    blink_strength: float = 1.0
    """Multiplies every blink (1 = full closure at the blink's peak, 0 = no visible blink)."""
    """Sequences shorter than this get no blink at all."""
    encoder_batch: int = 64
    """Video frames per batch of the convolutional audio encoder (bounds memory for long audio)."""

    def __post_init__(self) -> None:
        positive = {"sample_rate": self.sample_rate, "fps": self.fps, "max_seconds": self.max_seconds,
                    "n_fft": self.n_fft, "hop_length": self.hop_length, "win_length": self.win_length,
                    "n_mels": self.n_mels, "mel_window": self.mel_window, "encoder_batch": self.encoder_batch}
        for name, value in positive.items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise AudioError(f"AudioConfig.{name} must be a positive number, got {value!r}")
        if self.win_length > self.n_fft:
            raise AudioError(f"AudioConfig.win_length ({self.win_length}) must not exceed n_fft ({self.n_fft})")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise AudioError(f"AudioConfig needs 0 <= fmin < fmax <= sample_rate / 2, got fmin={self.fmin}, "
                             f"fmax={self.fmax}, sample_rate={self.sample_rate}")
        if not 0.0 <= self.ref_momentum <= 1.0:
            raise AudioError(f"AudioConfig.ref_momentum must be in [0, 1], got {self.ref_momentum}")
        if not (math.isfinite(self.blink_strength) and 0.0 <= self.blink_strength <= 2.0):
            raise AudioError(f"blink strength must be between 0 and 2, got {self.blink_strength}")
        if self.blink not in ("none", "random"):
            raise AudioError(f"AudioConfig.blink must be 'none' or 'random', got {self.blink!r}")
        if not 1 <= self.blink_min_gap <= self.blink_max_gap:
            raise AudioError(f"AudioConfig needs 1 <= blink_min_gap <= blink_max_gap, got "
                             f"{self.blink_min_gap} and {self.blink_max_gap}")
        if self.stft_pad_mode not in ("constant", "reflect"):
            raise AudioError(f"AudioConfig.stft_pad_mode must be 'constant' or 'reflect', got {self.stft_pad_mode!r}")

    @property
    def mel_fps(self) -> float:
        """Mel frames per second (sample_rate / hop_length; 80 with the defaults)."""
        return self.sample_rate / self.hop_length

    @property
    def samples_per_frame(self) -> float:
        """Audio samples per video frame (640 with the defaults)."""
        return self.sample_rate / self.fps

    @property
    def fps_fraction(self) -> Fraction:
        """``fps`` as an exact fraction (29.97 -> 2997/100), so frame arithmetic has no rounding surprises."""
        return Fraction(self.fps).limit_denominator(1_000_000)

    def num_video_frames(self, num_samples: int) -> int:
        """Video frames covered by ``num_samples`` audio samples: floor(L * fps / sample_rate) (spec 1.1)."""
        return math.floor(Fraction(int(num_samples)) * self.fps_fraction / self.sample_rate)

    def frames_to_samples(self, num_frames: int) -> int:
        """Audio samples spanned by ``num_frames`` video frames: floor(T * sample_rate / fps) (T * 640 at 25 fps)."""
        return math.floor(Fraction(int(num_frames)) * self.sample_rate / self.fps_fraction)
