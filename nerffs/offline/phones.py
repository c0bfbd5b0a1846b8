"""Timed phones of speech from pocketsphinx (its wheel ships the en-us acoustic model, the phone language model
and the CMU dictionary): forced alignment when the words are known, phone-loop decoding otherwise.

Used by :mod:`nerffs.offline.visemes` to drive the offline set's mouth. Decoding runs at 100 frames per
second, so phone timings are quantised to 10 ms.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import re
from dataclasses import dataclass

import numpy as np

from nerffs.errors import MissingDependencyError

log = logging.getLogger(__name__)

DECODER_RATE = 16000
"""Sample rate (Hz) of the pocketsphinx en-us acoustic model."""
DECODER_FPS = 100.0
"""pocketsphinx feature frames per second (segment and alignment times are in these frames)."""
ALLPHONE_LANGUAGE_WEIGHT = 2.0
"""Language weight for allphone decoding (the value CMU recommends for phoneme recognition)."""
DITHER = 1e-4
"""Std of the seeded Gaussian dither added before decoding. Digitally silent stretches (TTS, padding)
otherwise give log(0) features that derail forced alignment ("final result does not match the grammar")."""
PIP_INSTALL = "pip install --no-deps pocketsphinx==5.1.1"

ARPABET: frozenset[str] = frozenset(
    "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W Y Z ZH".split())
"""The 39 CMU phones (without stress digits); every other label (fillers, noise) becomes ``SIL``."""


@dataclass(frozen=True)
class Phone:
    """One timed phone."""

    label: str
    """ARPAbet phone without stress digit, or ``"SIL"`` for silence, fillers and noise."""
    start: float
    """Start time in seconds."""
    end: float
    """End time in seconds (exclusive)."""


def _pocketsphinx():
    """Import pocketsphinx or raise :class:`MissingDependencyError` with the install command."""
    try:
        import pocketsphinx
    except ImportError as exc:
        raise MissingDependencyError(f"pocketsphinx is not installed; run `{PIP_INSTALL}`") from exc
    return pocketsphinx


def _model_dir() -> str:
    """The directory holding ``en-us/`` (acoustic model), ``en-us-phone.lm.bin`` and ``cmudict-en-us.dict``."""
    spec = importlib.util.find_spec("pocketsphinx")
    return os.path.join(list(spec.submodule_search_locations)[0], "model", "en-us")


def _to_pcm16(wave: np.ndarray, sample_rate: int) -> bytes:
    """Resample to 16 kHz, add seeded dither, convert to little-endian int16 bytes."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if sample_rate != DECODER_RATE:
        from scipy.signal import resample_poly

        g = math.gcd(int(sample_rate), DECODER_RATE)
        wave = resample_poly(wave, DECODER_RATE // g, int(sample_rate) // g).astype(np.float32)
    wave = wave + np.random.default_rng(0).normal(0.0, DITHER, wave.shape).astype(np.float32)
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def normalise_label(label: str) -> str:
    """ARPAbet label without stress digits; anything else (``+NSN+``, ``<sil>``...) becomes ``SIL``."""
    base = re.sub(r"\d", "", label).upper()
    return base if base in ARPABET else "SIL"


def _tidy(raw: list[tuple[str, float, float]], duration: float) -> list[Phone]:
    """Sort, clip to ``[0, duration]``, fill gaps with SIL, merge adjacent SIL; [] if nothing is speech."""
    phones: list[Phone] = []

    def push(label: str, start: float, end: float) -> None:
        if label == "SIL" and phones and phones[-1].label == "SIL":
            phones[-1] = Phone("SIL", phones[-1].start, end)
        else:
            phones.append(Phone(label, start, end))

    t = 0.0
    for label, start, end in sorted(raw, key=lambda r: r[1]):
        start, end = max(start, t), min(end, duration)
        if end > start:
            if start > t:
                push("SIL", t, start)
            push(normalise_label(label), start, end)
            t = end
    if t < duration:
        push("SIL", t, duration)
    return phones if any(p.label != "SIL" for p in phones) else []


def _decode(decoder, pcm: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()


def _allphone(pcm: bytes) -> list[tuple[str, float, float]]:
    """Phone loop decoding; ``seg.end_frame`` is inclusive."""
    ps, model = _pocketsphinx(), _model_dir()
    decoder = ps.Decoder(hmm=os.path.join(model, "en-us"), allphone=os.path.join(model, "en-us-phone.lm.bin"),
                         dict=None, lw=ALLPHONE_LANGUAGE_WEIGHT, loglevel="FATAL")
    _decode(decoder, pcm)
    return [(s.word, s.start_frame / DECODER_FPS, (s.end_frame + 1) / DECODER_FPS) for s in decoder.seg()]


def _transcript_words(transcript: str) -> list[str]:
    """Lower-case dictionary-style words of a transcript (punctuation dropped, apostrophes kept)."""
    return re.sub(r"[^a-z']+", " ", transcript.lower().replace("\u2019", "'")).split()


def _align(pcm: bytes, transcript: str) -> list[tuple[str, float, float]]:
    """Forced alignment: word pass, then sub-word pass. Raises ValueError/RuntimeError when it fails."""
    ps, model = _pocketsphinx(), _model_dir()
    decoder = ps.Decoder(hmm=os.path.join(model, "en-us"), dict=os.path.join(model, "cmudict-en-us.dict"),
                         lm=None, loglevel="FATAL")
    words = _transcript_words(transcript)
    oov = [w for w in words if decoder.lookup_word(w) is None]
    if not words or oov:
        raise ValueError(f"words not in the pronunciation dictionary: {oov}" if oov else "empty transcript")
    decoder.set_align_text(" ".join(words))
    _decode(decoder, pcm)
    if decoder.hyp() is None:
        raise RuntimeError("the word alignment did not reach the end of the transcript")
    decoder.set_alignment()
    _decode(decoder, pcm)
    alignment = decoder.get_alignment()
    if alignment is None:
        raise RuntimeError("no phone alignment")
    return [(p.name, p.start / DECODER_FPS, (p.start + p.duration) / DECODER_FPS) for p in alignment.phones()]


def recognise(wave: np.ndarray, sample_rate: int, transcript: str | None) -> tuple[list[Phone], bool]:
    """:func:`recognise_phones` plus whether the phones come from forced alignment."""
    _pocketsphinx()
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    duration = wave.shape[0] / float(sample_rate)
    if duration < 0.05 or not np.any(np.abs(wave) > DITHER):
        return [], False
    pcm = _to_pcm16(wave, sample_rate)
    if transcript is not None and transcript.strip():
        try:
            phones = _tidy(_align(pcm, transcript), duration)
            if phones:
                return phones, True
            raise RuntimeError("the alignment holds no speech phones")
        except (ValueError, RuntimeError) as exc:
            log.warning("forced alignment failed (%s); falling back to allphone decoding", exc)
    return _tidy(_allphone(pcm), duration), False


def recognise_phones(wave: np.ndarray, sample_rate: int = 16000, transcript: str | None = None) -> list[Phone]:
    """Timed phones of a speech waveform.

    Args:
        wave: [L] float32 mono in [-1, 1].
        sample_rate: its rate; anything but 16 kHz is resampled (``scipy.signal.resample_poly``).
        transcript: the words spoken. When given, the phones come from forced alignment; if that fails
            (out-of-vocabulary words, decoder error, empty result) a warning is logged and allphone decoding
            is used instead.

    Returns:
        Phones sorted by time, contiguous from 0 to the audio duration (gaps are SIL); [] for silence.

    Raises:
        MissingDependencyError: pocketsphinx is not installed.
    """
    return recognise(wave, sample_rate, transcript)[0]
