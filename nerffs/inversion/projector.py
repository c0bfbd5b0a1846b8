"""W projection of an aligned photo into a StyleNeRF generator (spec-pipeline.md section 6, "Projection").

The first half of Pivotal Tuning Inversion (Roich et al., "Pivotal Tuning for Latent-based Editing of Real
Images", 2021) as NeRFFaceSpeech runs it, which follows the StyleGAN2 projector (Karras et al., CVPR 2020,
appendix D):

* one w vector (repeated to all ``num_ws`` slots) starts at ``w_avg``, the mean of mapped seeded z samples;
  ``w_std`` is their RMS distance to it;
* the background latent (``z_dim_bg``, randn from ``rng``) is optimised jointly (NFS optimises the four
  ``latent_codes``; only the background-shape code reaches the image in this generator, spec-stylenerf 1.5);
* every step adds Gaussian noise of scale ``w_std * f0 * max(0, 1 - t / ramp)^2`` to w, with ``t`` the run
  fraction, and sets the Adam learning rate to ``lr0 * rampdown(t) * rampup(t)``
  (``rampdown = 0.5 - 0.5 cos(pi * min(1, (1 - t) / L_down))``, ``rampup = min(1, t / L_up)``);
* the loss is LPIPS (VGG) at 256x256 between the target and the image rendered at the photo's camera with the
  background frozen. The StyleGAN2 noise-map regulariser has nothing to act on: this generator has no noise
  inputs (``use_noise`` is off in the released checkpoints, spec-stylenerf 7.2).

The generator is left untouched (its parameters get no gradients).
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from nerffs.inversion.checkpoint import Checkpointer, StageState
from nerffs.inversion.common import area_downsample, device_of, loss_bar, render
from nerffs.inversion.config import ProjectionConfig
from nerffs.inversion.lpips import LPIPS
from stylenerf import Generator

StepCallback = Callable[[str, int, dict[str, float]], None]
"""Called after every optimisation step with (stage, steps completed, losses of that step)."""


@dataclass
class ProjectionResult:
    """Pivot found by ``project``.

    Attributes:
        ws: [1, num_ws, w_dim] the pivot (one w repeated), without the exploration noise.
        bg_latent: [1, z_dim_bg] optimised background latent.
        losses: {'lpips': per-step LPIPS of the noisy w}.
    """

    ws: torch.Tensor
    bg_latent: torch.Tensor
    losses: dict[str, list[float]]


def w_statistics(g: Generator, num_samples: int, seed: int) -> tuple[torch.Tensor, float]:
    """Mean and spread of W: ``w_avg`` [1, 1, w_dim] and the scalar ``w_std`` (spec 6).

    z ~ numpy ``RandomState(seed).randn(num_samples, z_dim)``, mapped without truncation; the first style of
    each sample is used. ``w_std = sqrt(sum ||w - w_avg||^2 / num_samples)``.
    """
    z = np.random.RandomState(seed).randn(num_samples, g.z_dim).astype(np.float32)
    with torch.no_grad():
        w = g.mapping(torch.from_numpy(z).to(device_of(g)), truncation_psi=1.0)[:, :1, :].float()
    w_avg = w.mean(dim=0, keepdim=True)
    w_std = ((w - w_avg).square().sum() / num_samples).sqrt().item()
    return w_avg, w_std


def learning_rate(cfg: ProjectionConfig, t: float) -> float:
    """Learning rate at run fraction ``t`` in [0, 1): cosine ramp-down at the end, linear ramp-up at the start."""
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp = ramp * min(1.0, t / cfg.lr_rampup_length)
    return cfg.initial_learning_rate * ramp


def noise_strength(cfg: ProjectionConfig, w_std: float, t: float) -> float:
    """Std of the Gaussian noise added to w at run fraction ``t``: quadratic decay to 0 at ``noise_ramp_length``."""
    return w_std * cfg.initial_noise_factor * max(0.0, 1.0 - t / cfg.noise_ramp_length) ** 2


def _start_state(g: Generator, w_avg: torch.Tensor, rng: torch.Generator) -> StageState:
    """Step-0 state: w at ``w_avg`` [1, 1, w_dim], background latent ~ N(0, 1) drawn from ``rng``."""
    bg = torch.randn(1, g.cfg.nerf.z_dim_bg, generator=rng)
    return StageState("projection", 0, {"w_opt": w_avg.cpu(), "bg": bg}, rng_state=rng.get_state())


def project(g: Generator, target: torch.Tensor, cam2world: torch.Tensor, cfg: ProjectionConfig, lpips: LPIPS, *,
            freeze_bg: bool = True, rng: torch.Generator | None = None, resume: StageState | None = None,
            checkpointer: Checkpointer | None = None, callback: StepCallback | None = None,
            show_progress: bool = True) -> ProjectionResult:
    """Find the W pivot and background latent that reproduce ``target`` at ``cam2world``.

    Args:
        g: generator (not modified; its parameters receive no gradients).
        target: [1, 3, R, R] in [-1, 1], R = ``g.img_resolution``.
        cam2world: [1, 4, 4] camera of the photo.
        cfg: schedule and loss settings.
        lpips: the perceptual metric (``cfg.lpips_net``), on the generator's device.
        freeze_bg: render the background from the fixed camera (NFS default).
        rng: CPU generator for the background start and the w noise (advanced by this call); None = seed 0.
        resume: a saved projection state to continue from (its RNG state replaces ``rng``'s).
        checkpointer: receives a snapshot every ``checkpointer.every`` steps.
        callback: called after each step.
        show_progress: tqdm bar with the LPIPS loss.

    Returns:
        ``ProjectionResult`` with ``ws`` [1, num_ws, w_dim] and ``bg_latent`` [1, z_dim_bg] (detached, on the
        generator's device).
    """
    rng = torch.Generator().manual_seed(0) if rng is None else rng
    device, res = device_of(g), cfg.lpips_resolution
    w_avg, w_std = w_statistics(g, cfg.w_avg_samples, cfg.w_avg_seed)
    state = resume if resume is not None else _start_state(g, w_avg, rng)
    if state.rng_state is not None:
        rng.set_state(state.rng_state)
    w_opt = state.variables["w_opt"].to(device).clone().requires_grad_(True)
    bg = state.variables["bg"].to(device).clone().requires_grad_(cfg.optimize_bg)
    opt = torch.optim.Adam([w_opt, bg] if cfg.optimize_bg else [w_opt], betas=cfg.betas, lr=cfg.initial_learning_rate)
    if state.optimizer is not None:
        opt.load_state_dict(state.optimizer)
    history = {k: list(v) for k, v in state.losses.items()} or {"lpips": []}
    with torch.no_grad():
        target_feats = lpips.layer_features(area_downsample(target.to(device), res))
    with _frozen(g), loss_bar(cfg.num_steps, state.step, "projection", show_progress) as bar:
        for step in range(state.step, cfg.num_steps):
            t = step / cfg.num_steps
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, t)
            noise = torch.randn(w_opt.shape, generator=rng).to(device) * noise_strength(cfg, w_std, t)
            ws = (w_opt + noise).repeat(1, g.num_ws, 1)
            img = render(g, ws, cam2world, bg, freeze_bg)
            loss = lpips.distance(area_downsample(img, res), target_feats).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history["lpips"].append(loss.item())
            bar.update(lpips=history["lpips"][-1])
            if callback is not None:
                callback("projection", step + 1, {"lpips": history["lpips"][-1]})
            if checkpointer is not None and checkpointer.due(step + 1, cfg.num_steps):
                checkpointer.save(StageState("projection", step + 1, {"w_opt": w_opt.detach(), "bg": bg.detach()},
                                             opt.state_dict(), rng.get_state(), history))
    return ProjectionResult(ws=w_opt.detach().repeat(1, g.num_ws, 1), bg_latent=bg.detach(), losses=history)


@contextlib.contextmanager
def _frozen(g: torch.nn.Module) -> Iterator[None]:
    """Inside, the generator's parameters do not require grad (no weight gradients); flags restored on exit."""
    flags = [p.requires_grad for p in g.parameters()]
    g.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(g.parameters(), flags):
            p.requires_grad_(flag)
