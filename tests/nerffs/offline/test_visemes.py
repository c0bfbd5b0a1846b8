"""Tests of nerffs.offline.visemes: audio (+ transcript) -> per-frame mouth articulation curves.

Speech comes from espeak-ng and phones from the real pocketsphinx decoder (no mocks). Tests that need
either skip only when it is truly absent.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import sys

import numpy as np
import pytest

from nerffs.audio.speech import find_espeak, synthesize_speech
from nerffs.errors import MissingDependencyError
from nerffs.offline.visemes import (CHANNELS, Phone, VisemeConfig, energy_curves, mouth_curves, phone_curves,
                                    recognise_phones)

SR = 16000
FPS = 25.0
JAW, PART, ROUND, SPREAD, PRESS, TUCK = range(len(CHANNELS))
SENTENCE = "Hello! I am a talking head, made from one photo and one recording."

needs_sphinx = pytest.mark.skipif(importlib.util.find_spec("pocketsphinx") is None,
                                  reason="pocketsphinx is not installed (pip install --no-deps pocketsphinx==5.1.1)")
needs_espeak = pytest.mark.skipif(find_espeak() is None, reason="espeak-ng is not installed")


def frames_of(wave: np.ndarray) -> int:
    return int(math.ceil(wave.shape[0] / SR * FPS))


def frame_rms(wave: np.ndarray, num_frames: int) -> np.ndarray:
    hop = int(SR / FPS)
    padded = np.zeros(num_frames * hop, np.float64)
    padded[:min(wave.size, padded.size)] = wave[:padded.size]
    return np.sqrt((padded.reshape(num_frames, hop) ** 2).mean(axis=1))


def frame_at(t: float) -> int:
    return int(math.floor(t * FPS))


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, np.ndarray]:
    """16 kHz float32 espeak-ng clips keyed by their text."""
    if find_espeak() is None:
        pytest.skip("espeak-ng is not installed")
    from nerffs.audio.load import load_audio

    out = tmp_path_factory.mktemp("espeak")
    clips = {}
    for i, text in enumerate(["papa", "aaah", "who", "see", SENTENCE]):
        clips[text] = load_audio(synthesize_speech(out / f"{i}.wav", text=text))
    return clips


# ------------------------------------------------------------------------------------- phone_curves, no audio

def test_phone_curves_shape_and_silence_is_rest():
    assert CHANNELS == ("jaw_open", "lip_part", "lip_round", "lip_spread", "lip_press", "lip_tuck")
    for phones in ([], [Phone("SIL", 0.0, 1.0)], [Phone("+NSN+", 0.0, 0.5), Phone("SIL", 0.5, 1.0)]):
        curves = phone_curves(phones, 25)
        assert curves.shape == (25, 6) and curves.dtype == np.float32
        assert np.all(curves == 0.0)
    assert phone_curves([Phone("AA", 0, 1)], 0).shape == (0, 6)


def test_bilabial_between_open_vowels_closes_the_lips():
    phones = [Phone("AA", 0.0, 0.3), Phone("P", 0.3, 0.38), Phone("AA", 0.38, 0.7)]
    curves = phone_curves(phones, 18)
    p = curves[frame_at(0.34)]
    assert p[PRESS] > 0.85 and p[JAW] < 0.15 and p[PART] < 0.15
    for t in (0.15, 0.55):
        assert curves[frame_at(t), JAW] > 0.8 and curves[frame_at(t), PRESS] < 0.1
    # the same with a very short closure (30 ms): still clearly pressed
    short = phone_curves([Phone("AA", 0.0, 0.3), Phone("B", 0.3, 0.33), Phone("AA", 0.33, 0.7)], 18)
    assert short[frame_at(0.3), PRESS] > 0.75


def test_labiodental_tucks_and_vowel_shapes():
    f = phone_curves([Phone("AA", 0.0, 0.3), Phone("F", 0.3, 0.4), Phone("AA", 0.4, 0.7)], 18)[frame_at(0.35)]
    assert f[TUCK] > 0.8 and f[PRESS] < 0.1
    oo = phone_curves([Phone("UW", 0.0, 0.4)], 10)[3:7].mean(axis=0)
    ee = phone_curves([Phone("IY1", 0.0, 0.4)], 10)[3:7].mean(axis=0)  # stress digit is ignored
    aa = phone_curves([Phone("AA", 0.0, 0.4)], 10)[3:7].mean(axis=0)
    assert oo[ROUND] > ee[ROUND] + 0.5 and ee[SPREAD] > oo[SPREAD] + 0.5
    assert aa[JAW] > 0.9 and aa[JAW] > oo[JAW] + 0.5 and aa[JAW] > ee[JAW] + 0.5


def test_long_silence_returns_to_rest_and_short_pause_does_not_snap():
    long = phone_curves([Phone("AA", 0.0, 0.3), Phone("SIL", 0.3, 0.6), Phone("AA", 0.6, 0.9)], 23)
    assert np.all(long[frame_at(0.4):frame_at(0.5) + 1] < 0.05)
    leading = phone_curves([Phone("SIL", 0.0, 0.4), Phone("AA", 0.4, 0.8)], 20)  # phones need not start at 0
    assert np.all(leading[:frame_at(0.2)] < 0.02) and leading[frame_at(0.6), JAW] > 0.9
    gap = phone_curves([Phone("AA", 0.0, 0.3), Phone("AA", 0.35, 0.7)], 18)  # a 50 ms gap counts as SIL
    assert 0.3 < gap[frame_at(0.32), JAW] < 0.95


def test_curves_are_continuous():
    rng = np.random.default_rng(1)
    labels = sorted(["SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
                     "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T",
                     "TH", "UH", "UW", "V", "W", "Y", "Z", "ZH"])
    phones, t = [], 0.0
    while t < 4.0:
        d = float(rng.uniform(0.03, 0.2))
        phones.append(Phone(str(rng.choice(labels)), t, t + d))
        t += d
    fine = phone_curves(phones, 400, VisemeConfig(fps=100.0))
    assert np.abs(np.diff(fine, axis=0)).max() < 0.25  # step targets would jump by up to 1
    video = phone_curves(phones, 100)
    assert np.abs(np.diff(video, axis=0)).max() < 0.65
    assert video.min() >= 0.0 and video.max() <= 1.0 and video[:, JAW].max() > 0.5


# ------------------------------------------------------------------------------------------------ energy

def test_energy_curves_silence_and_tone_burst():
    silent = energy_curves(np.zeros(SR * 2, np.float32), SR, 50)
    assert silent.shape == (50, 6) and np.all(silent == 0.0)
    wave = np.zeros(SR * 3, np.float32)
    t = np.arange(SR) / SR
    wave[SR:2 * SR] = 0.3 * np.sin(2 * np.pi * 300.0 * t)  # 1.0 s .. 2.0 s
    curves = energy_curves(wave, SR, 75)
    jaw = curves[:, JAW]
    assert np.all(jaw[:24] == 0.0) and np.all(jaw[frame_at(2.2):] < 0.02)
    assert np.all(jaw[frame_at(1.1):frame_at(1.9)] > 0.5)
    burst = curves[frame_at(1.1):frame_at(1.9)]
    assert burst[:, ROUND].mean() > burst[:, SPREAD].mean()  # 300 Hz: a low centroid rounds
    hiss = np.random.default_rng(0).normal(0.0, 0.1, SR).astype(np.float32)
    hissy = energy_curves(np.concatenate([np.zeros(SR, np.float32), hiss]), SR, 50)[30:45]
    assert hissy[:, SPREAD].mean() > hissy[:, ROUND].mean()  # white noise: a high centroid spreads


# ------------------------------------------------------------------------------------ pocketsphinx + espeak

@needs_sphinx
@needs_espeak
def test_papa_closes_at_p_and_opens_at_vowels(speech):
    wave = speech["papa"]
    phones = recognise_phones(wave, SR, transcript="papa")
    assert [p.label for p in phones if p.label != "SIL"] == ["P", "AA", "P", "AH"]
    curves, source = mouth_curves(wave, SR, frames_of(wave), transcript="papa")
    assert source == "aligned"
    for p in phones:
        if p.label == "P":
            closed = curves[frame_at(0.5 * (p.start + p.end))]
            assert closed[PRESS] > 0.6 and closed[JAW] < 0.2, (p, closed)
        elif p.label in ("AA", "AH"):
            assert curves[frame_at(0.5 * (p.start + p.end)), JAW] > 0.35, p
    assert curves[:, JAW].max() > 0.6


@needs_sphinx
@needs_espeak
def test_vowel_shapes_from_real_speech(speech):
    def voiced_mean(text: str) -> np.ndarray:
        wave = speech[text]
        curves, _ = mouth_curves(wave, SR, frames_of(wave))
        loud = frame_rms(wave, curves.shape[0]) > 0.05
        return curves[loud].mean(axis=0)

    ah, oo, ee = voiced_mean("aaah"), voiced_mean("who"), voiced_mean("see")
    assert ah[JAW] > 0.5 and ah[JAW] > ee[JAW] + 0.2 and ah[JAW] > oo[JAW] + 0.2
    assert oo[ROUND] > ee[ROUND] + 0.3
    assert ee[SPREAD] > oo[SPREAD] + 0.3


@needs_sphinx
@needs_espeak
def test_forced_alignment_and_allphone_on_a_sentence(speech, caplog):
    wave = speech[SENTENCE]
    duration = wave.shape[0] / SR
    aligned = recognise_phones(wave, SR, transcript=SENTENCE)
    speech_phones = [p for p in aligned if p.label != "SIL"]
    assert len(speech_phones) >= 40  # the transcript has 46 dictionary phones
    assert [p.label for p in speech_phones[:4]] == ["HH", "AH", "L", "OW"]
    starts = [p.start for p in aligned]
    assert starts == sorted(starts) and all(p.end > p.start for p in aligned)
    assert aligned[0].start >= 0.0 and aligned[-1].end <= duration + 1e-6
    decoded = recognise_phones(wave, SR)
    assert sum(p.label != "SIL" for p in decoded) >= 15
    assert decoded[-1].end <= duration + 1e-6
    with caplog.at_level(logging.WARNING, logger="nerffs.offline.visemes"):
        fallback = recognise_phones(wave, SR, transcript="qwxzt blorf")
    assert "forced alignment failed" in caplog.text
    assert sum(p.label != "SIL" for p in fallback) >= 15


@needs_sphinx
@needs_espeak
def test_other_sample_rates_are_resampled(speech):
    from scipy.signal import resample_poly

    wave = speech["papa"]
    at_48k = resample_poly(wave, 3, 1).astype(np.float32)
    a = recognise_phones(wave, SR, transcript="papa")
    b = recognise_phones(at_48k, 48000, transcript="papa")
    assert [p.label for p in a] == [p.label for p in b]
    assert max(abs(p.start - q.start) for p, q in zip(a, b)) <= 0.03


@needs_sphinx
def test_silence_gives_no_phones_and_a_closed_mouth():
    silence = np.zeros(SR, np.float32)
    assert recognise_phones(silence, SR) == []
    curves, source = mouth_curves(silence, SR, 25)
    assert source == "energy" and np.all(curves == 0.0)


@needs_sphinx
@needs_espeak
@pytest.mark.parametrize("transcript", [None, SENTENCE])
def test_mouth_follows_speech_energy_and_closes_in_silence(speech, transcript):
    wave = np.concatenate([speech[SENTENCE], np.zeros(SR // 2, np.float32)])
    n = frames_of(wave)
    curves, source = mouth_curves(wave, SR, n, transcript=transcript)
    assert curves.shape == (n, 6) and curves.dtype == np.float32
    assert source == ("aligned" if transcript else "phones")
    jaw, rms = curves[:, JAW].astype(np.float64), frame_rms(wave, n)
    best = max(np.corrcoef(jaw[max(lag, 0):n + min(lag, 0)], rms[max(-lag, 0):n - max(lag, 0)])[0, 1]
               for lag in range(-2, 3))
    assert best > 0.5
    tail_start = int(math.ceil(speech[SENTENCE].shape[0] / SR * FPS))
    assert np.all(jaw[tail_start:] < 0.05)


def test_missing_pocketsphinx_is_reported_and_the_driver_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)  # makes `import pocketsphinx` fail
    t = np.arange(SR) / SR
    wave = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    with pytest.raises(MissingDependencyError, match="pip install --no-deps pocketsphinx==5.1.1"):
        recognise_phones(wave, SR)
    curves, source = mouth_curves(wave, SR, 25)
    assert source == "energy" and curves[:, JAW].max() > 0.3


@needs_sphinx
@needs_espeak
def test_energy_gate_closes_the_mouth_on_hallucinated_phones(speech):
    # a murmur ~45 dB below the speech: allphone decoding hallucinates a vowel in it (pocketsphinx 5.1.1)
    voice = speech[SENTENCE]
    wave = np.concatenate([voice, 0.006 * voice[::-1][:SR]])
    n = frames_of(wave)
    curves, source = mouth_curves(wave, SR, n)
    assert source == "phones"
    assert np.all(curves[int(math.ceil(voice.shape[0] / SR * FPS)):] < 0.05)
