"""Invert one photo file and write the results to a folder: the library function behind ``scripts.invert``.

Two ways to get the generator, the target and the camera:

* ``models`` (a model set of ``scripts.talk``: 'smoke', 'auto' or a weights directory): the photo is aligned
  and posed by the talking-head pipeline's own steps (``align``, ``input_pose``) and inverted with its
  generator, metrics and seed, so the result is the cache entry that ``scripts.talk --identity pti`` reuses.
  This module therefore sits above ``nerffs.pipeline``; ``nerffs.inversion`` does not import it.
* otherwise a bare generator: ``weights`` (an official ``.pkl``, a converted folder or ``.safetensors``) or,
  without weights, a random generator of ``preset`` (smoke output); the photo is used as it is (already
  aligned) or aligned with ``align``, and the camera comes from ``angles`` (frontal by default).

Either way the inversion cache is ``nerffs.inversion.cache.inversion_dir(cache_dir)``, the folder the pipeline
uses, and the outputs are ``pivot.safetensors`` (ws, bg_latent), ``generator/`` (``stylenerf.io`` format) and
``losses.json`` (loss history, steps, early stop, whether the cache answered).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nerffs import weights
from nerffs.errors import InputError, WeightsMissingError
from nerffs.inversion.cache import inversion_dir
from nerffs.inversion.config import InversionConfig, get_preset
from nerffs.inversion.invert import invert
from nerffs.inversion.lpips import BACKBONE_ASSETS, LPIPS, load_lpips_pair
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.preprocess.align import AlignConfig, align_photo
from nerffs.preprocess.image import load_image, to_tensor
from nerffs.render.cameras import front_matrix
from nerffs.utils.io import atomic_write_text, save_safetensors
from stylenerf import Generator, get_preset as generator_preset
from stylenerf.io import load_generator, save_generator

log = logging.getLogger(__name__)


@dataclass
class InvertRequest:
    """What ``invert_photo`` does (the fields are ``scripts.invert``'s options)."""

    image: Path
    """The photo: any portrait with ``models`` or ``align``, else an FFHQ-aligned face."""
    out: Path
    """Output folder."""
    models: str | None = None
    """A model set of ``scripts.talk`` ('smoke', 'auto', a weights directory): align, pose and invert as its PTI
    identity step does. None: a bare generator (``weights`` / ``preset``)."""
    generator: str | None = None
    """With ``models``: the official StyleNeRF file, 256, 512 or 1024 (``scripts.talk --generator``)."""
    weights: Path | None = None
    """Without ``models``: the generator file; None means a random ``preset`` generator (smoke output)."""
    preset: str = "tiny"
    """Generator preset of the random generator."""
    preset_inversion: str = "official"
    """Inversion preset: 'official', 'fast' or 'smoke'."""
    align: bool = False
    """Without ``models``: detect the face and align the photo first."""
    angles: str | None = None
    """Without ``models``: Deep3D head angles 'pitch,yaw,roll' in radians (None: frontal)."""
    cache_dir: Path | None = None
    """Per-face cache (None: ``$NERFFS_CACHE/faces``); inversions go to its ``inversion`` folder."""
    no_cache: bool = False
    """Neither read nor write the cache (no resume)."""
    seed: int = 0
    """Seed of the background-latent start and the projection noise (the talk call's seed)."""
    device: str = "cpu"
    quiet: bool = False
    """No progress bars."""


@dataclass
class PhotoInversion:
    """What ``invert_photo`` wrote and how it got it."""

    out: Path
    from_cache: bool
    """The result came from the cache (no optimisation ran)."""
    losses: dict[str, Any]


def invert_photo(req: InvertRequest) -> PhotoInversion:
    """Invert ``req.image`` with PTI (cached per face, resumable) and write the outputs to ``req.out``.

    Raises:
        InputError: a missing image, or options that do not go together.
        WeightsMissingError: missing generator weights, or LPIPS backbones for a run with real weights.
    """
    _check_request(req)
    cfg = get_preset(req.preset_inversion)
    if req.models is not None:
        g, image, cam, lpips = _from_model_set(req)
    else:
        g, image, cam, lpips = _from_generator(req, cfg)
    result = invert(g, image, cam, cfg, cache_dir=None if req.no_cache else inversion_dir(req.cache_dir),
                    rng=torch.Generator().manual_seed(req.seed), show_progress=not req.quiet, lpips=lpips)
    save_safetensors(req.out / "pivot.safetensors", {"ws": result.ws, "bg_latent": result.bg_latent})
    save_generator(g.cfg, result.generator_state, req.out / "generator")
    summary = {**result.losses, "from_cache": result.from_cache, "preset_inversion": req.preset_inversion}
    atomic_write_text(req.out / "losses.json", json.dumps(summary, indent=1) + "\n")
    return PhotoInversion(req.out, result.from_cache, result.losses)


def _check_request(req: InvertRequest) -> None:
    """One-line errors for what cannot work, before anything loads."""
    if req.image.is_dir():
        raise InputError(f"the image {req.image} is a directory; pass an image file")
    if not req.image.is_file():
        raise InputError(f"image {req.image} does not exist")
    if req.models is not None:
        bare = [name for name, used in (("--weights", req.weights is not None), ("--align", req.align),
                                        ("--angles", req.angles is not None)) if used]
        if bare:
            raise InputError(f"--models aligns and poses the photo as scripts.talk does; {', '.join(bare)} "
                             "applies to a bare generator (without --models)")
    elif req.weights is not None and not req.weights.exists():
        raise WeightsMissingError(f"generator weights {req.weights} do not exist")


def _from_model_set(req: InvertRequest) -> tuple[Generator, torch.Tensor, torch.Tensor, Mapping[str, LPIPS] | None]:
    """Generator, target [1, 3, R, R], camera [1, 4, 4] and LPIPS exactly as the pipeline's PTI identity step
    gets them, so the cache key is the one ``scripts.talk`` looks up."""
    pipe = TalkingHeadPipeline.from_pretrained(req.models, device=req.device, generator=req.generator)
    if pipe.models.talking is None:
        raise InputError(f"the {pipe.models.label} models fit each photo instead of inverting it; PTI needs the "
                         "official weights or --models smoke")
    call = pipe.call({"cache": not req.no_cache, "cache_dir": None if req.cache_dir is None else str(req.cache_dir)},
                     seed=req.seed)
    _, aligned = pipe.align(req.image, call=call)
    root = pipe.models.weights_root  # official sets: the LPIPS backbones of their weights directory
    lpips = None if root is None else load_lpips_pair(root, device=req.device)
    return pipe.models.talking.generator, to_tensor(aligned.image, pipe.device), pipe.input_pose(aligned), lpips


def _from_generator(req: InvertRequest, cfg: InversionConfig
                    ) -> tuple[Generator, torch.Tensor, torch.Tensor, Mapping[str, LPIPS]]:
    """A bare generator with the photo as given (or aligned) and the camera of ``req.angles``."""
    allow_random = _check_lpips(req, cfg.allow_random_lpips)  # before the generator loads
    camera = _camera(req.angles)
    if req.weights is None:
        log.warning("SMOKE OUTPUT: generator preset %r with random weights (no --weights given)", req.preset)
        torch.manual_seed(req.seed)
        g = Generator(generator_preset(req.preset)).eval().to(req.device)
    else:
        g = load_generator(req.weights, device=req.device)
    if req.align:
        image = to_tensor(align_photo(req.image, AlignConfig(output_size=g.img_resolution)).image)
    else:
        image = to_tensor(load_image(req.image))
    lpips = load_lpips_pair(None, allow_random=allow_random, device=req.device)
    return g, image.to(req.device), camera.to(req.device), lpips


def _camera(angles: str | None) -> torch.Tensor:
    """[1, 4, 4] camera from Deep3D angles 'pitch,yaw,roll' (radians), frontal by default."""
    if angles is None:
        return front_matrix(torch.zeros(1, 3))  # Deep3D angles 0, 0, 0: the photo faces the camera
    try:
        values = [float(v) for v in angles.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise InputError(f"--angles must be three comma-separated radians 'pitch,yaw,roll', got {angles!r}")
    return front_matrix(torch.tensor([values]))


def _check_lpips(req: InvertRequest, preset_allows_random: bool) -> bool:
    """Whether missing LPIPS trunks may be replaced by random ones: yes for smoke runs (no weights: a random
    generator, or the smoke inversion preset), with a warning that the loss is not perceptual; with real
    weights a missing trunk is refused here, in one line with the fetch command, before anything loads."""
    missing = weights.missing(BACKBONE_ASSETS.values())
    if not missing:
        return False
    if req.weights is None or preset_allows_random:
        log.warning("LPIPS backbones missing (%s): using RANDOM trunk weights, so the inversion loss is not "
                       "perceptual (fine for a smoke run; fetch them with `%s` for a real one)", ", ".join(missing),
                       weights.fetch_command(missing))
        return True
    files = ", ".join(str(weights.asset_path(n)) for n in missing)
    raise WeightsMissingError(f"PTI with real weights needs the LPIPS backbones: missing {files}; fetch them with "
                              f"`{weights.fetch_command(missing)}` (a smoke run without --weights, or "
                              "--preset-inversion smoke, uses random trunks instead)")
