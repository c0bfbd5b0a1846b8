"""Fetch, verify, convert and check the pretrained weights (thin wrapper over ``nerffs.weights``).

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
import logging
import sys
from collections.abc import Sequence

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


def _feature_defaults(args: argparse.Namespace) -> list[str]:
    """For downloads: each --feature's default asset, unless some asset providing it is already present."""
    from nerffs.weights import DEFAULT_PROVIDERS, REGISTRY, check_asset, names_for_features

    out = []
    for feature in args.feature:
        providers = names_for_features([feature])
        if not any(check_asset(REGISTRY[n], args.dir, verify_hash=False).usable for n in providers):
            out.append(DEFAULT_PROVIDERS[feature])
    return out


def _select(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """Registry names from NAMES / 'all' / --feature (usage errors exit 2)."""
    from nerffs.errors import InputError
    from nerffs.weights import REGISTRY, lookup, names_for_features

    names = list(REGISTRY) if "all" in args.names else list(args.names)
    try:
        for name in [*names, *args.accept, *(n for n in args.forget if n != "all")]:
            lookup(name)
        providers = names_for_features(args.feature)
    except InputError as exc:
        parser.error(str(exc))
    names += providers if args.check else _feature_defaults(args)
    return list(dict.fromkeys(names))


def _print_list() -> None:
    from nerffs.weights import DEFAULT_PROVIDERS, REGISTRY

    defaults = set(DEFAULT_PROVIDERS.values())
    print(f"{'NAME':<24} {'SIZE':>10} {'SOURCE':<7} {'LICENCE':<8} {'FEATURES':<18} FILE")
    for a in REGISTRY.values():
        size = f"{a.size / 1e6:.1f} MB" if a.size else "?"
        name = a.name + ("*" if a.name in defaults else "")
        print(f"{name:<24} {size:>10} {'url' if a.urls else 'manual':<7} "
              f"{'accept' if a.needs_acceptance else 'open':<8} {','.join(a.features):<18} {a.filename}")
    print("\n* default asset of its features (--feature). LICENCE 'accept': needs --accept-licence NAME. "
          "SOURCE 'manual': obtain by hand (the download prints how).")


def _run_check(args: argparse.Namespace, names: list[str]) -> int:
    from nerffs.weights import FEATURES, available_features, check, ledger_path, weights_dir

    statuses = check(args.dir, verify_hash=not args.no_verify, names=names or None, record_new=not args.no_verify)
    print(f"weights directory: {weights_dir(args.dir)}")
    print(f"{'NAME':<24} {'STATE':<8} {'FEATURES':<18} PATH")
    for s in statuses:
        print(f"{s.name:<24} {s.state:<8} {','.join(s.features):<18} {s.path}")
    for s in statuses:
        if s.state != "valid":
            print(f"  {s.name}: {s.detail}")
    for s in statuses:
        if s.newly_recorded:
            print(f"{s.name}: sha256 {s.sha256} recorded in {ledger_path(args.dir)} (first check)")
    features = available_features(statuses)
    print("available features: " + (", ".join(f for f, ok in features.items() if ok) or "none"))
    for feature, ok in features.items():
        if not ok:
            print(f"  unavailable: {feature} ({FEATURES.get(feature, '')})")
    named = set() if "all" in args.names else set(args.names)
    failed = [s.name for s in statuses
              if s.state in ("corrupt", "changed") or (s.name in named and s.state == "missing")]
    failed += [f for f in args.feature if not features.get(f, False)]
    return 1 if failed else 0


def _error(exc: BaseException) -> None:
    text = str(exc).strip()
    print(f"error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)


def _fetch_and_convert(args: argparse.Namespace, names: list[str]) -> int:
    from nerffs.errors import NerffsError
    from nerffs.weights import REGISTRY, convert, download, ledger_path, read_ledger

    status = 0
    for name in names:
        try:
            known = read_ledger(args.dir).get(REGISTRY[name].filename)
            path = download(name, args.dir, accept_licences=args.accept, mirrors=args.mirror, timeout=args.timeout,
                            show_progress=not args.quiet, retries=args.retries, force=args.force)
            entry = read_ledger(args.dir).get(REGISTRY[name].filename)
            print(f"{name}: {path}")
            if entry is not None:
                how = (f"matches the one recorded {known.recorded}" if known is not None
                       else f"recorded in {ledger_path(args.dir)}")
                print(f"{name}: sha256 {entry.sha256} ({how})")
            if args.convert:
                converted = convert(name, args.dir, force=args.force)
                print(f"{name}: converted -> {converted}" if converted else f"{name}: used as it is")
        except (NerffsError, OSError) as exc:
            _error(exc)
            status = 1
    return status


def _convert_present(args: argparse.Namespace) -> int:
    from nerffs.errors import NerffsError
    from nerffs.weights import REGISTRY, asset_path, convert

    status = 0
    for name in REGISTRY:
        if not asset_path(name, args.dir).is_file():
            continue
        try:
            converted = convert(name, args.dir, force=args.force)
            print(f"{name}: converted -> {converted}" if converted else f"{name}: used as it is")
        except (NerffsError, OSError) as exc:
            _error(exc)
            status = 1
    return status


def _forget(args: argparse.Namespace) -> None:
    from nerffs.weights import REGISTRY, forget, ledger_path

    assets = list(REGISTRY.values()) if "all" in args.forget else [REGISTRY[n] for n in args.forget]
    dropped = forget(assets, args.dir)
    for asset in assets:
        state = "dropped" if asset.name in dropped else "had no record"
        print(f"{asset.name}: recorded sha256 {state} ({ledger_path(args.dir)})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool; returns the process exit status (0 ok, 1 an asset failed, 2 usage, 130 Ctrl-C: a download
    keeps its ``.part`` file and resumes next time)."""
    from nerffs.utils.cli import run_command

    return run_command(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    if args.list:
        _print_list()
        return 0
    from nerffs.errors import NerffsError

    try:  # the checksum ledger may be unreadable: one line, no traceback
        names = _select(args, parser)
        if args.retries < 0 or args.timeout <= 0:
            parser.error("--retries must be >= 0 and --timeout > 0")
        if not (names or args.check or args.convert or args.forget):
            parser.error("nothing to do: name assets (or 'all', or --feature F), or use --check / --list / "
                         "--convert / --forget-checksum")
        if args.forget:
            _forget(args)
        if args.check:
            return _run_check(args, names)
        if not names and args.convert:
            return _convert_present(args)
        return _fetch_and_convert(args, names) if names else 0
    except NerffsError as exc:
        _error(exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
