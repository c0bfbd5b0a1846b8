"""Any audio file in, 16 kHz mono float32 out (spec-pipeline.md section 1.1).

NFS reads audio with ``librosa.load(path, sr=16000)``: channels are averaged and the signal is resampled with
soxr ('soxr_hq'), with no amplitude rescaling. We keep that signal path but decode with ffmpeg, which reads
every container and codec the pipeline accepts (wav, mp3, m4a/aac, flac, ogg, and the sound track of a
video) at its native rate and channel count:

1. ffmpeg decodes the first audio stream to 32-bit float WAV on a pipe (``-xerror``: a decoding error makes
   the file count as corrupt instead of being silently skipped);
2. the channels are averaged (``librosa.to_mono``);
3. the signal is resampled to ``AudioConfig.sample_rate`` with librosa's soxr resampler.

Without any ffmpeg executable, formats that libsndfile reads (wav, flac, ogg, mp3) still load through
soundfile; the others fail with a message saying how to install ffmpeg.
"""
from __future__ import annotations

import io
import logging
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from nerffs.audio.config import AudioConfig
from nerffs.errors import AudioError

log = logging.getLogger(__name__)

FORMATS_HINT = "wav, mp3, m4a/aac, flac or ogg"


def find_ffmpeg(explicit: str | None = None) -> str | None:
    """Locate an ffmpeg executable.

    Args:
        explicit: a path or command name to use; it must exist.

    Returns:
        The executable, or None when neither imageio-ffmpeg nor a system ffmpeg is available.
    """
    if explicit is not None:
        found = shutil.which(explicit)
        if found is None:
            raise AudioError(f"ffmpeg executable {explicit!r} (AudioConfig.ffmpeg) was not found; "
                             "fix the path or set it to None")
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):  # package missing, or it found no binary either
        return shutil.which("ffmpeg")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"audio file not found: {path}; check the path")
    if not path.is_file():
        raise AudioError(f"audio path {path} is not a file; pass a {FORMATS_HINT} file")
    if path.stat().st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes); pass a non-empty {FORMATS_HINT} file")


def _ffmpeg_error(path: Path, stderr: bytes) -> AudioError:
    """Turn ffmpeg's stderr into one actionable line."""
    lines = [re.sub(r"^(\[[^\]]*\]\s*)+", "", ln.strip()) for ln in stderr.decode("utf-8", "replace").splitlines()]
    lines = [ln for ln in lines if ln]
    text = " ".join(lines)
    first = lines[0][:160] if lines else "no message"
    if "matches no streams" in text:
        return AudioError(f"{path} has no audio stream; pass a {FORMATS_HINT} file or a video with sound")
    opened = "Error opening input" not in text and not (
        "Invalid data found when processing input" in text and len(lines) <= 2)  # ffmpeg 5 says only this
    if not opened:
        return AudioError(f"{path} is not a recognised audio file or is corrupt (ffmpeg: {first}); "
                          f"pass a {FORMATS_HINT} file")
    return AudioError(f"audio file {path} is corrupt or truncated (ffmpeg: {first}); "
                      f"re-export it or convert it to wav")


def _decode_ffmpeg(path: Path, ffmpeg: str, max_seconds: float) -> tuple[np.ndarray, int]:
    """Decode the first audio stream at its native rate; at most ``max_seconds`` + 1 s is read."""
    import soundfile

    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-xerror", "-i", str(path),
           "-map", "0:a:0", "-vn", "-t", f"{max_seconds + 1.0:.3f}", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise _ffmpeg_error(path, proc.stderr)
    try:
        data, rate = soundfile.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except Exception as exc:  # ffmpeg succeeded but produced no readable WAV: treat as corrupt input
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise AudioError(f"audio file {path} could not be decoded ({reason}); re-export it or convert it to wav") from exc
    return data, int(rate)


def _decode_soundfile(path: Path, max_seconds: float) -> tuple[np.ndarray, int]:
    """Fallback decoder (libsndfile) for machines without any ffmpeg."""
    import soundfile

    try:
        info = soundfile.info(str(path))
        frames = min(info.frames, int(math.ceil((max_seconds + 1.0) * info.samplerate)))
        data, rate = soundfile.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path} could not be decoded without ffmpeg ({str(exc).splitlines()[0][:160]}); "
                         "install ffmpeg (pip install imageio-ffmpeg, or apt-get install ffmpeg)") from exc
    return data, int(rate)


