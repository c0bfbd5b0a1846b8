"""Benchmark of the PTI inversion: projection and pivotal-tuning steps per second (issue: PTI inversion).

No official weight is available offline, so everything runs with RANDOM weights and says so in the result:
the StyleNeRF generator of the requested architecture, and the LPIPS trunks (VGG16 for projection at
256x256, AlexNet for tuning at full resolution) with the real lpips linear heads. A step costs the same
whatever the weight values (no data-dependent control flow), so the rates are representative; the losses
are not. Each stage runs ``steps + 1`` steps and the first is discarded as warm-up; the median step time is
reported.
"""
from __future__ import annotations

import platform
import resource
import statistics
import time
from typing import Any

import torch

from nerffs.inversion.config import ProjectionConfig, TuningConfig, official
from nerffs.inversion.lpips import load_lpips
from nerffs.inversion.projector import project
from nerffs.inversion.pti import tune
from stylenerf import Generator, get_preset
from stylenerf.camera import frontal_camera


def _step_times(stamps: list[float], start: float) -> list[float]:
    """Durations of the steps after the first (warm-up) from the callback timestamps."""
    edges = [start, *stamps]
    return [b - a for a, b in zip(edges[1:], edges[2:])]


def _timed_callback(stamps: list[float], device: torch.device):
    def callback(stage: str, step: int, losses: dict[str, float]) -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
    return callback


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def run(preset: str = "ffhq512", steps: int = 5, device: str | None = None) -> dict[str, Any]:
    """Time projection and tuning steps of the ``preset`` generator architecture (random weights).

    Args:
        preset: generator preset ('ffhq512', 'ffhq1024', 'tiny', ...).
        steps: timed steps per stage (one more runs first as warm-up).
        device: 'cpu' or 'cuda'; None picks CUDA when available.

    Returns:
        dict with ``projection_steps_per_s``, ``tuning_steps_per_s``, the median seconds per step, the
        extrapolated wall time of an official run (1000 + 2000 steps, no early stop), peak memory, the
        device and a ``weights`` label.
    """

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    g = Generator(get_preset(preset)).eval().to(dev)
    rng = torch.Generator().manual_seed(0)
    cam = frontal_camera(1, dev)
    with torch.no_grad():
        ws = g.mapping(torch.randn(1, g.z_dim, generator=rng).to(dev))
        target = g.synthesis(ws, cam, bg_latent=torch.randn(1, g.cfg.nerf.z_dim_bg, generator=rng).to(dev),
                             freeze_bg=True).img.clamp(-1, 1)
    metrics = {net: load_lpips(net, backbone_path="/nonexistent", allow_random=True, device=dev)
               for net in ("vgg", "alex")}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    proj_stamps: list[float] = []
    t0 = time.perf_counter()
    proj = project(g, target, cam, ProjectionConfig(num_steps=steps + 1), metrics["vgg"], rng=rng,
                   callback=_timed_callback(proj_stamps, dev), show_progress=False)
    tune_stamps: list[float] = []
    t1 = time.perf_counter()
    tune(g, target, proj.ws, proj.bg_latent, cam, TuningConfig(num_steps=steps + 1, lpips_threshold=0.0),
         metrics["alex"], callback=_timed_callback(tune_stamps, dev), show_progress=False)
    s_proj = statistics.median(_step_times(proj_stamps, t0))
    s_tune = statistics.median(_step_times(tune_stamps, t1))
    peak_mb = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    cfg = official()
    return {
        "preset": preset, "resolution": g.img_resolution, "device": _device_name(dev), "timed_steps": steps,
        "projection_s_per_step": round(s_proj, 4), "projection_steps_per_s": round(1 / s_proj, 3),
        "tuning_s_per_step": round(s_tune, 4), "tuning_steps_per_s": round(1 / s_tune, 3),
        "official_run_estimate_min": round((cfg.projection.num_steps * s_proj + cfg.tuning.num_steps * s_tune) / 60, 1),
        "peak_memory_mb": round(peak_mb, 1),
        "peak_memory_kind": "cuda_allocated" if dev.type == "cuda" else "process_rss",
        "weights": "random generator and random LPIPS trunks (real lpips heads); timings only",
    }
