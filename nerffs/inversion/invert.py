"""PTI inversion of an aligned photo: projection, pivotal tuning, per-face cache and resume (spec-pipeline 6).

``invert`` runs, in order:

1. check and resize the inputs;
2. look the result up in the per-face cache (``cache.py``) and return it when a verified entry exists;
3. load LPIPS-VGG (projection) and LPIPS-Alex (tuning) unless given;
4. resume from the entry's checkpoint if an earlier run was interrupted;
5. project (``projector.project``) on a private copy of the generator;
6. tune that copy (``pti.tune``);
7. store ws, background latent and tuned weights in the cache; return an ``InversionResult``.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nerffs.errors import InputError
from nerffs.inversion import cache as cache_mod
from nerffs.inversion.checkpoint import Checkpointer, StageState
from nerffs.inversion.common import device_of, resize_image
from nerffs.inversion.config import InversionConfig
from nerffs.inversion.lpips import LPIPS, load_lpips
from nerffs.inversion.projector import ProjectionResult, StepCallback, project
from nerffs.inversion.pti import tune
from nerffs.utils.cache import weights_fingerprint
from nerffs.utils.checkpoint import load_strict
from stylenerf import Generator

log = logging.getLogger(__name__)


@dataclass
class InversionResult:
    """Pivot, background latent and tuned weights of one face.

    Attributes:
        ws: [1, num_ws, w_dim] pivot.
        bg_latent: [1, z_dim_bg] background latent.
        generator_state: full state dict of the tuned generator (official names).
        losses: 'projection_lpips', 'tuning_mse', 'tuning_lpips', 'tuning_total' (per-step lists),
            'tuning_steps' and 'early_stopped'.
        from_cache: the result was read from the cache (no optimisation ran).
    """

    ws: torch.Tensor
    bg_latent: torch.Tensor
    generator_state: dict[str, torch.Tensor]
    losses: dict[str, Any] = field(default_factory=dict)
    from_cache: bool = False

    def apply(self, g: Generator) -> Generator:
        """A tuned copy of ``g`` (eval mode, no gradients) on ``g``'s device; ``g`` itself is untouched."""
        tuned = copy.deepcopy(g)
        load_strict(tuned, self.generator_state, what="tuned generator state")
        return tuned.eval().requires_grad_(False)


