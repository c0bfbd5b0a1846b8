"""Per-frame expression coefficients from mel windows, as NFS drives Audio2Exp (spec-pipeline.md 2.1, 2.4).

NFS runs Audio2Exp autoregressively, one frame at a time:

    ref_0 = e0;   pred_i = A(mel_i, ref_i, r_i);   ref_{i+1} = (1 - a_m) e0 + a_m pred_i;   exp_i = l_exp pred_i

with e0 the fitted expression of the source image, a_m = 0.5, l_exp = 1.5 and blink input r_i = 0. Only the
last linear layer sees ref, so the recurrence is split: the convolutional encoder (no recurrence) runs batched
over all frames, the audio, blink and bias terms of ``mapping1`` are computed for all frames at once, and only
the 64 x 64 reference term runs sequentially: pred_i = c_i + W_ref ref_i. This equals the per-frame loop up to
float summation order. BatchNorm uses running statistics, so the model must be in eval mode.

The optional blink input follows SadTalker's random generator: 5-frame bumps (0.5, 0.9, 1.0, 0.9, 0.5)
separated by random gaps (spec 2.1).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from nerffs.audio.audio2exp import EXP_DIM, Audio2Exp, check_mel_windows
from nerffs.audio.config import AudioConfig
from nerffs.errors import AudioError

log = logging.getLogger(__name__)


def random_blink_sequence(num_frames: int, cfg: AudioConfig | None = None,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """SadTalker-style random eye-blink input.

    Starting at frame 0, a gap g is drawn uniformly from [blink_min_gap, min(blink_max_gap, T // 2)) and a
    blink (``cfg.blink_profile``) is placed at the current position + g; the position moves past the blink.
    Generation stops at the first blink that would not end before the last frame. Sequences shorter than
    ``cfg.blink_min_frames`` get no blink.

    Args:
        num_frames: T.
        cfg: blink options; defaults to ``AudioConfig()``.
        generator: CPU random generator for reproducible sequences (None: torch's global generator).

    Returns:
        [T] float32 blink ratio in [0, 1] (CPU).
    """
    cfg = cfg or AudioConfig()
    ratio = torch.zeros(num_frames)
    if num_frames < cfg.blink_min_frames:
        return ratio
    profile = torch.tensor(cfg.blink_profile, dtype=torch.float32)
    lo = min(cfg.blink_min_gap, num_frames)
    hi = max(min(cfg.blink_max_gap, num_frames // 2), lo + 1)  # never an empty range
    pos = 0
    while True:
        gap = int(torch.randint(lo, hi, (1,), generator=generator))
        start = pos + gap
        if start + len(profile) > num_frames - 1:
            break
        ratio[start:start + len(profile)] = profile
        pos = start + len(profile)
    return ratio


def blink_sequence(num_frames: int, cfg: AudioConfig | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The blink input selected by ``cfg.blink``: zeros (``'none'``, NFS) or :func:`random_blink_sequence`
    times ``cfg.blink_strength``.

    Returns:
        [T] float32 (CPU).
    """
    cfg = cfg or AudioConfig()
    if cfg.blink == "random":
        ratio = random_blink_sequence(num_frames, cfg, generator)
        return ratio if cfg.blink_strength == 1.0 else ratio * cfg.blink_strength
    return torch.zeros(num_frames)


def _as_tensor(x: torch.Tensor | np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(x).to(device, torch.float32)


def _check_inputs(mel_windows: torch.Tensor, ref_exp: torch.Tensor, blink: torch.Tensor | None) -> None:
    check_mel_windows(mel_windows)
    if ref_exp.numel() != EXP_DIM or ref_exp.ndim not in (1, 2):
        raise AudioError(f"reference expression must have shape [{EXP_DIM}] or [1, {EXP_DIM}], got "
                         f"{tuple(ref_exp.shape)}; pass the 64 expression coefficients of the source face")
    if blink is not None and tuple(blink.shape) not in ((len(mel_windows),), (len(mel_windows), 1)):
        raise AudioError(f"blink input must have shape [T] = [{len(mel_windows)}], got {tuple(blink.shape)}")
    if not torch.isfinite(ref_exp).all():
        raise AudioError("reference expression contains NaN or infinite values; check the 3DMM fit")


def encode_batched(model: Audio2Exp, mel_windows: torch.Tensor, batch: int) -> torch.Tensor:
    """Run the convolutional encoder over all frames in batches of ``batch``.

    Args:
        mel_windows: [T, 80, 16] on the model's device.

    Returns:
        [T, 512] audio features.
    """
    chunks = [model.encode(mel_windows[i:i + batch]) for i in range(0, len(mel_windows), batch)]
    return torch.cat(chunks, dim=0)


def reference_recurrence(drive: torch.Tensor, w_ref: torch.Tensor, e0: torch.Tensor,
                         momentum: float) -> torch.Tensor:
    """The sequential part: pred_i = drive_i + W_ref ref_i, ref_{i+1} = (1 - a_m) e0 + a_m pred_i, ref_0 = e0.

    Args:
        drive: [T, 64] per-frame audio + blink + bias terms of ``mapping1``.
        w_ref: [64, 64] the reference block of ``mapping1.weight``.
        e0: [64] initial reference expression.
        momentum: a_m.

    Returns:
        [T, 64] unscaled predictions.
    """
    preds = torch.empty_like(drive)
    anchor = (1.0 - momentum) * e0
    ref = e0
    for i in range(drive.shape[0]):
        pred = torch.addmv(drive[i], w_ref, ref)
        preds[i] = pred
        ref = anchor + momentum * pred
    return preds


def audio_to_expression(model: Audio2Exp, mel_windows: torch.Tensor | np.ndarray,
                        ref_exp: torch.Tensor | np.ndarray, cfg: AudioConfig | None = None, *,
                        blink: torch.Tensor | np.ndarray | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Expression coefficients for every video frame (spec 2.4).

    Args:
        model: Audio2Exp in eval mode (its device is used for the computation).
        mel_windows: [T, 80, 16] mel windows from :func:`nerffs.audio.mel_windows`.
        ref_exp: [64] or [1, 64] e0, the expression coefficients of the source face.
        cfg: ``ref_momentum`` (a_m), ``exp_scale`` (l_exp), ``blink`` mode, ``encoder_batch``.
        blink: [T] explicit blink input in [0, 1]; overrides ``cfg.blink`` (e.g. taken from a video).
        generator: random generator for ``cfg.blink == 'random'``.

    Returns:
        exp: [T, 64] float32, l_exp * pred_i, on the model's device.

    Raises:
        AudioError: misshaped inputs. ValueError: the model is in training mode.
    """
    cfg = cfg or AudioConfig()
    if model.training:
        raise ValueError("Audio2Exp is in training mode; call model.eval() first (BatchNorm must use running "
                         "statistics)")
    device = model.mapping1.weight.device
    mel = _as_tensor(mel_windows, device)
    e0 = _as_tensor(ref_exp, device)
    ratio = None if blink is None else _as_tensor(blink, device)
    _check_inputs(mel, e0, ratio)
    if ratio is None:
        ratio = blink_sequence(len(mel), cfg, generator).to(device)
    with torch.no_grad():
        audio = encode_batched(model, mel, cfg.encoder_batch)  # [T, 512]
        w_audio, w_ref, w_ratio, bias = model.mapping_parts()
        drive = torch.addmm(bias, audio, w_audio.t()) + ratio.reshape(-1, 1) * w_ratio  # [T, 64]
        preds = reference_recurrence(drive, w_ref, e0.reshape(EXP_DIM), cfg.ref_momentum)
    log.debug("Audio2Exp: %d frames, a_m=%g, l_exp=%g, blink=%s", len(mel), cfg.ref_momentum, cfg.exp_scale,
                 "given" if blink is not None else cfg.blink)
    return preds * cfg.exp_scale
