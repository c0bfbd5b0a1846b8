"""Render a StyleNeRF identity from an orbit of viewpoints: an mp4, and optionally PNG stills.

Examples:
    python -m scripts.render_views --preset tiny --out outputs/smoke_views.mp4      # random smoke weights
    python -m scripts.render_views --weights ffhq_512.pkl --seed 3 --trunc 0.7 --out views.mp4
    python -m scripts.render_views --weights ffhq_512.pkl --frames 8 --stills stills/ --out views.mp4
    python -m scripts.render_views --talking photo.jpg speech.wav --out talk_orbit.mp4   # a talking orbit
    python -m scripts.render_views --image photo.jpg --out photo_orbit.mp4               # orbit of a photo

--talking runs the talking-head pipeline (scripts.talk) with an orbiting camera; --camera takes any
camera spec of scripts.talk (e.g. keyframes) instead of the default orbit. --image renders the identity of a
photo (the pipeline's identity step: the offline fit, or PTI / a sampled latent with official weights).
Both use --models (auto: official weights if complete, else the offline demo models).
Thin CLI over ``nerffs.orbit_video.render_orbit_video``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerffs.orbit_video import DEFAULT_CAMERA, OrbitVideoRequest, render_orbit_video
from nerffs.utils.cli import run_cli
from stylenerf.config import PRESETS as GENERATOR_PRESETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.render_views", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output .mp4 path (written atomically)")
    p.add_argument("--preset", default="tiny", help=f"generator preset when no --weights: "
                   f"{', '.join(GENERATOR_PRESETS.names())} (default tiny; random weights: smoke output)")
    p.add_argument("--weights", type=Path, default=None,
                   help="official StyleNeRF .pkl or a converted directory (config.json + model.safetensors)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent z and the background latent")
    p.add_argument("--trunc", type=float, default=0.7, help="truncation psi (1 = none)")
    p.add_argument("--frames", type=int, default=48, help="frames in the orbit")
    p.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    p.add_argument("--batch", type=int, default=4, help="views per generator call")
    p.add_argument("--stills", type=Path, default=None, help="also save every view as a PNG in this folder")
    p.add_argument("--talking", nargs=2, type=Path, metavar=("IMAGE", "AUDIO"), default=None,
                   help="render a talking head from IMAGE and AUDIO with a moving camera instead")
    p.add_argument("--camera", default=DEFAULT_CAMERA,
                   help="camera spec for --talking (see python -m scripts.talk --help)")
    p.add_argument("--image", type=Path, default=None, help="render the identity of this photo instead")
    p.add_argument("--models", default=None, metavar="SET",
                   help="model set for --talking / --image: auto (default), offline, smoke or a weights directory")
    return p


def main(argv: list[str] | None = None) -> int:
    request = OrbitVideoRequest(**vars(build_parser().parse_args(argv)))
    return run_cli(lambda: print(render_orbit_video(request)))


if __name__ == "__main__":
    sys.exit(main())
