"""Typed settings of the PTI inversion (spec-pipeline.md section 6) with named presets.

``InversionConfig`` = ``ProjectionConfig`` (W projection with background latents) + ``TuningConfig`` (pivotal
tuning of the generator) + run settings (background freezing, LPIPS fallback, checkpoint cadence).
Presets (``get_preset``):

* ``official``: the values NeRFFaceSpeech runs with: 1000 projection steps, 2000 tuning steps, LPIPS-VGG at
  256x256 for projection, LPIPS-Alex at full resolution plus MSE for tuning, early stop at LPIPS 0.06.
* ``fast``: 300 projection / 400 tuning steps, the same schedules compressed proportionally (the schedules
  depend on ``step / num_steps``) and LPIPS-Alex for tuning at 256x256. Our choice, not from the paper: about
  a third of the official projection and a fifth of the tuning time, for previews; expect a looser fit.
* ``smoke``: a handful of steps and random LPIPS backbones when the ImageNet files are absent; for tests and
  the CPU smoke demo only (the results are not meaningful).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from torch_utils.registry import Registry

LpipsNet = Literal["vgg", "alex"]


@dataclass
class ProjectionConfig:
    """W-space projection of the target image (spec 6, "Projection")."""

    num_steps: int = 1000
    """Adam steps (NFS hard-codes 1000)."""
    w_avg_samples: int = 600
    """Number of z samples whose mapped w give the start ``w_avg`` and the spread ``w_std``."""
    w_avg_seed: int = 123
    """Seed of the numpy ``RandomState`` that draws those z (the spec's RandomState(123)); fixed, so the
    start point depends only on the generator."""
    initial_learning_rate: float = 0.01
    """Peak learning rate of the ramped schedule."""
    lr_rampup_length: float = 0.05
    """Fraction of the run over which the learning rate ramps up linearly from 0."""
    lr_rampdown_length: float = 0.25
    """Fraction of the run at the end over which the learning rate decays with a cosine to 0."""
    initial_noise_factor: float = 0.05
    """Noise added to w at step 0, in units of ``w_std``; decays quadratically."""
    noise_ramp_length: float = 0.75
    """Fraction of the run after which the w noise is 0."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas."""
    lpips_net: LpipsNet = "vgg"
    """Perceptual loss trunk (NFS: NVIDIA's VGG16 LPIPS features, i.e. LPIPS-VGG)."""
    lpips_resolution: int = 256
    """Images are area-downsampled to this side before LPIPS (never upsampled)."""
    optimize_bg: bool = True
    """Optimise the background latent jointly with w (NFS does); False keeps its random start."""


@dataclass
class TuningConfig:
    """Pivotal tuning of the generator around the projected pivot (spec 6, "Pivotal tuning")."""

    num_steps: int = 2000
    """Maximum Adam steps over all generator parameters (NFS tun_iter)."""
    learning_rate: float = 3e-4
    """Constant Adam learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)
    """Adam betas (PyTorch defaults, as NFS)."""
    l2_lambda: float = 1.0
    """Weight of the mean squared error."""
    lpips_lambda: float = 1.0
    """Weight of the LPIPS distance."""
    lpips_net: LpipsNet = "alex"
    """Perceptual loss trunk (NFS: lpips package, AlexNet)."""
    lpips_resolution: int | None = None
    """Side images are area-downsampled to before LPIPS; None = the generator resolution (NFS)."""
    lpips_threshold: float = 0.06
    """Stop as soon as the LPIPS term (before the backward pass of that step) is at or below this."""


@dataclass
class InversionConfig:
    """Everything that decides an inversion's result, plus the checkpoint cadence (which does not)."""

    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)
    freeze_bg: bool = True
    """Render the background from the fixed camera of spec-stylenerf 4.2 (NFS render_option 'freeze_bg')."""
    allow_random_lpips: bool = False
    """When an LPIPS ImageNet trunk file is absent, use random trunk weights (logged) instead of failing."""
    checkpoint_every: int = 100
    """Steps between resumable checkpoints when a cache directory is given (0 = never). Not part of the cache
    key: a run resumed from any checkpoint reaches the same result."""

    def __post_init__(self) -> None:
        p, t = self.projection, self.tuning
        if p.num_steps < 0 or t.num_steps < 0 or self.checkpoint_every < 0:
            raise ValueError("step counts and checkpoint_every must be >= 0")
        if min(p.lr_rampup_length, p.lr_rampdown_length, p.noise_ramp_length) <= 0:
            raise ValueError("projection ramp lengths must be > 0")
        if p.w_avg_samples < 2:
            raise ValueError(f"projection.w_avg_samples must be >= 2, got {p.w_avg_samples}")
        for net in (p.lpips_net, t.lpips_net):
            if net not in ("vgg", "alex"):
                raise ValueError(f"lpips_net must be 'vgg' or 'alex', got {net!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def result_settings(self) -> dict[str, Any]:
        """The fields that determine the result (for cache keys): everything but ``checkpoint_every``."""
        d = self.to_dict()
        d.pop("checkpoint_every")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InversionConfig:
        """Inverse of ``to_dict`` (unknown keys are an error)."""
        d = dict(d)
        proj = ProjectionConfig(**_tuples(d.pop("projection", {})))
        tune = TuningConfig(**_tuples(d.pop("tuning", {})))
        return cls(projection=proj, tuning=tune, **d)


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def official() -> InversionConfig:
    """NeRFFaceSpeech's settings (spec 6): 1000 projection + up to 2000 tuning steps."""
    return InversionConfig()


def fast() -> InversionConfig:
    """Preview quality: 300 projection + up to 400 tuning steps, tuning LPIPS at 256x256."""
    return InversionConfig(projection=ProjectionConfig(num_steps=300),
                           tuning=TuningConfig(num_steps=400, lpips_resolution=256), checkpoint_every=50)


def smoke() -> InversionConfig:
    """A handful of steps with random LPIPS trunks allowed: tests and the CPU smoke demo only."""
    return InversionConfig(projection=ProjectionConfig(num_steps=8, w_avg_samples=64),
                           tuning=TuningConfig(num_steps=6), allow_random_lpips=True, checkpoint_every=4)


PRESETS: Registry[InversionConfig] = Registry("inversion", {"official": official, "fast": fast, "smoke": smoke})


def get_preset(name: str) -> InversionConfig:
    """A fresh ``InversionConfig`` for ``official``, ``fast`` or ``smoke``.

    Raises:
        ValueError: an unknown name (the message lists the presets).
    """
    return PRESETS.get(name)
