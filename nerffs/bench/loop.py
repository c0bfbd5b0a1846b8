"""Benchmark of the talking-head frame loop at full size, stage by stage, with and without the region of change.

``run(weights=...)`` loads an official-format generator (a StyleNeRF ``.pkl`` or a converted directory; the
safe reader, no code executed) or, without one, random weights of a preset (labelled so), puts it among
official-size random networks (LipaintNet 512, BiSeNet parsing at 512, a synthetic 35,709-vertex BFM-layout
face model), and renders N frames of a fixed camera (the default 'input' path) at batch 1 and at the batch the
loop picks by itself. Reported per frame: NeRF (with the nearest-control-point matching booked separately),
upsampler, the LipaintNet pass, parsing, the mouth blend, the 3DMM control points, and video encoding.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nerffs.face3d.parsing import BiSeNet, ParsingConfig
from nerffs.face3d.synthetic import synthetic_face_model
from nerffs.lipaint.model import LipaintNet
from nerffs.models import smoke_models
from nerffs.preprocess.image import from_tensor
from nerffs.render.video import write_video
from nerffs.talking.loop import FrameRenderer, LoopConfig, TalkingModels, auto_batch_size, prepare_reference
from nerffs.utils.timing import StageTimer
from stylenerf import Generator, get_preset
from stylenerf.camera import frontal_camera
from stylenerf.io import load_generator

STAGES = ("nerf", "matching", "upsampler", "lipaint_pass", "parsing", "blend", "controls", "encode")


def _models(weights: str | os.PathLike | None, preset: str) -> tuple[TalkingModels, str]:
    torch.manual_seed(0)
    if weights is not None:
        g, label = load_generator(weights), f"official-format file {Path(weights).name}"
    else:
        g, label = Generator(get_preset(preset)), f"random weights ({preset})"
    g = g.eval().requires_grad_(False)
    t = smoke_models(0).talking
    return TalkingModels(generator=g, face_model=synthetic_face_model(),
                         deep3d=t.deep3d, parser=BiSeNet(ParsingConfig.barbershop16()).eval().requires_grad_(False),
                         lipaint=LipaintNet(w_dim=g.w_dim, hidden=g.w_dim).eval().requires_grad_(False)), label


def _loop_once(models: TalkingModels, ref, cfg: LoopConfig, exp: torch.Tensor, cams: torch.Tensor,
               batch: int) -> dict[str, float]:
    timer = StageTimer()
    renderer = FrameRenderer(models, ref, cfg, timer)
    frames = []
    start = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, exp.shape[0], batch):
            frames.extend(from_tensor(renderer.render(exp[s:s + batch], cams[s:s + batch])))
    total = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp, timer("encode"):
        write_video(iter(frames), Path(tmp) / "loop.mp4", fps=25.0)
    per = timer.per(exp.shape[0])
    out = {stage: round(per.get(stage, 0.0), 4) for stage in STAGES}
    out["nerf_without_matching"] = round(out["nerf"] - out["matching"], 4)
    out["fixed_view_setup_once_s"] = round(timer.seconds.get("fixed_view_setup", 0.0), 3)
    out["render_s_per_frame"] = round(total / exp.shape[0], 4)
    out["total_with_encode_s_per_frame"] = round(out["render_s_per_frame"] + out["encode"], 4)
    return out


def run(weights: str | os.PathLike | None = None, preset: str = "ffhq512", frames: int = 6,
        repeats: int = 1) -> dict[str, Any]:
    """Seconds per frame by stage for batch 1 and the automatic batch, region of change off and on."""
    models, label = _models(weights, preset)
    g = models.generator
    with torch.inference_mode():
        ws = g.mapping(torch.randn(1, g.z_dim, generator=torch.Generator().manual_seed(0)), truncation_psi=0.7)
    base = LoopConfig()
    ref = prepare_reference(models, ws, torch.randn(1, g.cfg.nerf.z_dim_bg), base)
    exp = torch.randn(frames, 64, generator=torch.Generator().manual_seed(1)) * 1.5
    cams = frontal_camera(1).expand(frames, 4, 4)
    report: dict[str, Any] = {"weights": label, "resolution": g.img_resolution, "frames": frames,
                              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"), "runs": []}
    for batch in sorted({1, auto_batch_size(g)}):
        for roc in (False, True):
            cfg = LoopConfig(batch_size=batch, region_of_change=roc)
            runs = [_loop_once(models, ref, cfg, exp, cams, batch) for _ in range(repeats)]
            best = min(runs, key=lambda r: r["render_s_per_frame"])
            report["runs"].append({"batch": batch, "region_of_change": roc, **best})
    plain = [r for r in report["runs"] if not r["region_of_change"]]
    fast = [r for r in report["runs"] if r["region_of_change"]]
    report["speedup"] = round(statistics.median(
        p["render_s_per_frame"] / f["render_s_per_frame"] for p, f in zip(plain, fast)), 2)
    return report