def decode_audio(path: str | os.PathLike, cfg: AudioConfig | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file without resampling or mixing.

    Args:
        path: audio file, or a video file with a sound track.
        cfg: options (``ffmpeg``, ``max_seconds``); defaults to ``AudioConfig()``.

    Returns:
        ``(samples [N, C] float32, native sample rate)``. At most ``max_seconds + 1`` s are decoded.

    Raises:
        AudioError: missing, empty, non-audio or corrupt file.
    """
    cfg = cfg or AudioConfig()
    p = Path(path)
    _check_file(p)
    ffmpeg = find_ffmpeg(cfg.ffmpeg)
    if ffmpeg is None:
        log.warning("no ffmpeg found; decoding %s with soundfile (wav/flac/ogg/mp3 only)", p)
        return _decode_soundfile(p, cfg.max_seconds)
    return _decode_ffmpeg(p, ffmpeg, cfg.max_seconds)


def to_mono_16k(data: np.ndarray, rate: int, cfg: AudioConfig | None = None) -> np.ndarray:
    """Average the channels and resample like ``librosa.load(..., sr=cfg.sample_rate)``.

    Args:
        data: samples [N, C] (or [N]) at ``rate`` Hz.
        rate: native sample rate.
        cfg: options (``sample_rate``, ``resample_type``).

    Returns:
        [L] float32 signal at ``cfg.sample_rate``.
    """
    import librosa

    cfg = cfg or AudioConfig()
    mono = np.asarray(data, dtype=np.float32)
    if mono.ndim == 2:
        mono = librosa.to_mono(np.ascontiguousarray(mono.T))
    if rate != cfg.sample_rate and mono.size > 0:
        mono = librosa.resample(mono, orig_sr=rate, target_sr=cfg.sample_rate, res_type=cfg.resample_type)
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_duration(num_samples: int, cfg: AudioConfig, source: str = "audio") -> None:
    """Refuse audio shorter than one video frame or longer than ``cfg.max_seconds``.

    Raises:
        AudioError: with the measured duration and the fix.
    """
    seconds = num_samples / cfg.sample_rate
    if num_samples == 0:
        raise AudioError(f"{source} contains no audio samples; pass a file with sound in it")
    if cfg.num_video_frames(num_samples) < 1:
        raise AudioError(f"{source} is {seconds:.3f} s long, shorter than one video frame "
                         f"({1.0 / cfg.fps:.3f} s at {cfg.fps:g} fps); pass a longer recording")
    if seconds > cfg.max_seconds:
        raise AudioError(f"{source} is longer than the limit of {cfg.max_seconds:g} s; trim it "
                         f"(e.g. ffmpeg -i IN -t {cfg.max_seconds:g} OUT.wav) or raise AudioConfig.max_seconds")


SHORT_SPEECH_S = 0.5
"""Recordings shorter than this are accepted with a warning (a handful of frames)."""
SILENT_DBFS = -50.0
"""Recordings whose peak stays below this level (dB full scale) are accepted with a warning (silence)."""


def speech_warnings(wave: np.ndarray, cfg: AudioConfig | None = None) -> list[str]:
    """Problems of a loaded recording that still give a video but probably not the one wanted: very short,
    or silent. ``wave`` [L] at ``cfg.sample_rate``; returns one sentence per problem (empty when fine)."""
    cfg = cfg or AudioConfig()
    seconds = wave.shape[0] / cfg.sample_rate
    out = []
    if seconds < SHORT_SPEECH_S:
        out.append(f"the recording is only {seconds:.2f} s long ({cfg.num_video_frames(wave.shape[0])} video "
                   "frames); is it the right file?")
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    level = 20.0 * np.log10(peak) if peak > 0 else -np.inf
    if level < SILENT_DBFS:
        shown = "digital silence" if peak == 0 else f"peak level {level:.0f} dBFS"
        out.append(f"the recording is silent ({shown}), so the mouth will not move; check the file or the "
                   "microphone")
    return out


def load_audio(path: str | os.PathLike, cfg: AudioConfig | None = None) -> np.ndarray:
    """Load any supported audio file as a mono signal at ``cfg.sample_rate`` (spec 1.1).

    Silence is valid input. Files longer than ``cfg.max_seconds`` are refused after decoding at most
    ``max_seconds + 1`` s of them, so memory stays bounded.

    Args:
        path: wav, mp3, m4a/aac, flac or ogg file (any rate, any channel count), or a video with sound.
        cfg: options; defaults to ``AudioConfig()`` (16 kHz, 25 fps, 600 s limit).

    Returns:
        wav: [L] float32, 16 kHz mono, amplitude as decoded (no normalisation).

    Raises:
        AudioError: missing, empty, non-audio or corrupt file, non-finite samples, audio shorter than one
            video frame or longer than ``cfg.max_seconds``.
    """
    cfg = cfg or AudioConfig()
    data, rate = decode_audio(path, cfg)
    if data.size and not np.isfinite(data).all():
        raise AudioError(f"audio file {path} contains NaN or infinite samples; re-export it")
    wav = to_mono_16k(data, rate, cfg)
    check_duration(wav.shape[0], cfg, source=f"audio file {path}")
    log.debug("loaded %s: %d Hz x %d ch -> %d samples at %d Hz", path, rate, data.shape[1], wav.shape[0],
                 cfg.sample_rate)
    return wav
