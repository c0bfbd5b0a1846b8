"""The checksum ledger: the SHA-256 of every weight file as first seen, so later runs notice a changed file.

No full SHA-256 is published for most of the official files (registry ``sha256=None``), so the downloader works
trust-on-first-use: the first download of a file (or the first ``--check`` of a file that is already in place)
records its SHA-256 and size in ``<weights dir>/checksums.json``; every later download, ``--check`` and download
of a file already present compares against that record. The ledger is rewritten atomically (a reader never sees
half a file). A changed file is reported in one line that names it and says how to fix it.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from nerffs.errors import LedgerError
from nerffs.utils.io import atomic_write_text
from nerffs.weights.paths import cli_command, weights_dir
from nerffs.weights.registry import Asset

log = logging.getLogger(__name__)

LEDGER_NAME = "checksums.json"
"""File name of the ledger inside the weights directory."""
FORMAT = "nerffs.weights.checksums"
VERSION = 1
FORGET_FLAG = "--forget-checksum"
"""CLI option that drops a record (the next download or --check records the file anew)."""


@dataclass(frozen=True)
class Record:
    """What was recorded about one file."""

    asset: str
    """Registry name when recorded."""
    sha256: str
    """Lower-case hex SHA-256 of the whole file."""
    size: int
    """Size in bytes."""
    recorded: str
    """UTC time of recording, ISO 8601 (seconds)."""
    source: str
    """The URL it was downloaded from, or 'found in place' (first --check / download of a present file)."""


def ledger_path(root: str | os.PathLike | None = None) -> Path:
    """``<weights dir>/checksums.json``."""
    return weights_dir(root) / LEDGER_NAME


def read_ledger(root: str | os.PathLike | None = None) -> dict[str, Record]:
    """Relative file name -> :class:`Record` (empty when there is no ledger yet).

    Raises:
        LedgerError: the ledger exists but is not a valid ledger (one line naming it and the fix).
    """
    path = ledger_path(root)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {FORMAT!r}")
        return {name: Record(**entry) for name, entry in data["files"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise LedgerError(f"checksum ledger {path} is unreadable ({type(exc).__name__}: {first}); restore it, or "
                          f"delete it to record every file's SHA-256 anew with `{cli_command(['--check'], root)}`") \
            from None


def _write(records: dict[str, Record], root: str | os.PathLike | None) -> None:
    body = {"format": FORMAT, "version": VERSION,
            "about": "SHA-256 of each weight file when first downloaded or checked by nerffs "
                     "(python -m scripts.download_weights); later downloads and --check compare against it",
            "files": {name: asdict(rec) for name, rec in sorted(records.items())}}
    atomic_write_text(ledger_path(root), json.dumps(body, indent=2) + "\n")


def lookup_record(asset: Asset, root: str | os.PathLike | None = None) -> Record | None:
    """The record of ``asset``'s file, or None."""
    return read_ledger(root).get(asset.filename)


def record(asset: Asset, root: str | os.PathLike | None, sha256: str, size: int, source: str) -> Record:
    """Record (or replace the record of) ``asset``'s file and rewrite the ledger atomically."""
    records = read_ledger(root)
    entry = Record(asset=asset.name, sha256=sha256, size=size, source=source,
                   recorded=datetime.now(timezone.utc).replace(microsecond=0).isoformat())
    records[asset.filename] = entry
    _write(records, root)
    log.info("%s: recorded sha256 %s (%d B) in %s", asset.name, sha256, size, ledger_path(root))
    return entry


def forget(assets: Iterable[Asset], root: str | os.PathLike | None = None) -> list[str]:
    """Drop the records of ``assets``; returns the names that had one."""
    records = read_ledger(root)
    dropped = [a.name for a in assets if records.pop(a.filename, None) is not None]
    if dropped:
        _write(records, root)
    return dropped


def changed_message(asset: Asset, root: str | os.PathLike | None, rec: Record, *, sha256: str | None = None,
                    size: int | None = None) -> str:
    """One line: which file changed since it was recorded, and the two ways to fix it."""
    path = weights_dir(root) / asset.filename
    now = f"sha256 {sha256[:16]}..." if sha256 is not None else f"{size} B"
    then = f"sha256 {rec.sha256[:16]}..." if sha256 is not None else f"{rec.size} B"
    restore = (f"re-download it with `{cli_command([asset.name, '--force'], root)}`" if asset.downloadable
               else "put the original file back")
    accept = cli_command([FORGET_FLAG, asset.name, "--check", asset.name], root)
    return (f"{path} changed since its checksum was recorded ({now} now, {then} recorded "
            f"{rec.recorded} in {ledger_path(root)}); {restore}, or if you replaced it on purpose, accept the new "
            f"file with `{accept}`")


def mismatch_reason(asset: Asset, rec: Record, sha256: str, url: str) -> str:
    """Why a download is not the recorded file (one clause; ``forget_hint`` says what to do)."""
    return (f"the download from {url} has sha256 {sha256[:16]}... but {rec.sha256[:16]}... was recorded for "
            f"{asset.filename} on {rec.recorded} (from {rec.source}), so the published file changed or this source "
            "does not serve the original")


def forget_hint(asset: Asset, root: str | os.PathLike | None) -> str:
    """How to accept a new version of a recorded file."""
    return (f"if the change is expected, drop the old record with `{cli_command([FORGET_FLAG, asset.name], root)}` "
            "and download again")
