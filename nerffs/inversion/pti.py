"""Pivotal tuning of the generator around the projected pivot (spec-pipeline.md section 6, "Pivotal tuning").

Second half of Pivotal Tuning Inversion (Roich et al., 2021): with the pivot ``ws`` and background latent
fixed, Adam updates every generator parameter to minimise

    loss = l2_lambda * MSE(img, target) + lpips_lambda * LPIPS_alex(img, target)

on the image rendered at the photo's camera with the frozen background. The run stops early as soon as the
LPIPS term of a step, evaluated before that step's backward pass, is at or below ``lpips_threshold`` (0.06).
No locality regulariser (NFS leaves it off).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nerffs.inversion.checkpoint import Checkpointer, StageState
from nerffs.inversion.common import area_downsample, loss_bar, render
from nerffs.inversion.config import TuningConfig
from nerffs.inversion.lpips import LPIPS
from nerffs.inversion.projector import StepCallback
from stylenerf import Generator


@dataclass
class TuningResult:
    """Outcome of ``tune``.

    Attributes:
        steps: optimisation steps taken (< ``num_steps`` after an early stop).
        early_stopped: the LPIPS threshold was reached.
        losses: per-evaluated-step 'mse', 'lpips' and weighted 'total' (the last entry of an early-stopped run
            is the evaluation that met the threshold and had no update).
    """

    steps: int
    early_stopped: bool
    losses: dict[str, list[float]]


def tune(g: Generator, target: torch.Tensor, ws: torch.Tensor, bg_latent: torch.Tensor, cam2world: torch.Tensor,
         cfg: TuningConfig, lpips: LPIPS, *, freeze_bg: bool = True, resume: StageState | None = None,
         checkpointer: Checkpointer | None = None, callback: StepCallback | None = None,
         show_progress: bool = True) -> TuningResult:
    """Tune ``g`` in place so that it renders ``target`` from the pivot.

    Args:
        g: the generator to tune (a copy owned by the caller); all its parameters are set trainable.
        target: [1, 3, R, R] in [-1, 1].
        ws: [1, num_ws, w_dim] pivot (fixed).
        bg_latent: [1, z_dim_bg] background latent (fixed).
        cam2world: [1, 4, 4] camera of the photo.
        cfg: steps, learning rate, loss weights, early-stop threshold.
        lpips: the perceptual metric (``cfg.lpips_net``) on the generator's device.
        freeze_bg: render the background from the fixed camera.
        resume: a saved tuning state (parameters ``g.<name>`` and Adam state) to continue from.
        checkpointer: receives a snapshot every ``checkpointer.every`` steps.
        callback: called after each optimisation step.
        show_progress: tqdm bar with the MSE and LPIPS losses.

    Returns:
        ``TuningResult``; the tuned weights are ``g.state_dict()``.
    """
    g.requires_grad_(True)
    opt = torch.optim.Adam(g.parameters(), lr=cfg.learning_rate, betas=cfg.betas)
    start, history = 0, {"mse": [], "lpips": [], "total": []}
    if resume is not None and resume.step > 0:
        _restore(g, opt, resume)
        start, history = resume.step, {k: list(v) for k, v in resume.losses.items()}
    with torch.no_grad():
        target_feats = lpips.layer_features(area_downsample(target, cfg.lpips_resolution))
    step, early = start, False
    with loss_bar(cfg.num_steps, start, "pivotal tuning", show_progress) as bar:
        for step in range(start, cfg.num_steps):
            img = render(g, ws, cam2world, bg_latent, freeze_bg)
            mse = F.mse_loss(img, target)
            lp = lpips.distance(area_downsample(img, cfg.lpips_resolution), target_feats).sum()
            total = cfg.l2_lambda * mse + cfg.lpips_lambda * lp
            for name, value in (("mse", mse), ("lpips", lp), ("total", total)):
                history[name].append(value.item())
            if history["lpips"][-1] <= cfg.lpips_threshold:  # checked before the backward pass (spec 6)
                early = True
                break
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            bar.update(mse=history["mse"][-1], lpips=history["lpips"][-1])
            if callback is not None:
                callback("tuning", step + 1, {k: v[-1] for k, v in history.items()})
            if checkpointer is not None and checkpointer.due(step + 1, cfg.num_steps):
                params = {f"g.{n}": p.detach() for n, p in g.named_parameters()}
                checkpointer.save(StageState("tuning", step + 1, params, opt.state_dict(), None, history))
        else:
            step = cfg.num_steps
    g.requires_grad_(False)
    return TuningResult(steps=step, early_stopped=early, losses=history)


def _restore(g: Generator, opt: torch.optim.Optimizer, state: StageState) -> None:
    """Load the snapshot's parameters and Adam state into ``g`` and ``opt``."""
    params = dict(g.named_parameters())
    saved = {k[2:]: v for k, v in state.variables.items() if k.startswith("g.")}
    if set(saved) != set(params) or state.optimizer is None:
        raise ValueError("tuning checkpoint does not match the generator")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    opt.load_state_dict(state.optimizer)
