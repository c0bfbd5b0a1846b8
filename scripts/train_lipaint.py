"""Train LipaintNet from sampled latents (paper 4.4; nerffs.lipaint.train). Thin CLI over ``train()``.

Writes into --out: config.json, log.jsonl, checkpoints/ (step-N.safetensors weights + step-N.state.pt
optimizer/RNG/step, latest.json), samples/step-N.png, and the result lipaint.safetensors.

Examples:
    python -m scripts.train_lipaint --preset smoke --out outputs/lipaint_smoke
    python -m scripts.train_lipaint --out runs/lipaint --discriminator weights/ffhq_512.pkl
    python -m scripts.train_lipaint --out runs/lipaint --resume
    torchrun --nproc_per_node 4 -m scripts.train_lipaint --out runs/lipaint      # DDP, rank 0 writes
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nerffs.lipaint.train import PRESETS, TrainConfig, train
from nerffs.utils.cli import run_cli

# CLI flag -> TrainConfig field, for the optional overrides (None = keep the preset's value).
OVERRIDES = {"iterations": int, "batch": int, "lr": float, "ckpt_every": int, "sample_every": int,
             "log_every": int, "seed": int, "truncation_psi": float, "exp_noise": float, "w_landmark": float,
             "w_coeff": float, "w_id": float, "w_gan": float, "device": str, "discriminator": str,
             "weights_dir": str, "generator": str, "init_lipaint": str, "resolution": int}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_lipaint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--preset", default="official", choices=PRESETS.names(),
                   help="official: Adam 1e-5, batch 8, 300k iterations; smoke: random tiny models, a few CPU steps")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, typ in OVERRIDES.items():
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=f"override TrainConfig.{name}")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    overrides = {k: getattr(ns, k) for k in OVERRIDES if getattr(ns, k) is not None}
    if ns.quiet:
        overrides["progress"] = False
    return run_cli(lambda: print(train(TrainConfig.preset(ns.preset, **overrides), ns.out, resume=ns.resume)))


if __name__ == "__main__":
    sys.exit(main())
