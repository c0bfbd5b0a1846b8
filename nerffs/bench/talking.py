"""Benchmark of the talking-head frame loop (random weights; labelled as such).

* ``loop``: frames per second of our two-pass loop and of the naive official-order three-pass loop
  (every pass a full single-frame generator call), same models, same run.
* ``memory``: peak resident memory of a whole smoke pipeline run for two audio lengths, each in a fresh
  spawned process (the video is streamed, so the ratio should stay near 1).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nerffs.audio.speech import synthesize_speech
from nerffs.deform.rays import ControlPointDeformer
from nerffs.examples import example_photo
from nerffs.lipaint.model import LipaintNet
from nerffs.models import ModelSet, smoke_models
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.talking.blend import TemporalMaskSmoother, blend_features
from nerffs.talking.loop import FrameRenderer, LoopConfig, Reference, prepare_reference, render_frames
from stylenerf import Generator, get_preset
from stylenerf.camera import camera_from_angles


def _models(arch: str) -> ModelSet:
    models = smoke_models(seed=0)
    if arch != "smoke":
        torch.manual_seed(0)
        g = Generator(get_preset(arch)).eval().requires_grad_(False)
        models.talking.generator = g

        models.talking.lipaint = LipaintNet(w_dim=g.w_dim, hidden=g.w_dim).eval().requires_grad_(False)
    return models


@torch.inference_mode()
def naive_frame(models: ModelSet, ref: Reference, cfg: LoopConfig, renderer: FrameRenderer,
                smoother: TemporalMaskSmoother, exp: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """One frame in the official order: deformed pass (discarded), LipaintNet pass, deformed + blended pass."""
    t, g = models.talking, models.talking.generator
    deformer = ControlPointDeformer(ref.controls.ref, renderer.driven_controls(exp))
    kw = dict(bg_latent=ref.bg_latent, freeze_bg=True, depths=ref.depths)
    g.synthesis(ref.ws, cam, deform=deformer, **kw)
    lip = g.synthesis(t.lipaint.mouth_styles(ref.ws, exp, g.synthesis.num_nerf_ws), cam, **kw)
    keep = 1 - smoother(t.parser.mouth_mask(lip.img, size=renderer.parse_size))
    return g.synthesis(ref.ws, cam, deform=deformer, feature_hook=lambda f: blend_features(
        f, lip.nerf.feat, keep, cfg.blend_size, cfg.blend_mode), **kw).img


def bench_loop(arch: str = "smoke", frames: int = 8, batch_size: int = 4) -> dict[str, Any]:
    """Seconds per frame of our loop vs the naive 3-pass loop for one architecture (random weights)."""
    models = _models(arch)
    g = models.talking.generator
    cfg = LoopConfig(batch_size=batch_size, blend_size=min(512, g.img_resolution))
    with torch.inference_mode():
        ws = g.mapping(torch.randn(1, g.z_dim), truncation_psi=0.7)
    ref = prepare_reference(models.talking, ws, torch.randn(1, g.cfg.nerf.z_dim_bg), cfg)
    exp = torch.randn(frames, 64)
    cams = camera_from_angles(torch.linspace(-0.2, 0.2, frames), torch.full((frames,), math.pi / 2))
    list(render_frames(models.talking, ref, exp[:batch_size], cams[:batch_size], cfg, show_progress=False))
    t0 = time.perf_counter()
    list(render_frames(models.talking, ref, exp, cams, cfg, show_progress=False))
    ours = (time.perf_counter() - t0) / frames
    renderer, smoother = FrameRenderer(models.talking, ref, cfg), TemporalMaskSmoother(cfg.mask_window)
    times = []
    for i in range(min(frames, 4)):
        t0 = time.perf_counter()
        naive_frame(models, ref, cfg, renderer, smoother, exp[i:i + 1], cams[i:i + 1])
        times.append(time.perf_counter() - t0)
    naive = statistics.median(times)
    return {"arch": arch, "resolution": g.img_resolution, "batch_size": batch_size, "frames": frames,
            "ours_s_per_frame": round(ours, 4), "ours_fps": round(1 / ours, 3),
            "naive_3pass_s_per_frame": round(naive, 4), "speedup": round(naive / ours, 2),
            "weights": "random (smoke models; generator preset " + arch + ")"}


def _pipeline_peak(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        wav = synthesize_speech(Path(tmp) / "s.wav", seconds=seconds)
        pipe = TalkingHeadPipeline.from_pretrained("smoke")
        t0 = time.perf_counter()
        out = pipe(example_photo(), wav, Path(tmp) / "o.mp4", show_progress=False)
        wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"audio_s": seconds, "frames": out.num_frames, "wall_s": round(wall, 2), "peak_rss_mb": round(peak, 1)}


def bench_memory(lengths: tuple[float, float] = (6.0, 60.0)) -> dict[str, Any]:
    """Peak RSS of whole smoke runs for two audio lengths, each in a fresh process."""
    ctx = mp.get_context("spawn")
    runs = []
    for seconds in lengths:
        with ctx.Pool(1) as pool:
            runs.append(pool.apply(_pipeline_peak, (seconds,)))
    return {"runs": runs, "peak_ratio": round(runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"], 3)}


def run(archs: tuple[str, ...] = ("smoke", "ffhq512"), memory: bool = True) -> dict[str, Any]:
    """Loop speed per architecture and (optionally) the memory-vs-audio-length check."""
    out: dict[str, Any] = {"loop": [bench_loop(a, frames=8 if a == "smoke" else 4) for a in archs]}
    if memory:
        out["memory"] = bench_memory()
    return out
