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
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger("render_views")


@dataclass
class RenderViewsArgs:
    out: Path
    preset: str = "tiny"
    weights: Path | None = None
    seed: int = 0
    trunc: float = 0.7
    frames: int = 48
    fps: float = 25.0
    batch: int = 4
    stills: Path | None = None


def render_views_to_file(args: RenderViewsArgs) -> Path:
    """Load (or randomly initialise) a generator, render the orbit, encode the mp4. Returns the path."""
    from nerffs.render.video import write_video
    from nerffs.render.views import OrbitConfig, orbit_cameras, render_views
    from stylenerf import Generator, get_preset

    torch.manual_seed(args.seed)
    if args.weights is not None:
        from stylenerf.io import load_generator

        g = load_generator(args.weights)
        log.info("loaded generator from %s", args.weights)
    else:
        g = Generator(get_preset(args.preset)).eval()
        log.warning("SMOKE OUTPUT: preset %r with random weights (no --weights given); the video shows "
                    "noise-like colours, not a face", args.preset)
    rng = torch.Generator().manual_seed(args.seed)
    with torch.inference_mode():
        z = torch.randn(1, g.z_dim, generator=rng)
        ws = g.mapping(z, truncation_psi=args.trunc)
        bg = torch.randn(1, g.cfg.nerf.z_dim_bg, generator=rng)
    orbit = OrbitConfig(num_frames=args.frames, fps=args.fps)
    frames = render_views(g, ws, orbit_cameras(orbit), bg, batch_size=args.batch)
    if args.stills is not None:
        frames = _also_save_stills(frames, args.stills)
    return write_video(frames, args.out, fps=args.fps)


def _also_save_stills(frames, directory: Path):
    """Pass frames through while writing each as ``view_000.png`` ... (atomic)."""
    from nerffs.render.frames import FrameStore

    store = FrameStore(directory)
    for i, frame in enumerate(frames):
        path = store.write(i, frame)
        path.replace(path.with_name(f"view_{i:03d}.png"))
        yield frame


def photo_orbit(image: Path, out: Path, models: str, frames: int, fps: float, seed: int,
                stills: Path | None = None) -> Path:
    """The identity the pipeline makes of ``image`` (cached per face), seen from one orbit of cameras."""
    from nerffs.pipeline import TalkingHeadPipeline
    from nerffs.render.video import write_video
    from nerffs.render.views import OrbitConfig, orbit_cameras, render_views

    pipe = TalkingHeadPipeline.from_pretrained(models, seed=seed)
    _, aligned = pipe.align(image)
    ws, bg, talking, _ = pipe.identity(aligned, seed)
    orbit = OrbitConfig(num_frames=frames, fps=fps)
    views = render_views(talking.generator, ws, orbit_cameras(orbit, device=ws.device), bg)
    if stills is not None:
        views = _also_save_stills(views, stills)
    return write_video(views, out, fps=fps, metadata={"comment": f"nerffs novel views, {pipe.models.describe()}"})


def talking_orbit(image: Path, audio: Path, out: Path, weights: str, camera: str, seed: int) -> Path:
    """The talking-head pipeline with a moving camera (default: one orbit every 4 s)."""
    from nerffs.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_pretrained(weights, seed=seed)
    return pipe(image, audio, out, seed=seed, camera=camera).video


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.render_views", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output .mp4 path (written atomically)")
    p.add_argument("--preset", default="tiny", help="generator preset when no --weights: tiny (default), "
                   "ffhq256, ffhq512, ffhq1024 (random weights: smoke output)")
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
    p.add_argument("--camera", default="orbit:yaw=0.35,pitch=0.12,period=4",
                   help="camera spec for --talking (see python -m scripts.talk --help)")
    p.add_argument("--image", type=Path, default=None, help="render the identity of this photo instead")
    p.add_argument("--models", default=None, metavar="SET",
                   help="model set for --talking / --image: auto (default), offline, smoke or a weights directory")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    talking, camera, image, models = ns.talking, ns.camera, ns.image, ns.models
    del ns.talking, ns.camera, ns.image, ns.models
    models = models or (str(ns.weights) if ns.weights is not None else "auto")

    def body() -> int:
        if talking is not None:
            path = talking_orbit(talking[0], talking[1], ns.out, models, camera, ns.seed)
        elif image is not None:
            path = photo_orbit(image, ns.out, models, ns.frames, ns.fps, ns.seed, ns.stills)
        else:
            path = render_views_to_file(RenderViewsArgs(**vars(ns)))
        print(path)
        return 0

    from nerffs.utils.cli import run_command

    return run_command(body)  # one line for the user, no stack trace; Ctrl-C: "interrupted", 130


if __name__ == "__main__":
    sys.exit(main())
