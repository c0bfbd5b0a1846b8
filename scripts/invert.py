"""Invert one aligned face photo into the StyleNeRF generator with PTI (projection + pivotal tuning).

Writes into --out:
    pivot.safetensors   ws [1, num_ws, w_dim] and bg_latent [1, z_dim_bg]
    generator/          the tuned generator (config.json + model.safetensors; stylenerf.io.load_generator)
    losses.json         loss history, steps, early stop, whether the cache answered

Results are cached per face (image pixels, camera, base weights, settings, seed) under --cache-dir, and an
interrupted run resumes from its last checkpoint when started again with the same arguments.

LPIPS needs torchvision's ImageNet trunks (python -m scripts.download_weights lpips_vgg16_backbone
lpips_alexnet_backbone). Without them a smoke run (no --weights, or --preset-inversion smoke) uses random
trunks with a warning (the loss is then not perceptual); a run with real --weights is refused with the fetch
command, since its result would be meaningless.

Examples:
    python -m scripts.invert --image face.png --preset tiny --preset-inversion smoke --out outputs/inv_smoke
    python -m scripts.invert --image photo.jpg --align --weights ffhq_512.pkl --out outputs/inv
    python -m scripts.invert --image aligned.png --weights ffhq_512.pkl --angles 0.05,-0.2,0 --out outputs/inv
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from nerffs.utils.cli import run_command

log = logging.getLogger("invert")


def default_cache_dir() -> Path:
    """``$NERFFS_CACHE/inversion`` (default ``~/.cache/nerffs/inversion``)."""
    return Path(os.environ.get("NERFFS_CACHE") or Path.home() / ".cache" / "nerffs").expanduser() / "inversion"


@dataclass
class InvertArgs:
    image: Path
    out: Path
    weights: Path | None = None
    preset: str = "tiny"
    preset_inversion: str = "official"
    align: bool = False
    angles: str | None = None
    cache_dir: Path | None = None
    no_cache: bool = False
    seed: int = 0
    device: str = "cpu"
    quiet: bool = False


def _load_generator(args: InvertArgs):
    """(generator, base-weights id) from --weights, or a random --preset generator (smoke output)."""
    from stylenerf import Generator, get_preset
    from nerffs.utils.io import file_sha256
    from stylenerf.io import load_generator

    if args.weights is None:
        log.warning("SMOKE OUTPUT: generator preset %r with random weights (no --weights given)", args.preset)
        torch.manual_seed(args.seed)
        return Generator(get_preset(args.preset)).eval().to(args.device), "random"
    g = load_generator(args.weights, device=args.device)
    hashed = args.weights / "model.safetensors" if args.weights.is_dir() else args.weights
    return g, file_sha256(hashed)


def _load_image(args: InvertArgs, resolution: int) -> torch.Tensor:
    """The photo as [1, 3, H, W] in [-1, 1], aligned first with --align."""
    from nerffs.preprocess.image import load_image, to_tensor

    if args.align:
        from nerffs.preprocess.align import AlignConfig, align_photo

        return to_tensor(align_photo(args.image, AlignConfig(output_size=resolution)).image)
    return to_tensor(load_image(args.image))


def _camera(args: InvertArgs) -> torch.Tensor:
    """[1, 4, 4] camera from Deep3D angles 'pitch,yaw,roll' (radians), frontal by default."""
    from nerffs.errors import InputError
    from nerffs.render.cameras import front_matrix

    if args.angles is None:
        return front_matrix(torch.zeros(1, 3))  # Deep3D angles 0, 0, 0: the photo faces the camera
    try:
        values = [float(v) for v in args.angles.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise InputError(f"--angles must be three comma-separated radians 'pitch,yaw,roll', got {args.angles!r}")
    return front_matrix(torch.tensor([values]))


def _check_lpips(args: InvertArgs, preset_allows_random: bool) -> bool:
    """Whether missing LPIPS trunks may be replaced by random ones: yes for smoke runs (no --weights: a random
    generator, or the smoke inversion preset), with a warning that the loss is not perceptual; with real
    weights a missing trunk is refused here, in one line with the fetch command, before anything loads."""
    from nerffs import weights
    from nerffs.errors import WeightsMissingError
    from nerffs.inversion.lpips import BACKBONE_ASSETS

    missing = weights.missing(BACKBONE_ASSETS.values())
    if not missing:
        return False
    if args.weights is None or preset_allows_random:
        log.warning("LPIPS backbones missing (%s): using RANDOM trunk weights, so the inversion loss is not "
                    "perceptual (fine for a smoke run; fetch them with `%s` for a real one)", ", ".join(missing),
                    weights.fetch_command(missing))
        return True
    files = ", ".join(str(weights.asset_path(n)) for n in missing)
    raise WeightsMissingError(f"PTI with real weights needs the LPIPS backbones: missing {files}; fetch them with "
                              f"`{weights.fetch_command(missing)}` (a smoke run without --weights, or "
                              "--preset-inversion smoke, uses random trunks instead)")


def invert_to_dir(args: InvertArgs) -> Path:
    """Load generator and photo, run ``nerffs.inversion.invert``, write the outputs. Returns ``args.out``."""
    from nerffs.inversion import get_preset, invert
    from nerffs.inversion.common import save_safetensors
    from nerffs.utils.io import atomic_write_text
    from stylenerf.io import save_generator

    from nerffs.errors import InputError, WeightsMissingError

    if args.image.is_dir():
        raise InputError(f"the image {args.image} is a directory; pass an image file")
    if not args.image.is_file():
        raise InputError(f"image {args.image} does not exist")
    if args.weights is not None and not args.weights.exists():
        raise WeightsMissingError(f"generator weights {args.weights} do not exist")
    cfg = get_preset(args.preset_inversion)
    allow_random = _check_lpips(args, cfg.allow_random_lpips)  # before the generator loads
    g, weights_id = _load_generator(args)
    image = _load_image(args, g.img_resolution)
    from nerffs.inversion.lpips import load_lpips_pair

    lpips = load_lpips_pair(None, allow_random=allow_random, device=args.device)
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    result = invert(g, image.to(args.device), _camera(args).to(args.device), cfg, cache_dir=cache_dir,
                    base_weights_id=weights_id, rng=torch.Generator().manual_seed(args.seed),
                    show_progress=not args.quiet, lpips=lpips)
    args.out.mkdir(parents=True, exist_ok=True)
    save_safetensors(args.out / "pivot.safetensors", {"ws": result.ws, "bg_latent": result.bg_latent})
    save_generator(g.cfg, result.generator_state, args.out / "generator")
    summary = {**result.losses, "from_cache": result.from_cache, "preset_inversion": args.preset_inversion}
    atomic_write_text(args.out / "losses.json", json.dumps(summary, indent=1) + "\n")
    return args.out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.invert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, required=True, help="FFHQ-aligned face image (or any photo with --align)")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--weights", type=Path, default=None,
                   help="StyleNeRF generator: official .pkl, converted directory or .safetensors")
    p.add_argument("--preset", default="tiny", help="generator preset with random weights when no --weights "
                   "(smoke output): tiny, ffhq256, ffhq512, ffhq1024")
    p.add_argument("--preset-inversion", default="official", choices=("official", "fast", "smoke"),
                   help="official: 1000 projection + 2000 tuning steps; fast: 300 + 400; smoke: a few steps")
    p.add_argument("--align", action="store_true", help="detect the face and FFHQ-align the photo first (dlib)")
    p.add_argument("--angles", default=None, help="Deep3D head angles 'pitch,yaw,roll' in radians (default frontal)")
    p.add_argument("--cache-dir", type=Path, default=None, help=f"per-face cache (default {default_cache_dir()})")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache (no resume)")
    p.add_argument("--seed", type=int, default=0, help="seed of the background-latent start and projection noise")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    def body() -> int:
        from nerffs.utils.device import check_device

        check_device(ns.device)
        print(invert_to_dir(InvertArgs(**vars(ns))))
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
