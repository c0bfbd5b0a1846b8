"""Videos of one identity seen from moving cameras (the library behind ``scripts.render_views``).

Three sources of the identity, one request type:

* a StyleNeRF generator (official file, or a preset with random weights: smoke output) and a seeded latent;
* a photo: the pipeline's identity step (the offline fit, or PTI / a sampled latent with official weights);
* a photo and a recording: the talking-head pipeline with a moving camera spec.

Each renders the identity along ``nerffs.render.views.orbit_cameras`` (or the camera spec) and writes an mp4
atomically; the orbit modes can also save every view as a PNG.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerffs.pipeline import TalkingHeadPipeline
from nerffs.render.frames import FrameStore
from nerffs.render.video import write_video
from nerffs.render.views import OrbitConfig, orbit_cameras, render_views
from stylenerf import Generator, get_preset
from stylenerf.io import load_generator

log = logging.getLogger(__name__)

DEFAULT_CAMERA = "orbit:yaw=0.35,pitch=0.12,period=4"
"""Camera spec of a talking orbit: one loop every 4 s."""


@dataclass
class OrbitVideoRequest:
    """One orbit video. ``talking`` wins over ``image``; with neither, a generator's sampled identity."""

    out: Path
    """Output .mp4 (written atomically)."""
    talking: tuple[Path, Path] | None = None
    """(photo, recording): a talking head rendered with ``camera``."""
    image: Path | None = None
    """A photo whose identity (the pipeline's identity step) is rendered along the orbit."""
    camera: str = DEFAULT_CAMERA
    """Camera spec of the talking mode (``nerffs.render.camera_spec``)."""
    models: str | None = None
    """Model set of the photo modes: 'auto', 'offline', 'smoke' or a weights directory (None: ``weights`` if
    given, else 'auto')."""
    preset: str = "tiny"
    """Generator preset when no ``weights`` are given (random weights: smoke output)."""
    weights: Path | None = None
    """Official StyleNeRF .pkl or a converted directory."""
    seed: int = 0
    """Seed of the latent z and the background latent (and of the random generator weights)."""
    trunc: float = 0.7
    """Truncation psi of the sampled latent (1 = none)."""
    frames: int = 48
    """Frames in the orbit."""
    fps: float = 25.0
    batch: int = 4
    """Views per generator call (generator mode)."""
    stills: Path | None = None
    """Also save every view as ``view_000.png`` ... in this folder (orbit modes)."""

    @property
    def model_set(self) -> str:
        """The model set of the photo modes."""
        return self.models or (str(self.weights) if self.weights is not None else "auto")


def render_orbit_video(req: OrbitVideoRequest) -> Path:
    """Render ``req`` and return the written video's path."""
    if req.talking is not None:
        return talking_orbit(req)
    if req.image is not None:
        return photo_orbit(req)
    return generator_orbit(req)


def generator_orbit(req: OrbitVideoRequest) -> Path:
    """Load (or randomly initialise, seeded) a generator, sample a latent, render the orbit, encode the mp4."""
    torch.manual_seed(req.seed)
    if req.weights is not None:
        g = load_generator(req.weights)
        log.info("loaded generator from %s", req.weights)
    else:
        g = Generator(get_preset(req.preset)).eval()
        log.warning("SMOKE OUTPUT: preset %r with random weights (no --weights given); the video shows "
                    "noise-like colours, not a face", req.preset)
    rng = torch.Generator().manual_seed(req.seed)
    with torch.inference_mode():
        z = torch.randn(1, g.z_dim, generator=rng)
        ws = g.mapping(z, truncation_psi=req.trunc)
        bg = torch.randn(1, g.cfg.nerf.z_dim_bg, generator=rng)
    frames = render_views(g, ws, orbit_cameras(OrbitConfig(num_frames=req.frames, fps=req.fps)), bg,
                          batch_size=req.batch)
    return write_video(_with_stills(frames, req.stills), req.out, fps=req.fps)


def photo_orbit(req: OrbitVideoRequest) -> Path:
    """The identity the pipeline makes of ``req.image`` (cached per face), seen from one orbit of cameras."""
    pipe = TalkingHeadPipeline.from_pretrained(req.model_set, seed=req.seed)
    _, aligned = pipe.align(req.image)
    ws, bg, talking, _ = pipe.identity(aligned, req.seed)
    cams = orbit_cameras(OrbitConfig(num_frames=req.frames, fps=req.fps), device=ws.device)
    views = render_views(talking.generator, ws, cams, bg)
    return write_video(_with_stills(views, req.stills), req.out, fps=req.fps,
                       metadata={"comment": f"nerffs novel views, {pipe.models.describe()}"})


def talking_orbit(req: OrbitVideoRequest) -> Path:
    """The talking-head pipeline on ``req.talking`` with the moving camera ``req.camera``."""
    image, audio = req.talking
    pipe = TalkingHeadPipeline.from_pretrained(req.model_set, seed=req.seed)
    return pipe(image, audio, req.out, seed=req.seed, camera=req.camera).video


def _with_stills(frames: Iterable[np.ndarray], directory: Path | None) -> Iterator[np.ndarray]:
    """Pass frames through, writing each as ``directory/view_000.png`` ... (atomic) when a directory is given."""
    if directory is None:
        yield from frames
        return
    store = FrameStore(directory)
    for i, frame in enumerate(frames):
        path = store.write(i, frame)
        path.replace(path.with_name(f"view_{i:03d}.png"))
        yield frame
