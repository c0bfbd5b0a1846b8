"""Typed configuration of the talking-head pipeline, composed of one dataclass per stage, with named presets.

``PipelineConfig`` = ``AudioConfig`` (audio front end, momentum a_m, scale l_exp) + ``LoopConfig`` (control
points, deformation mode, mask window n, blending, batch) + ``FitConfig`` (3DMM landmark fit) +
``IdentityConfig`` (where the identity comes from) + ``RenderConfig`` (camera, video, provenance) +
``MotionConfig`` (head motion: pose source, scale, deformation or camera).
Presets: ``official`` (paper defaults), ``offline`` (for the offline demo models: random blinks, 4 frames per
call, short fit) and ``smoke`` (for the random smoke models: small blending resolution, short fit).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from nerffs.audio.config import AudioConfig
from nerffs.face3d.fit import FitConfig
from nerffs.talking.headpose import MotionConfig
from nerffs.talking.loop import LoopConfig
from torch_utils.registry import Registry


@dataclass
class IdentityConfig:
    """Where the identity latent comes from."""

    source: str = "auto"
    """'pti' (invert the photo), 'sample' (a seeded latent, the official 'from z' mode), or 'auto' (pti when
    the inversion module and its LPIPS weights are available, else sample)."""
    inversion_preset: str = "official"
    """Preset of the inversion (official: 1000 projection + 2000 tuning steps)."""
    truncation_psi: float = 0.7
    """Truncation of a sampled latent (official README: 0.7)."""
    cache: bool = True
    """Reuse per-face results (alignment, reference render + 3DMM fit) keyed by image content and settings."""
    cache_dir: str | None = None
    """Where per-face results go; None = ``$NERFFS_CACHE/faces`` (default ``~/.cache/nerffs/faces``)."""
    face_index: int | None = None
    """Which face of the photo to animate, in the detector's ranking (0 = the best: confident, large, frontal;
    ``nerffs.preprocess.faces``); None takes face 0 and warns when the photo holds several faces."""


@dataclass
class RenderConfig:
    """Camera path, video encoding and provenance."""

    camera: str = "input"
    """Camera spec: 'input', 'fixed:yaw=..,pitch=..', 'orbit:yaw=..,pitch=..,period=..', 'keyframes:t:yaw:pitch;..',
    'driving:PATH' (see nerffs.render.cameras.CameraSpec.parse)."""
    expression: str = "audio"
    """Where the per-frame expression comes from: 'audio' (Audio2Exp) or 'driving' (the Deep3D expression of
    each driving frame; needs camera 'driving:PATH'; the video then has the driving clip's length)."""
    paste_back: bool = False
    """Paste the rendered face back into the original photo (inverse alignment, feathered)."""
    watermark: bool = False
    """Draw a visible 'synthetic' mark on every frame (the file metadata always says synthetic)."""
    watermark_text: str = "synthetic"
    quality: int = 8
    """H.264 quality 0-10 (imageio-ffmpeg scale)."""
    frames_dir: str | None = None
    """Also keep every frame as PNG here (needed for --resume), with the job's manifest (``job.json``)."""
    resume: bool = False
    """Continue from the frames already in ``frames_dir``; refused when they were made by another job (other
    inputs, settings or models: ``nerffs.render.manifest``)."""
    restart: bool = False
    """Discard the frames (and manifest) already in ``frames_dir`` and start over."""
    max_size: int | None = 1920
    """Longest side of pasted-back frames: a larger photo is scaled down before pasting and encoding (players
    and H.264 levels stop around 4K); None keeps the photo's size."""
    save_coefficients: str | None = None
    """Also write the animation to this ``.npz``: exp [T, 64], cams [T, 4, 4], fps, pose [T, 3] (when the head
    moves) and, with ``save_control_points``, the driven control points [T, N, 2]."""
    save_control_points: bool = False
    """Add the driven control points to ``save_coefficients`` (N is thousands of points per frame)."""
    preview_sheet: bool = False
    """Also write a contact sheet (frames + an orbit of the identity) beside the video: ``NAME_sheet.png``."""

    def __post_init__(self) -> None:
        if self.expression not in ("audio", "driving"):
            raise ValueError(f"expression must be 'audio' or 'driving', got {self.expression!r}")
        if self.expression == "driving" and not self.camera.startswith("driving:"):
            raise ValueError("expression 'driving' needs a driving clip: camera 'driving:FOLDER_OR_VIDEO'")


@dataclass
class PipelineConfig:
    """All options of ``TalkingHeadPipeline``."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)

    def replace(self, **overrides) -> "PipelineConfig":
        """A copy with flat overrides routed to the stage that owns them, e.g. ``exp_scale=1.2, camera='orbit'``.

        Raises:
            ValueError: an unknown option name.
        """
        parts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        grouped: dict[str, dict] = {}
        for key, value in overrides.items():
            owners = [name for name, part in parts.items() if key in {f.name for f in dataclasses.fields(part)}]
            if not owners:
                raise ValueError(f"unknown pipeline option {key!r}")
            grouped.setdefault(owners[0], {})[key] = value
        for name, values in grouped.items():  # all of a stage's options at once, so checks see them together
            parts[name] = dataclasses.replace(parts[name], **values)
        return PipelineConfig(**parts)


PRESETS: Registry[PipelineConfig] = Registry("pipeline", {"official": PipelineConfig})
"""The pipeline presets; ``ModelSet.source`` names the one that suits a model set."""


@PRESETS.register("smoke")
def _smoke() -> PipelineConfig:
    """For the random smoke models: small blending resolution, 8 frames per call, short fit, sampled identity."""
    cfg = PipelineConfig()
    cfg.loop = LoopConfig(blend_size=128, batch_size=8)
    cfg.fit = FitConfig.preset("fast")
    cfg.identity = IdentityConfig(source="sample")
    return cfg


@PRESETS.register("offline")
def _offline() -> PipelineConfig:
    """For the offline demo models: their field renders in milliseconds, so frames go 4 per call; blinks and
    speech-driven head motion (turned by deformation, body still) on."""
    cfg = PipelineConfig()
    cfg.audio = AudioConfig(blink="random")
    cfg.motion = MotionConfig(pose="audio")
    cfg.loop = LoopConfig(batch_size=4)
    cfg.fit = FitConfig.preset("fast")
    return cfg


def get_config(name: str) -> PipelineConfig:
    """A fresh config of a named preset: 'official', 'smoke' or 'offline'.

    Raises:
        ValueError: an unknown name (the message lists the presets).
    """
    return PRESETS.get(name)
