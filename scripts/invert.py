"""Invert one face photo into the StyleNeRF generator with PTI (projection + pivotal tuning).

Writes into --out:
    pivot.safetensors   ws [1, num_ws, w_dim] and bg_latent [1, z_dim_bg]
    generator/          the tuned generator (config.json + model.safetensors; stylenerf.io.load_generator)
    losses.json         loss history, steps, early stop, whether the cache answered

With --models (a model set of scripts.talk: smoke, auto or a weights directory) the photo is aligned, posed
and inverted exactly as `scripts.talk --identity pti` does, into the cache entry that talk then reuses (same
--seed and --preset-inversion). Without it the generator is --weights (or a random --preset one: smoke
output), the photo is used as given (or aligned with --align) and the camera comes from --angles.

Results are cached per face (image pixels, camera, generator weights, settings, seed) in the inversion folder
of the per-face cache (--cache-dir, default $NERFFS_CACHE/faces, the one scripts.talk uses), and an
interrupted run resumes from its last checkpoint when started again with the same arguments.

LPIPS needs torchvision's ImageNet trunks (python -m scripts.download_weights lpips_vgg16_backbone
lpips_alexnet_backbone). Without them a smoke run (no --weights, or --preset-inversion smoke) uses random
trunks with a warning (the loss is then not perceptual); a run with real --weights is refused with the fetch
command, since its result would be meaningless.

Examples:
    python -m scripts.invert --image photo.jpg --models auto --out outputs/inv
    python -m scripts.invert --image face.png --preset tiny --preset-inversion smoke --out outputs/inv_smoke
    python -m scripts.invert --image photo.jpg --align --weights ffhq_512.pkl --out outputs/inv
    python -m scripts.invert --image aligned.png --weights ffhq_512.pkl --angles 0.05,-0.2,0 --out outputs/inv
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nerffs.inversion.photo import InvertRequest, invert_photo
from nerffs.utils.cli import run_cli
from nerffs.utils.device import check_device


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.invert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", type=Path, required=True,
                   help="portrait photo with --models or --align, else an FFHQ-aligned face image")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--models", default=None, metavar="SET",
                   help="invert as scripts.talk --models SET does (smoke, auto or a weights directory), into the "
                        "cache entry talk reuses")
    p.add_argument("--generator", default=None, choices=["256", "512", "1024"],
                   help="with --models: the official StyleNeRF generator (default 512)")
    p.add_argument("--weights", type=Path, default=None,
                   help="StyleNeRF generator: official .pkl, converted directory or .safetensors")
    p.add_argument("--preset", default="tiny", help="generator preset with random weights when no --weights "
                   "(smoke output): tiny, ffhq256, ffhq512, ffhq1024")
    p.add_argument("--preset-inversion", default="official", choices=("official", "fast", "smoke"),
                   help="official: 1000 projection + 2000 tuning steps; fast: 300 + 400; smoke: a few steps")
    p.add_argument("--align", action="store_true", help="detect the face and FFHQ-align the photo first (dlib)")
    p.add_argument("--angles", default=None, help="Deep3D head angles 'pitch,yaw,roll' in radians (default frontal)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="per-face cache, as scripts.talk's (default $NERFFS_CACHE/faces); inversions go to its "
                        "'inversion' folder")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache (no resume)")
    p.add_argument("--seed", type=int, default=0, help="seed of the background-latent start and projection noise")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)

    def body() -> int:
        check_device(ns.device)
        print(invert_photo(InvertRequest(**vars(ns))).out)
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
