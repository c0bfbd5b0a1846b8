"""The offline set's expression driver (in place of Audio2Exp): speech -> expression coefficients per frame.

Mouth articulation comes from :func:`nerffs.offline.visemes.mouth_curves` (pocketsphinx phones, forced
alignment when the transcript is known, coarticulated; an energy driver when no phones come out). The method's
options keep their roles:

* ``exp_scale`` (l_exp) scales the articulation like Audio2Exp's output; the curves are stored at
  ``1 / DEFAULT_EXP_SCALE`` of their natural amplitude, so the default 1.5 gives natural motion;
* ``ref_momentum`` (a_m) sets the frame-to-frame inertia: ``pred_i = (1 - a_m / 2) c_i + (a_m / 2) pred_{i-1}``
  (Audio2Exp feeds a_m of its previous prediction back through its reference input; here that feedback is an
  exponential smoothing, 0 = none);
* ``blink`` ('random', seeded by the call's generator) closes the eyelids through the ``blink`` channel at the
  blink ratio itself (not scaled by l_exp).

The output is absolute (0 = closed, relaxed mouth), so the reference expression is not needed: silence closes
the mouth whatever the photo showed.
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
from scipy.signal import lfilter
from torch import nn

from nerffs.audio.config import AudioConfig
from nerffs.audio.expression import blink_sequence
from nerffs.offline.geometry import EXP_CHANNELS
from nerffs.offline.visemes import CHANNELS, VisemeConfig, mouth_curves

log = logging.getLogger(__name__)

EXP_DIM = 64
DEFAULT_EXP_SCALE = 1.5
BLINK = EXP_CHANNELS.index("blink")


class SpeechMotion(nn.Module):
    """``expressions(wave, num_frames, cfg, ...) -> exp [T, 64]`` for the offline face model's channels."""

    def __init__(self, visemes: VisemeConfig | None = None) -> None:
        super().__init__()
        self.visemes = visemes or VisemeConfig()
        self.columns = [EXP_CHANNELS.index(name) for name in CHANNELS]
        self.last_source: str | None = None

    def expressions(self, wave: np.ndarray, num_frames: int, cfg: AudioConfig, *, transcript: str | None = None,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """Expression coefficients of every video frame.

        Args:
            wave: [L] float32 mono at ``cfg.sample_rate``.
            num_frames: T (the mel-window count of the same audio).
            cfg: fps, l_exp, a_m and blink options.
            transcript: the words spoken, when known (forced alignment instead of phone recognition).
            generator: randomness of the blinks.

        Returns:
            [T, 64] float32.
        """
        vis = dataclasses.replace(self.visemes, fps=cfg.fps)
        curves, self.last_source = mouth_curves(wave, cfg.sample_rate, num_frames, transcript, vis)
        mu = 0.5 * cfg.ref_momentum
        smoothed = lfilter([1.0 - mu], [1.0, -mu], curves.astype(np.float64), axis=0) if len(curves) else curves
        exp = np.zeros((num_frames, EXP_DIM), np.float32)
        exp[:, self.columns] = cfg.exp_scale / DEFAULT_EXP_SCALE * smoothed
        exp[:, BLINK] = blink_sequence(num_frames, cfg, generator).numpy()
        return torch.from_numpy(exp)
