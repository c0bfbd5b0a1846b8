"""What one pipeline call carries: its resolved settings (``Call``), its speech, and its result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from nerffs.config import PipelineConfig
from nerffs.progress import Reporter
from nerffs.render.cameras import CameraSpec


@dataclass
class TalkingHeadOutput:
    """Result of one run: the video path and the per-frame inputs that produced it.

    exp [T, 64]; cams [T, 4, 4]; ws [1, num_ws, w_dim]; timings: seconds per step.
    """

    video: Path
    num_frames: int
    fps: float
    exp: torch.Tensor
    cams: torch.Tensor
    ws: torch.Tensor
    weights: str
    """The model set: 'official:<dir>', 'offline' or 'smoke'."""
    timings: dict[str, float] = field(default_factory=dict)
    pose: torch.Tensor | None = None
    """[T, 3] head pose offsets (pitch, yaw, roll; radians) when the head moved, else None."""
    coefficients: Path | None = None
    """The animation ``.npz`` when ``save_coefficients`` was given (``nerffs.render.coefficients``)."""


@dataclass(frozen=True)
class Call:
    """Everything one call decides, resolved once at its start and handed to each step: the checked config
    (the pipeline's with the call's options), its camera spec (parsed once), the seed and the progress reporter.
    The pipeline object itself never changes during a call, so one pipeline can serve several threads."""

    config: PipelineConfig
    camera: CameraSpec
    seed: int = 0
    report: Reporter = field(default_factory=Reporter)
    show_progress: bool = False
    """Inner progress bars (3DMM fit, PTI) on the console; the step bars come from ``ConsoleProgress``."""


@dataclass
class Speech:
    """The audio of one call: wave [L] float32 at the config's sample rate, mel windows [T, 80, 16] and the
    words spoken when known (the offline driver force-aligns them)."""

    wave: np.ndarray
    mel: np.ndarray
    transcript: str | None = None
