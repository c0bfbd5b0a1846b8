"""Benchmarks of the nerffs stages; prints and optionally saves JSON.

Suites:
    generator   one StyleNeRF pass (NeRF vs upsampler split, peak memory) for --presets
    audio       load + mel + Audio2Exp throughput (random Audio2Exp weights)
    face_prep   face detection and FFHQ alignment on the scikit-image astronaut photo
    face3d      Deep3D regression (random weights) and the 3DMM landmark fit (synthetic official-size model)
    inversion   PTI projection and tuning steps per second at ffhq512 (random generator and LPIPS trunks)
    talking     frame loop fps (ours vs naive 3-pass) at smoke and --presets, peak memory 6 s vs 60 s of audio
    loop        the frame loop at full size stage by stage (NeRF, matching, upsampler, LipaintNet pass, parsing,
                blend, encode), batch 1 and automatic, with and without the region of change; --weights loads
                an official-format generator (.pkl or converted directory), else random --presets[0] weights
    offline     the offline demo models on real photos: dlib-ID, face detection (video and orbit), lip-sync
                proxy, silence closure, first-run / cached-rerun time and peak memory of scripts.talk
    views       the app's live view: one frame of a prepared identity from a yaw/pitch slider camera, median of
                9 renders, smoke and offline models, 1 and 2 threads

Examples:
    python -m scripts.benchmark --suite generator --presets ffhq512,ffhq1024
    python -m scripts.benchmark --suite all --out outputs/benchmark.json
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

import torch

from nerffs.utils.cli import run_cli
from nerffs.utils.io import atomic_write_text

SUITES = ("generator", "audio", "face_prep", "face3d", "talking", "inversion", "loop", "offline", "views")


def run_benchmarks(suites: list[str], presets: tuple[str, ...], device: str, repeats: int,
                   weights: str | None = None, frames: int = 6) -> dict:
    """Run the named suites; returns {'machine': ..., suite: result}."""
    report: dict = {"machine": {"platform": platform.platform(), "cpu_count": __import__("os").cpu_count(),
                                "torch": torch.__version__, "device": device, "threads": torch.get_num_threads()}}
    for suite in suites:
        module = importlib.import_module(f"nerffs.bench.{suite}")
        if suite == "generator":
            report[suite] = module.run(presets=presets, device=device, repeats=repeats)
        elif suite == "talking":
            report[suite] = module.run(archs=("smoke", *presets))
        elif suite == "loop":
            report[suite] = module.run(weights=weights, preset=presets[0], frames=frames, repeats=repeats)
        else:
            report[suite] = module.run()
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.benchmark", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="generator", help=f"comma list of {', '.join(SUITES)}, or 'all'")
    p.add_argument("--presets", default="ffhq512,ffhq1024", help="generator presets (comma list)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median reported)")
    p.add_argument("--weights", default=None, help="loop suite: official-format generator (.pkl or converted dir)")
    p.add_argument("--frames", type=int, default=6, help="loop suite: frames rendered per configuration")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report here")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    suites = list(SUITES) if ns.suite == "all" else [s.strip() for s in ns.suite.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        print(f"error: unknown suite(s) {unknown}; choose from {', '.join(SUITES)} or 'all'", file=sys.stderr)
        return 2
    return run_cli(lambda: _report(ns, suites), quiet=True)


def _report(ns: argparse.Namespace, suites: list[str]) -> None:
    """Run the suites, print the JSON report and save it to ``--out``."""
    if ns.threads:
        torch.set_num_threads(ns.threads)
    report = run_benchmarks(suites, tuple(ns.presets.split(",")), ns.device, ns.repeats, ns.weights, ns.frames)
    text = json.dumps(report, indent=2)
    print(text)
    if ns.out is not None:
        atomic_write_text(ns.out, text + "\n")


if __name__ == "__main__":
    sys.exit(main())
