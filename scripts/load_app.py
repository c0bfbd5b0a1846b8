"""Bounded local load test of the demo: N concurrent gradio_client users against the app on 127.0.0.1.

Starts ``python -m app`` (smoke models by default) in its own process with a private temporary folder, sends
``--requests`` ``/generate`` calls from each of ``--users`` users at once, and prints per-request latency and queue
wait (median / max), failures, whether every answer is a playable mp4 with sound, the files left in the server's
workspace, and the server's peak resident memory; then stops the server (SIGTERM) and reports whether its
workspace went with it. Nothing but 127.0.0.1 is contacted.

    python -m scripts.load_app                                    # 4 users x 2 requests, smoke models
    python -m scripts.load_app --users 8 --requests 3 --concurrency 2 --out outputs/load.json
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from nerffs.bench.app_load import run_load
from nerffs.utils.cli import run_command
from nerffs.utils.io import atomic_write_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.load_app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=4, help="concurrent users (default 4)")
    p.add_argument("--requests", type=int, default=2, help="requests per user, one after the other (default 2)")
    p.add_argument("--models", default="smoke", help="the server's model set: smoke (default), offline, auto or DIR")
    p.add_argument("--concurrency", type=int, default=1, help="the server's --concurrency (default 1)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds one request may take (default 600)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report (with every request) here")
    return p


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    def body() -> int:
        report = run_load(ns.users, ns.requests, ns.models, ns.concurrency, timeout=ns.timeout)
        text = json.dumps(report.to_dict(), indent=2)
        print(json.dumps(report.summary(), indent=2))
        if ns.out is not None:
            atomic_write_text(ns.out, text + "\n")
        return 0 if not report.summary()["failures"] else 1

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
