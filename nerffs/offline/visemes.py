"""Offline audio -> mouth motion: phones from pocketsphinx, coarticulated articulation curves per video frame.

This replaces a neural Audio2Exp when no weights exist. Everything comes from the pocketsphinx wheel (its
en-us acoustic model, phone language model and CMU dictionary) plus numpy/scipy:

1. :func:`recognise_phones` turns a 16 kHz waveform into timed ARPAbet phones. With a transcript the words
   are force-aligned (pocketsphinx word alignment, then a second sub-word pass for phone timings); without
   one, or when alignment fails, phones come from allphone decoding with ``en-us-phone.lm.bin``. Decoding
   runs at 100 frames per second, so phone timings are quantised to 10 ms.
2. :func:`phone_curves` maps each phone to a target articulation over :data:`CHANNELS` and blends the
   targets with Cohen & Massaro dominance functions. Bilabial and labiodental closures have strong
   dominance on the lip channels, so they are reached. Long silences go back to rest.
3. :func:`energy_curves` is the fallback when no speech phones come out (another language, singing,
   noise): the jaw follows the loudness envelope and rounding/spreading follows the spectral centroid.
4. :func:`mouth_curves` is the driver. It picks the source ("aligned", "phones" or "energy") and then
   closes the mouth in silent stretches with an energy gate.

Frame convention: video frame ``i`` covers ``[i / fps, (i + 1) / fps)`` seconds. All curves are
``[num_frames, len(CHANNELS)]`` float32 with natural amplitudes in ``[0, 1]``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from nerffs.errors import MissingDependencyError
from nerffs.offline.phones import Phone, normalise_label, recognise, recognise_phones

__all__ = ["CHANNELS", "Phone", "VisemeConfig", "energy_curves", "mouth_curves", "phone_curves", "recognise_phones"]

log = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("jaw_open", "lip_part", "lip_round", "lip_spread", "lip_press", "lip_tuck")
"""Articulation channels: jaw rotation (1 = wide 'aa'); lips apart without jaw; pucker/rounding ('oo', 'w');
corners spread ('ee'); lips pressed shut (p/b/m); lower lip tucked under the upper teeth (f/v)."""

# (jaw_open, lip_part, lip_round, lip_spread, lip_press, lip_tuck) targets. "OH" is the start of OW.
_TARGETS: dict[str, tuple[float, ...]] = {
    "AA": (1.00, 1.00, 0.00, 0.10, 0, 0), "AE": (0.85, 1.00, 0.00, 0.45, 0, 0),
    "AH": (0.60, 0.85, 0.00, 0.10, 0, 0), "AO": (0.80, 0.95, 0.55, 0.00, 0, 0),
    "EH": (0.55, 0.85, 0.00, 0.45, 0, 0), "ER": (0.35, 0.60, 0.40, 0.00, 0, 0),
    "IH": (0.35, 0.65, 0.00, 0.55, 0, 0), "IY": (0.20, 0.55, 0.00, 0.90, 0, 0),
    "UH": (0.35, 0.55, 0.55, 0.00, 0, 0), "UW": (0.20, 0.40, 0.95, 0.00, 0, 0),
    "OH": (0.55, 0.75, 0.75, 0.00, 0, 0),
    "P": (0.00, 0.00, 0.00, 0.00, 1, 0), "F": (0.10, 0.15, 0.00, 0.05, 0, 1),
    "TH": (0.15, 0.40, 0.00, 0.10, 0, 0), "S": (0.10, 0.30, 0.00, 0.45, 0, 0),
    "SH": (0.15, 0.45, 0.60, 0.00, 0, 0), "T": (0.20, 0.35, 0.00, 0.15, 0, 0),
    "L": (0.30, 0.45, 0.00, 0.15, 0, 0), "K": (0.30, 0.40, 0.00, 0.10, 0, 0),
    "HH": (0.40, 0.55, 0.00, 0.00, 0, 0), "R": (0.20, 0.35, 0.50, 0.00, 0, 0),
    "W": (0.10, 0.20, 1.00, 0.00, 0, 0), "Y": (0.15, 0.40, 0.00, 0.70, 0, 0),
    "SIL": (0.0, 0.0, 0.0, 0.0, 0, 0),
}
_SAME_TARGET = {"B": "P", "M": "P", "V": "F", "DH": "TH", "Z": "S", "ZH": "SH", "CH": "SH", "JH": "SH",
                "D": "T", "N": "T", "G": "K", "NG": "K"}
_DIPHTHONGS = {"AW": ("AA", "UH"), "AY": ("AA", "IH"), "EY": ("EH", "IY"), "OW": ("OH", "UW"),
               "OY": ("AO", "IY")}
"""Diphthongs are split into a first (55 %) and second half with their own targets."""

# Dominance (alpha) per channel, same channel order. High alpha = the phone imposes its target there.
_DOMINANCE: dict[str, tuple[float, ...]] = {
    "vowel": (0.6, 0.6, 0.5, 0.5, 0.3, 0.3),
    "vowel_round": (0.6, 0.6, 0.9, 0.5, 0.3, 0.3),
    "vowel_spread": (0.6, 0.6, 0.5, 0.7, 0.3, 0.3),
    "bilabial": (3.0, 3.0, 0.3, 0.3, 3.0, 3.0),
    "labiodental": (2.0, 2.5, 0.3, 0.3, 3.0, 3.0),
    "sibilant": (0.6, 0.5, 0.2, 0.5, 0.3, 0.3),
    "postalveolar": (0.5, 0.5, 0.7, 0.7, 0.3, 0.3),
    "rounded": (0.4, 0.5, 1.0, 1.0, 0.3, 0.3),
    "palatal": (0.4, 0.4, 0.3, 0.8, 0.3, 0.3),
    "aspirate": (0.1, 0.1, 0.1, 0.1, 0.1, 0.1),
    "consonant": (0.4, 0.4, 0.15, 0.15, 0.3, 0.3),
    "silence": (0.6, 0.6, 0.6, 0.6, 0.6, 0.6),
}
_CLASS_OF = {
    **{p: "vowel" for p in ("AA", "AH")},
    **{p: "vowel_round" for p in ("AO", "ER", "UH", "UW", "OH")},
    **{p: "vowel_spread" for p in ("AE", "EH", "IH", "IY")},
    **{p: "bilabial" for p in ("P", "B", "M")}, **{p: "labiodental" for p in ("F", "V")},
    **{p: "sibilant" for p in ("S", "Z")}, **{p: "postalveolar" for p in ("SH", "ZH", "CH", "JH")},
    **{p: "rounded" for p in ("W", "R")}, "Y": "palatal", "HH": "aspirate", "SIL": "silence",
}


@dataclass
class VisemeConfig:
    """Settings of the phone -> curve mapping and of the energy fallback/gate."""

    fps: float = 25.0
    """Video frame rate; frame ``i`` covers ``[i / fps, (i + 1) / fps)``."""
    theta_anticipation: float = 30.0
    """Dominance decay rate (1/s) before a phone's centre: how early a phone is anticipated."""
    theta_carryover: float = 40.0
    """Dominance decay rate (1/s) after a phone's centre: how long a phone's shape lingers."""
    dominance_exponent: float = 1.0
    """Exponent ``c`` of the time distance in the dominance function (1 = Laplacian, 2 = Gaussian)."""
    max_segment: float = 0.06
    """Phones (and silences) longer than this (s) are split into equal pieces with the same target, so the
    target is held over the whole segment instead of only near its centre."""
    oversample: int = 4
    """Curves are evaluated at this many instants per video frame and averaged over the frame."""
    silence_db: float = -55.0
    """Absolute silence threshold (dBFS of the frame RMS)."""
    silence_below_loud_db: float = 40.0
    """Relative silence threshold: frames this far below the clip's loud level (95th percentile) are silent.
    The effective threshold is the higher of the two."""
    min_silence: float = 0.1
    """Only silent runs at least this long (s) close the mouth in the gate; shorter dips are stop closures."""
    min_phone_rate: float = 3.0
    """Speech is recognised when there are at least this many non-SIL phones per second of energetic audio..."""
    min_phone_coverage: float = 0.5
    """...or when non-SIL phones cover at least this fraction of the energetic frames (one long vowel)."""
    energy_range_db: float = 35.0
    """Energy fallback: dB span from the noise floor to the loud level mapped onto [0, 1]."""
    energy_gamma: float = 0.6
    """Energy fallback: compression exponent applied to the normalised level."""
    attack: float = 0.02
    """Energy fallback: attack time constant (s) of the envelope smoother."""
    release: float = 0.08
    """Energy fallback: release time constant (s) of the envelope smoother."""
    jaw_gain: float = 0.8
    """Energy fallback: jaw_open at full level."""
    lip_part_gain: float = 0.4
    """Energy fallback: lip_part at full level."""
    shape_gain: float = 0.5
    """Energy fallback: largest lip_round / lip_spread."""
    centroid_low_hz: float = 700.0
    """Energy fallback: spectral centroid at and below which the lips are fully rounded."""
    centroid_high_hz: float = 2500.0
    """Energy fallback: spectral centroid at and above which the lips are fully spread."""


