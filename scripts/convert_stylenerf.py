"""Convert an official StyleNeRF pickle into config.json + model.safetensors (no code from the pickle runs).

Usage::

    python -m scripts.convert_stylenerf ffhq_512.pkl [--out DIR] [--dump-sources DIR]

Thin wrapper around ``stylenerf.io.convert_official_pickle``. Errors are reported as one line on stderr with
exit status 1.
"""
from __future__ import annotations

import argparse
import sys

from nerffs.utils.cli import run_cli
from stylenerf.io import convert_official_pickle


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the converter."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.convert_stylenerf",
        description="Convert an official StyleNeRF training snapshot (ffhq_256/512/1024.pkl) into a directory with "
                    "config.json (the typed generator config) and model.safetensors (the G_ema tensors). The pickle "
                    "is read with an allow-list unpickler: the Python source embedded in it is never executed, and "
                    "files naming anything outside the allow-list are refused. Constructor kwargs are cross-checked "
                    "against the tensor shapes. load_generator() uses <stem>.converted/ next to the pickle "
                    "automatically.")
    parser.add_argument("pkl", help="official StyleNeRF .pkl snapshot")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output directory (default: <pkl stem>.converted next to the pickle)")
    parser.add_argument("--dump-sources", metavar="DIR", default=None,
                        help="also write the module sources embedded in the pickle as .py.txt files for auditing "
                             "(they are written as text, never imported)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only print errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the converter; returns the process exit status."""
    args = build_parser().parse_args(argv)
    # FileNotFoundError/OSError, LegacyFormatError (ValueError), UnsafePickleError (UnpicklingError) and
    # GeneratorCheckpointError all print one line; Ctrl-C prints "interrupted" (exit 130).
    return run_cli(lambda: print(convert_official_pickle(args.pkl, args.out, sources_dir=args.dump_sources)),
                   quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
