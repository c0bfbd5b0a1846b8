"""Generator benchmark: median time and peak memory of one pass, split NeRF vs upsampler (random weights).

Each preset runs in a fresh spawned process so its peak resident memory is its own (CPU), or its CUDA
peak is reset (GPU). Timings are medians over ``repeats`` runs after one warm-up.
"""
from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import statistics
import time
from typing import Any

import torch

from stylenerf import Generator, get_preset
from stylenerf.camera import frontal_camera


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, repeats: int) -> tuple[float, Any]:
    out = fn()  # warm-up (allocations, lazy op builds)
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def bench_preset(preset: str, device: str = "cpu", repeats: int = 3, threads: int | None = None) -> dict[str, Any]:
    """Time one generator pass of ``preset`` (batch 1, frontal camera, frozen background not cached)."""

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    g = Generator(get_preset(preset)).eval().requires_grad_(False).to(dev)
    with torch.inference_mode():
        ws = g.mapping(torch.randn(1, g.z_dim, device=dev))
        cam = frontal_camera(1, dev)
        bg = torch.randn(1, g.cfg.nerf.z_dim_bg, device=dev)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t_nerf, nerf = _time(lambda: g.synthesis.render_nerf(ws, cam, bg_latent=bg, freeze_bg=True), dev, repeats)
        t_up, _ = _time(lambda: g.synthesis.upsample(nerf.feat, nerf.img_nerf, ws), dev, repeats)
        t_full, _ = _time(lambda: g.synthesis(ws, cam, bg_latent=bg, freeze_bg=True), dev, repeats)
    peak_mb = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**20
    return {
        "preset": preset, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor()
        or platform.machine(), "threads": torch.get_num_threads(), "resolution": g.img_resolution,
        "params_m": round(sum(p.numel() for p in g.parameters()) / 1e6, 3), "repeats": repeats,
        "nerf_s": round(t_nerf, 4), "upsampler_s": round(t_up, 4), "full_pass_s": round(t_full, 4),
        "peak_memory_mb": round(peak_mb, 1), "peak_memory_kind": "cuda_allocated" if dev.type == "cuda" else "process_rss",
        "weights": "random",
    }


def run(presets: tuple[str, ...] = ("ffhq512", "ffhq1024"), device: str = "cpu", repeats: int = 3,
        threads: int | None = None) -> list[dict[str, Any]]:
    """Benchmark each preset in its own spawned process; returns one record per preset."""
    ctx = mp.get_context("spawn")
    results = []
    for preset in presets:
        with ctx.Pool(1) as pool:
            results.append(pool.apply(bench_preset, (preset, device, repeats, threads)))
    return results