# ---------------------------------------------------------------------------------------------- coarticulation

def _segments(phones: list[Phone], duration: float, max_segment: float) -> list[tuple[str, float, float]]:
    """Expand diphthongs, pad with SIL to ``[0, duration]``, split long segments into <= max_segment pieces."""
    out: list[tuple[str, float, float]] = []
    t = 0.0
    for p in sorted(phones, key=lambda q: q.start):
        if p.start > t:
            out.append(("SIL", t, p.start))
        label = normalise_label(p.label)
        if label in _DIPHTHONGS:
            mid = p.start + 0.55 * (p.end - p.start)
            out += [(_DIPHTHONGS[label][0], p.start, mid), (_DIPHTHONGS[label][1], mid, p.end)]
        else:
            out.append((label, p.start, p.end))
        t = max(t, p.end)
    if t < duration:
        out.append(("SIL", t, duration))
    pieces: list[tuple[str, float, float]] = []
    for label, start, end in out:
        n = max(1, math.ceil((end - start) / max_segment - 1e-9))
        edges = np.linspace(start, end, n + 1)
        pieces += [(label, float(a), float(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]
    return pieces


def _target_and_dominance(label: str) -> tuple[np.ndarray, np.ndarray]:
    target = _TARGETS[_SAME_TARGET.get(label, label)]
    return np.asarray(target, np.float64), np.asarray(_DOMINANCE[_CLASS_OF.get(label, "consonant")], np.float64)


def phone_curves(phones: list[Phone], num_frames: int, cfg: VisemeConfig | None = None) -> np.ndarray:
    """Coarticulated articulation curves from timed phones.

    Every phone ``p`` (diphthongs split in two halves, segments longer than ``cfg.max_segment`` split into
    pieces, uncovered time filled with SIL) has a target ``T[p, k]`` and a dominance ``alpha[p, k]`` per
    channel ``k``, and a centre ``c_p``. Following Cohen & Massaro (1993), its dominance at time ``t`` is::

        D[p, k](t) = alpha[p, k] * exp(-theta(t) * |t - c_p| ** c)
        theta(t)   = cfg.theta_anticipation if t < c_p else cfg.theta_carryover,   c = cfg.dominance_exponent

    and the curve is the dominance-weighted average of the targets::

        F[k](t) = sum_p D[p, k](t) * T[p, k] / sum_p D[p, k](t)

    Bilabials (P/B/M) and labiodentals (F/V) have the highest dominance on the jaw and lip channels, so
    closures are reached even between open vowels. Consonants that do not involve the lips have low
    dominance on lip_round/lip_spread, so vowel rounding spreads over them. F is evaluated at
    ``cfg.oversample`` instants per video frame and averaged over the frame ``[i / fps, (i + 1) / fps)``.

    Args:
        phones: timed phones (any order; labels are normalised, unknown labels count as SIL).
        num_frames: number of video frames T.
        cfg: settings; defaults to ``VisemeConfig()``.

    Returns:
        [T, len(CHANNELS)] float32 in [0, 1]; all zeros when ``phones`` is empty or only silence.
    """
    cfg = cfg or VisemeConfig()
    n_ch = len(CHANNELS)
    if num_frames <= 0:
        return np.zeros((0, n_ch), np.float32)
    os_ = max(1, int(cfg.oversample))
    times = (np.arange(num_frames * os_) + 0.5) / (os_ * cfg.fps)
    num = np.zeros((times.size, n_ch))
    den = np.full((times.size, n_ch), 1e-12)
    reach = 30.0 / min(cfg.theta_anticipation, cfg.theta_carryover)  # exp(-30): negligible beyond this
    reach = reach ** (1.0 / cfg.dominance_exponent)
    for label, start, end in _segments(phones, num_frames / cfg.fps, cfg.max_segment):
        centre = 0.5 * (start + end)
        lo, hi = np.searchsorted(times, [centre - reach, centre + reach])
        if hi <= lo:
            continue
        dt = times[lo:hi] - centre
        theta = np.where(dt < 0, cfg.theta_anticipation, cfg.theta_carryover)
        weight = np.exp(-theta * np.abs(dt) ** cfg.dominance_exponent)[:, None]
        target, alpha = _target_and_dominance(label)
        num[lo:hi] += weight * alpha * target
        den[lo:hi] += weight * alpha
    curves = (num / den).reshape(num_frames, os_, n_ch).mean(axis=1)
    return np.clip(curves, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------- energy analysis

def _frames(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> list[np.ndarray]:
    """The samples of each video frame ``[i / fps, (i + 1) / fps)`` (empty past the end of the audio)."""
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    return [wave[a:b] for a, b in zip(edges[:-1], edges[1:])]


def _frame_rms_db(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float = 25.0) -> np.ndarray:
    """[T] float64 RMS level (dBFS) of each video frame's samples; -200 where there are none."""
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    rms = np.array([np.sqrt(np.mean(f * f)) if f.size else 0.0 for f in _frames(wave, sample_rate, num_frames, fps)])
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def _silence_threshold_db(db: np.ndarray, cfg: VisemeConfig) -> float:
    """The higher of the absolute threshold and ``loud level - cfg.silence_below_loud_db``."""
    loud = float(np.percentile(db, 95)) if db.size else cfg.silence_db
    return max(cfg.silence_db, loud - cfg.silence_below_loud_db)


def _smooth_envelope(x: np.ndarray, fps: float, attack: float, release: float) -> np.ndarray:
    """One-pole follower: rises with time constant ``attack`` s, falls with ``release`` s."""
    a_up, a_down = 1.0 - math.exp(-1.0 / (fps * max(attack, 1e-6))), 1.0 - math.exp(-1.0 / (fps * max(release, 1e-6)))
    out, y = np.zeros_like(x), 0.0
    for i, v in enumerate(x):
        y += (a_up if v > y else a_down) * (v - y)
        out[i] = y
    return out


def _spectral_centroid(frames: list[np.ndarray], sample_rate: int) -> np.ndarray:
    """[T] Hann-windowed spectral centroid (Hz) of each frame; 0 for empty frames."""
    out = np.zeros(len(frames))
    for i, f in enumerate(frames):
        if f.size < 8:
            continue
        mag = np.abs(np.fft.rfft(f * np.hanning(f.size)))
        freqs = np.fft.rfftfreq(f.size, 1.0 / sample_rate)
        out[i] = float((mag * freqs).sum() / max(mag.sum(), 1e-12))
    return out


def _silence_gate(db: np.ndarray, cfg: VisemeConfig) -> np.ndarray:
    """[T] float32: 0 inside runs of silent frames lasting at least ``cfg.min_silence`` s, 1 elsewhere.

    Shorter dips (stop closures, brief pauses) are left to the phone curves.
    """
    silent = np.concatenate([[False], db < _silence_threshold_db(db, cfg), [False]])
    edges = np.flatnonzero(np.diff(silent.astype(np.int8)))
    gate = np.ones(db.shape[0], np.float32)
    min_run = max(1, int(math.ceil(cfg.min_silence * cfg.fps - 1e-9)))
    for a, b in zip(edges[0::2], edges[1::2]):
        if b - a >= min_run:
            gate[a:b] = 0.0
    return gate


def energy_curves(wave: np.ndarray, sample_rate: int, num_frames: int, cfg: VisemeConfig | None = None) -> np.ndarray:
    """Mouth motion from loudness and spectral balance alone (no phones).

    The frame RMS level (dB) is normalised between a noise floor (``max(silence threshold, loud -
    cfg.energy_range_db)``) and the loud level (95th percentile) of the clip, compressed with
    ``cfg.energy_gamma`` and smoothed with an attack/release follower. jaw_open and lip_part follow it.
    The spectral centroid, on a log scale between ``cfg.centroid_low_hz`` and ``cfg.centroid_high_hz``,
    splits into lip_round (low half) and lip_spread (high half), scaled by the level. Silent frames are 0,
    and so is the release tail inside silent runs (see ``cfg.min_silence``).

    Args:
        wave: [L] float32 mono; sample_rate: its rate (Hz); num_frames: T video frames.
        cfg: settings; defaults to ``VisemeConfig()``.

    Returns:
        [T, len(CHANNELS)] float32 in [0, 1].
    """
    cfg = cfg or VisemeConfig()
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    curves = np.zeros((max(num_frames, 0), len(CHANNELS)), np.float32)
    if num_frames <= 0 or wave.size == 0:
        return curves
    db = _frame_rms_db(wave, sample_rate, num_frames, cfg.fps)
    threshold = _silence_threshold_db(db, cfg)
    loud = float(np.percentile(db, 95))
    if loud <= threshold:
        return curves
    floor = max(threshold, loud - cfg.energy_range_db)
    level = np.clip((db - floor) / max(loud - floor, 1e-6), 0.0, 1.0) ** cfg.energy_gamma
    level = np.where(db < threshold, 0.0, level)
    level = _smooth_envelope(level, cfg.fps, cfg.attack, cfg.release)
    centroid = _spectral_centroid(_frames(wave, sample_rate, num_frames, cfg.fps), sample_rate)
    lo, hi = math.log(cfg.centroid_low_hz), math.log(cfg.centroid_high_hz)
    x = np.clip((np.log(np.maximum(centroid, 1.0)) - lo) / (hi - lo), 0.0, 1.0)
    curves[:, 0] = cfg.jaw_gain * level
    curves[:, 1] = cfg.lip_part_gain * level
    curves[:, 2] = cfg.shape_gain * np.clip(1.0 - 2.0 * x, 0.0, 1.0) * level
    curves[:, 3] = cfg.shape_gain * np.clip(2.0 * x - 1.0, 0.0, 1.0) * level
    return np.clip(curves, 0.0, 1.0) * _silence_gate(db, cfg)[:, None]


# ------------------------------------------------------------------------------------------------------ driver

def _speech_recognised(phones: list[Phone], energetic: np.ndarray, cfg: VisemeConfig) -> bool:
    """Whether the phones explain the energetic frames ([T] bool): enough speech phones, or enough coverage."""
    energetic_s = float(energetic.sum()) / cfg.fps
    speech = [p for p in phones if p.label != "SIL"]
    if energetic_s <= 0 or not speech:
        return False
    if len(speech) >= cfg.min_phone_rate * energetic_s:
        return True
    centres = (np.arange(energetic.size) + 0.5) / cfg.fps
    covered = np.zeros(energetic.size, bool)
    for p in speech:
        covered |= (centres >= p.start) & (centres < p.end)
    return float((covered & energetic).sum()) >= cfg.min_phone_coverage * float(energetic.sum())


def mouth_curves(wave: np.ndarray, sample_rate: int, num_frames: int, transcript: str | None = None,
                 cfg: VisemeConfig | None = None) -> tuple[np.ndarray, str]:
    """Per-frame mouth articulation for a speech clip.

    Phones (force-aligned when ``transcript`` is given) drive :func:`phone_curves`. When pocketsphinx finds
    fewer than ``cfg.min_phone_rate`` non-SIL phones per second of energetic audio and they cover less than
    ``cfg.min_phone_coverage`` of the energetic frames (or pocketsphinx is not installed, or the decoder
    fails), :func:`energy_curves` is used instead, with a warning for the latter two. Finally frames inside silent runs (RMS below the silence
    threshold for at least ``cfg.min_silence`` s) are pulled to 0, so the mouth is closed in pauses even if
    the recogniser hallucinated phones there.

    Args:
        wave: [L] float32 mono in [-1, 1]; sample_rate: its rate (Hz).
        num_frames: T video frames (frame ``i`` covers ``[i / fps, (i + 1) / fps)``).
        transcript: optional words spoken, for forced alignment.
        cfg: settings; defaults to ``VisemeConfig()``.

    Returns:
        ``(curves [T, len(CHANNELS)] float32, source)`` with source ``"aligned"``, ``"phones"`` or ``"energy"``.
    """
    cfg = cfg or VisemeConfig()
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    db = _frame_rms_db(wave, sample_rate, max(num_frames, 0), cfg.fps)
    energetic = db >= _silence_threshold_db(db, cfg) if db.size else np.zeros(0, bool)
    try:
        phones, aligned = recognise(wave, sample_rate, transcript)
    except (MissingDependencyError, RuntimeError) as exc:  # not installed, or a decoder failure
        log.warning("no phones (%s); using the energy fallback", exc)
        phones, aligned = [], False
    if _speech_recognised(phones, energetic, cfg):
        curves, source = phone_curves(phones, num_frames, cfg), "aligned" if aligned else "phones"
    else:
        curves, source = energy_curves(wave, sample_rate, num_frames, cfg), "energy"
    if curves.shape[0]:
        curves = curves * _silence_gate(db, cfg)[:, None]
    log.info("mouth curves from %s: %d speech phones, %.2f s of energetic audio", source,
                sum(p.label != "SIL" for p in phones), energetic.sum() / cfg.fps)
    return curves, source
