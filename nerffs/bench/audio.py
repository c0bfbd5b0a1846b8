"""Throughput of the audio stack: load + mel windows + Audio2Exp (spec-pipeline.md sections 1-2).

The figure of merit is audio seconds processed per wall-clock second. Audio2Exp has random weights (the cost
does not depend on their values). The input is espeak-ng speech looped to the requested length and stored as
a 22.05 kHz mono WAV, so the load step includes decoding and resampling to 16 kHz; without espeak-ng a
synthetic voiced signal is used and the result says so.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerffs.audio.audio2exp import EXP_DIM, Audio2Exp
from nerffs.audio.config import AudioConfig
from nerffs.audio.expression import audio_to_expression
from nerffs.audio.load import load_audio
from nerffs.audio.mel import mel_windows
from nerffs.audio.speech import find_espeak, synthesize_speech

log = logging.getLogger(__name__)

def _synthetic_voice(path: Path, seconds: float, rate: int = 22050) -> Path:
    """Fallback input: a 4 Hz amplitude-modulated harmonic tone (pitch 120-180 Hz) with a little noise."""
    import soundfile

    t = np.arange(int(round(seconds * rate))) / rate
    pitch = 150.0 + 30.0 * np.sin(2 * np.pi * 0.5 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t))
    noise = np.random.default_rng(0).normal(0.0, 0.01, t.shape)
    soundfile.write(str(path), (0.2 * voiced + noise).astype(np.float32), rate, subtype="PCM_16")
    return path


def random_audio2exp(seed: int = 0, device: torch.device | str = "cpu") -> Audio2Exp:
    """Audio2Exp with seeded random weights, in eval mode (the global RNG state is restored afterwards)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Audio2Exp()
    return model.eval().to(device)


def _time_one(path: Path, model: Audio2Exp, cfg: AudioConfig) -> dict[str, float]:
    """Time the three stages on one file; returns seconds per stage."""
    e0 = torch.zeros(EXP_DIM)
    t0 = time.perf_counter()
    wav = load_audio(path, cfg)
    t1 = time.perf_counter()
    windows = mel_windows(wav, cfg)
    t2 = time.perf_counter()
    exp = audio_to_expression(model, windows, e0, cfg)
    if exp.is_cuda:
        torch.cuda.synchronize(exp.device)
    t3 = time.perf_counter()
    return {"audio_seconds": wav.shape[0] / cfg.sample_rate, "frames": float(exp.shape[0]),
            "load_s": t1 - t0, "mel_s": t2 - t1, "audio2exp_s": t3 - t2, "total_s": t3 - t0}


def run(seconds_list: tuple[float, ...] = (8, 60), *, cfg: AudioConfig | None = None,
        device: torch.device | str = "cpu", seed: int = 0) -> dict[str, Any]:
    """Benchmark load + mel + Audio2Exp on speech of each requested length.

    Args:
        seconds_list: audio lengths to time (seconds).
        cfg: audio options; defaults to ``AudioConfig()``.
        device: where Audio2Exp runs.
        seed: seed of the random Audio2Exp weights.

    Returns:
        ``{"device", "torch_threads", "speech_source", "warmup_s", "runs": [{"seconds", "audio_seconds",
        "frames", "load_s", "mel_s", "audio2exp_s", "total_s", "audio_seconds_per_second"}, ...]}``, where
        ``warmup_s`` is the first call (1 s of audio: library imports, kernel set-up), kept out of the runs.
    """
    cfg = cfg or AudioConfig()
    model = random_audio2exp(seed, device)
    source = "espeak-ng" if find_espeak() is not None else "synthetic"
    if source == "synthetic":
        log.warning("espeak-ng not found; benchmarking on a synthetic voiced signal")
    runs = []
    with tempfile.TemporaryDirectory(prefix="nerffs_bench_audio_") as tmp:
        make = synthesize_speech if source == "espeak-ng" else _synthetic_voice
        warmup = _time_one(make(Path(tmp) / "warmup.wav", 1.0), model, cfg)  # imports, allocator, kernels
        for seconds in seconds_list:
            timing = _time_one(make(Path(tmp) / f"speech_{seconds:g}s.wav", float(seconds)), model, cfg)
            timing["audio_seconds_per_second"] = timing["audio_seconds"] / timing["total_s"]
            runs.append({"seconds": float(seconds), **timing})
            log.info("audio bench %gs: %.1f audio-s/s (load %.3fs, mel %.3fs, audio2exp %.3fs)", seconds,
                        timing["audio_seconds_per_second"], timing["load_s"], timing["mel_s"], timing["audio2exp_s"])
    return {"device": str(device), "torch_threads": torch.get_num_threads(), "speech_source": source,
            "warmup_s": warmup["total_s"], "runs": runs}
