"""Fetch, verify, convert and check the pretrained weights (thin CLI over ``nerffs.weights.manage``).

Usage::

    python -m scripts.download_weights sadtalker deep3d            # download (resumable, verified, sha256 recorded)
    python -m scripts.download_weights stylenerf_ffhq512 --accept-licence stylenerf_ffhq512 --convert
    python -m scripts.download_weights --feature audio2exp --feature deep3d     # default asset per feature
    python -m scripts.download_weights --check                      # valid / present / changed / missing / corrupt
    python -m scripts.download_weights lipaintnet --check --forget-checksum lipaintnet   # accept a replaced file
    python -m scripts.download_weights --list

Exit status: 0 success, 1 an asset failed (or --check found a corrupt or changed file, or a named asset missing),
2 usage.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from nerffs.errors import InputError
from nerffs.utils.cli import print_error, run_cli
from nerffs.weights.manage import WeightsJob, asset_table, manage_weights, select_assets

EPILOG = """\
The weights directory is --dir, else $NERFFS_WEIGHTS, else ~/.cache/nerffs/weights; every asset has a fixed
relative path in it (see --list). Downloads go to <file>.part, resume after dropped connections with HTTP Range
requests, and are renamed into place only after the checks below, so a file at its final path is always complete.

Checks: the published size where one is known (SadTalker bundle) and the published SHA-256 prefix in the file
name of the torchvision files; no other file has a published checksum, so every file must also read in its
format (safetensors header, zip CRCs, .mat, StyleNeRF pickle structure; no code from a file runs). The SHA-256
of each file is recorded in <dir>/checksums.json on its first download (or its first --check when it was placed
by hand) and printed; every later download and --check compares against it and reports a changed file in one
line with the fix (re-download with --force, or accept the new file with --forget-checksum NAME --check NAME).

Assets under non-commercial or registration terms (StyleNeRF CC-BY-NC, BFM09, SyncNet/Wav2Lip evaluation,
BiSeNet trained on CelebAMask-HQ) are refused unless you pass --accept-licence NAME for each; their terms are
printed. Assets without a direct URL (BFM, BiSeNet, LipaintNet) print how to obtain them by hand; put them at
the path shown and run --check. Offline, a download fails with the URL to fetch by hand and the target path.

--convert writes safetensors next to the originals once (StyleNeRF .pkl -> <stem>.converted/, .pth ->
<stem>.safetensors; .mat and .safetensors are used as they are); loaders then prefer the converted files.
Without NAMES, --convert converts every asset already present.

--check exits 1 when a file is corrupt or changed, when a NAME you gave is missing, or when a --feature you gave
has no usable asset; missing optional assets alone (e.g. the evaluation networks) do not fail a plain --check."""


def build_parser() -> argparse.ArgumentParser:
    """Command-line interface of the weights tool."""
    parser = argparse.ArgumentParser(
        prog="python -m scripts.download_weights", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Download, verify, convert and check NeRFFaceSpeech's pretrained weights.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="registry names (see --list), or 'all'")
    parser.add_argument("--feature", action="append", default=[], metavar="F",
                        help="feature F (repeatable): generator, audio2exp, deep3d, bfm, parsing, lipaint, lpips, "
                             "syncnet, fid. With --check: every asset providing F; otherwise F's default asset "
                             "(marked * in --list) unless an asset providing F is already present")
    parser.add_argument("--dir", metavar="D", default=None, help="weights directory (default: $NERFFS_WEIGHTS or "
                                                                  "~/.cache/nerffs/weights)")
    parser.add_argument("--accept-licence", "--accept-license", action="append", default=[], metavar="NAME",
                        dest="accept", help="accept the restricted terms of asset NAME (repeatable)")
    parser.add_argument("--mirror", action="append", default=[], metavar="URL",
                        help="base URL holding the weights-directory layout, tried before the official URLs "
                             "(repeatable)")
    parser.add_argument("--check", action="store_true",
                        help="report each asset as valid/present/changed/missing/corrupt and which features are "
                             "available; records the SHA-256 of files not yet in <dir>/checksums.json")
    parser.add_argument("--no-verify", action="store_true", help="with --check: compare sizes only (no hashing, "
                                                                 "nothing recorded)")
    parser.add_argument("--forget-checksum", action="append", default=[], metavar="NAME", dest="forget",
                        help="drop the recorded SHA-256 of asset NAME (repeatable; 'all' for every asset) before "
                             "anything else, so the next download or --check records the file anew")
    parser.add_argument("--convert", action="store_true", help="convert to safetensors next to the originals")
    parser.add_argument("--force", action="store_true", help="download / convert again even if present")
    parser.add_argument("--list", action="store_true", help="list the registry and exit")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="network stall timeout (s)")
    parser.add_argument("--retries", type=int, default=5, metavar="N", help="resumes per source after drops")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    return parser


def job_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> WeightsJob:
    """The run the arguments ask for; usage errors (unknown names, bad numbers, nothing to do) exit 2."""
    try:
        names = select_assets(args.names, args.feature, check=args.check, root=args.dir,
                              also_known=[*args.accept, *(n for n in args.forget if n != "all")])
    except InputError as exc:
        parser.error(str(exc))
    if args.retries < 0 or args.timeout <= 0:
        parser.error("--retries must be >= 0 and --timeout > 0")
    if not (names or args.check or args.convert or args.forget):
        parser.error("nothing to do: name assets (or 'all', or --feature F), or use --check / --list / "
                     "--convert / --forget-checksum")
    return WeightsJob(names=names, named=list(args.names), features=list(args.feature), root=args.dir,
                      accept=list(args.accept), mirrors=list(args.mirror), forget=list(args.forget),
                      check=args.check, verify=not args.no_verify, convert=args.convert, force=args.force,
                      timeout=args.timeout, retries=args.retries, show_progress=not args.quiet)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the process exit status (0 ok, 1 an asset failed, 2 usage, 130 Ctrl-C: a download
    keeps its ``.part`` file and resumes next time)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(asset_table()))
        return 0
    # selecting --feature defaults looks at the directory (its checksum ledger may be unreadable: one line)
    return run_cli(lambda: manage_weights(job_from_args(args, parser), print, print_error), quiet=args.quiet,
                   log_format="%(message)s")


if __name__ == "__main__":
    sys.exit(main())