def check_inputs(g: Generator, image: torch.Tensor, cam2world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``image`` [1, 3, H, W] in [-1, 1] and ``cam2world`` [1, 4, 4]; resize the image to the generator.

    Returns:
        (image [1, 3, R, R] float32, cam2world [1, 4, 4] float32), both on the generator's device.
    """
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[:2] != (1, 3):
        raise InputError(f"image must be a [1, 3, H, W] tensor, got {getattr(image, 'shape', type(image))}")
    if not torch.is_floating_point(image) or not torch.isfinite(image).all():
        raise InputError("image must hold finite floating-point values in [-1, 1]")
    if image.min() < -1.01 or image.max() > 1.01:
        raise InputError(f"image values must lie in [-1, 1], got [{image.min():.3g}, {image.max():.3g}]")
    if not isinstance(cam2world, torch.Tensor) or cam2world.shape != (1, 4, 4):
        raise InputError(f"cam2world must be a [1, 4, 4] tensor, got {getattr(cam2world, 'shape', type(cam2world))}")
    res, device = g.img_resolution, device_of(g)
    image = image.detach().to(device, torch.float32).clamp(-1, 1)
    if image.shape[-2:] != (res, res):
        log.warning("resizing the %dx%d image to the generator resolution %d", image.shape[-2], image.shape[-1], res)
        image = resize_image(image, res)
    return image, cam2world.detach().to(device, torch.float32)


def _lpips_pair(lpips: LPIPS | Mapping[str, LPIPS] | None, cfg: InversionConfig,
                device: torch.device) -> tuple[LPIPS, LPIPS]:
    """(projection metric, tuning metric): given ones by net name, else loaded per the config."""
    given: dict[str, LPIPS] = {}
    if isinstance(lpips, LPIPS):
        given = {cfg.projection.lpips_net: lpips, cfg.tuning.lpips_net: lpips}
        if cfg.projection.lpips_net != cfg.tuning.lpips_net:
            log.info("one LPIPS-%s module given: used for both projection and tuning", lpips.net)
    elif lpips is not None:
        given = dict(lpips)
    out = []
    for net in (cfg.projection.lpips_net, cfg.tuning.lpips_net):
        if net not in given:
            given[net] = load_lpips(net, allow_random=cfg.allow_random_lpips, device=device)
        out.append(given[net].to(device))
    return out[0], out[1]


def invert(g: Generator, image: torch.Tensor, cam2world: torch.Tensor, cfg: InversionConfig, *,
           cache_dir: str | Path | None = None, rng: torch.Generator | None = None,
           lpips: LPIPS | Mapping[str, LPIPS] | None = None, show_progress: bool = True,
           callback: StepCallback | None = None) -> InversionResult:
    """Invert an aligned photo with PTI: W projection (+ background latent), then pivotal tuning.

    Args:
        g: base generator (left untouched; the tuning happens on a copy).
        image: [1, 3, H, W] aligned photo in [-1, 1]; resized to ``g.img_resolution`` when H, W differ.
        cam2world: [1, 4, 4] camera of the photo (e.g. ``nerffs.render.cameras.front_matrix`` of the Deep3D angles).
        cfg: inversion settings (``nerffs.inversion.config.get_preset``).
        cache_dir: folder of the inversion entries (``cache.inversion_dir()``, shared with the pipeline); None
            disables caching and resumable checkpoints. The base weights enter the key by their content
            (``nerffs.utils.cache.weights_fingerprint``), however ``g`` was loaded.
        rng: CPU generator for the background-latent start and the projection noise. It is read, not advanced
            (a cache hit and a fresh run leave it alike); None means seed 0.
        lpips: one LPIPS module for both stages, a mapping net name -> module, or None to load them.
        show_progress: tqdm bars with the losses.
        callback: called after every optimisation step with (stage, steps completed, losses).

    Returns:
        ``InversionResult`` (``from_cache`` tells whether any optimisation ran).
    """
    image, cam2world = check_inputs(g, image, cam2world)
    run_rng = torch.Generator()
    run_rng.set_state(rng.get_state() if rng is not None else torch.Generator().manual_seed(0).get_state())
    proj_lp, tune_lp = _lpips_pair(lpips, cfg, device_of(g))
    fields = cache_mod.cache_key_fields(g, image, cam2world, cfg.result_settings(),
                                        {"projection": weights_fingerprint(proj_lp),
                                         "tuning": weights_fingerprint(tune_lp)}, run_rng.get_state())
    key = cache_mod.cache_key(fields)
    directory = Path(cache_dir) / key if cache_dir is not None else None
    if directory is not None and (hit := cache_mod.load_result(directory, key, g)) is not None:
        log.info("inversion cache hit %s", directory)
        return InversionResult(hit.ws.to(image.device), hit.bg_latent.to(image.device), hit.generator_state,
                               hit.losses, from_cache=True)
    ckpt = Checkpointer(directory / cache_mod.CHECKPOINT_NAME, cfg.checkpoint_every) if directory else None
    result = _optimise(g, image, cam2world, cfg, (proj_lp, tune_lp), run_rng, ckpt, callback, show_progress)
    if directory is not None:
        cache_mod.store_result(directory, key, fields, result.ws, result.bg_latent, result.generator_state,
                               result.losses)
        log.info("inversion stored in %s", directory)
    return result


def _optimise(g: Generator, image: torch.Tensor, cam2world: torch.Tensor, cfg: InversionConfig,
              metrics: tuple[LPIPS, LPIPS], rng: torch.Generator, ckpt: Checkpointer | None,
              callback: StepCallback | None, show_progress: bool) -> InversionResult:
    """Steps 4-6 of ``invert``: resume, project, tune (on a private copy of ``g``)."""
    work = copy.deepcopy(g).eval()
    state = ckpt.load() if ckpt is not None else None
    if state is not None:
        log.info("resuming the inversion from its %s checkpoint at step %d", state.stage, state.step)
    if state is None or state.stage == "projection":
        proj = project(work, image, cam2world, cfg.projection, metrics[0], freeze_bg=cfg.freeze_bg, rng=rng,
                       resume=state, checkpointer=ckpt, callback=callback, show_progress=show_progress)
        state = None
    else:
        dev = image.device
        proj = ProjectionResult(state.variables["ws"].to(dev), state.variables["bg"].to(dev),
                                {"lpips": list(state.info["projection_lpips"])})
    if ckpt is not None:
        ckpt.context = {"ws": proj.ws, "bg": proj.bg_latent}
        ckpt.info = {"projection_lpips": proj.losses["lpips"]}
        if state is None and ckpt.every > 0:  # mark the projection done: an interruption in tuning keeps it
            ckpt.save(StageState("tuning", 0, {}))
    tuned = tune(work, image, proj.ws, proj.bg_latent, cam2world, cfg.tuning, metrics[1], freeze_bg=cfg.freeze_bg,
                 resume=state, checkpointer=ckpt, callback=callback, show_progress=show_progress)
    losses = {"projection_lpips": proj.losses["lpips"], **{f"tuning_{k}": v for k, v in tuned.losses.items()},
              "tuning_steps": tuned.steps, "early_stopped": tuned.early_stopped}
    state_dict = {k: v.detach().clone() for k, v in work.state_dict().items()}
    return InversionResult(proj.ws, proj.bg_latent, state_dict, losses, from_cache=False)
