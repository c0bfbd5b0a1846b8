"""Verifying weight files: checksums, sizes, and whether a file is readable in its format.

States reported by :func:`check`:

* ``valid``   -- the file matches its published SHA-256 (or SHA-256 prefix), or its published size and it reads;
* ``present`` -- the file exists and reads (or was not verified) but nothing is published to check it against;
  its SHA-256 equals the one recorded in the checksum ledger (``nerffs.weights.ledger``) when there is a record;
* ``changed`` -- the file reads but its SHA-256 (or, without hashing, its size) differs from the recorded one;
* ``missing`` -- neither the file nor its converted form exists;
* ``corrupt`` -- wrong published size or checksum, or it does not read in its format (truncated, an HTML error
  page, ...).

Readability checks never execute code from a file: safetensors headers are parsed as JSON, zip-format torch
files are CRC-checked without unpickling, legacy torch files use ``torch.load(weights_only=True)``, StyleNeRF
pickles go through ``stylenerf.legacy``, ``.mat`` files through ``scipy.io.loadmat``.
"""
from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from nerffs.utils.io import file_sha256
from nerffs.weights.ledger import Record, changed_message, lookup_record, record
from nerffs.weights.paths import (PICKLE_SUFFIXES, TORCH_SUFFIXES, converted_path, converted_present, how_to_get,
                                  safetensors_header, weights_dir)
from nerffs.weights.registry import REGISTRY, Asset, lookup
from stylenerf.legacy import read_official_pickle

log = logging.getLogger(__name__)

STATES = ("valid", "present", "changed", "missing", "corrupt")
USABLE_STATES = ("valid", "present")


@dataclass(frozen=True)
class AssetStatus:
    """The outcome of checking one asset."""

    name: str
    """Registry name."""
    path: Path
    """Where the original file is expected."""
    state: str
    """One of ``STATES``: 'valid', 'present', 'changed', 'missing' or 'corrupt'."""
    detail: str
    """Why (checksum, size, read error, or how to get a missing file)."""
    features: tuple[str, ...] = ()
    """Features the asset provides (copied from the registry)."""
    sha256: str | None = None
    """SHA-256 of the file when it was hashed."""
    newly_recorded: bool = False
    """Whether this check recorded the file's SHA-256 in the ledger (its first check)."""

    @property
    def usable(self) -> bool:
        """Whether the pipeline may use the file ('valid' or 'present')."""
        return self.state in USABLE_STATES


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}" if text else type(exc).__name__


def _read_safetensors_header(path: Path) -> None:
    """Check that the JSON header parses and the tensor data it describes ends exactly at the end of the file."""
    length, header = safetensors_header(path)
    end = 8 + length + max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if end != path.stat().st_size:
        raise ValueError(f"tensor data ends at {end} B but the file has {path.stat().st_size} B")


def _read_torch(path: Path) -> None:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()  # CRC of every member: catches truncation and bit rot without unpickling
        if bad is not None:
            raise ValueError(f"member {bad} fails its CRC")
        return
    import torch

    torch.load(str(path), map_location="cpu", weights_only=True)


def _read_pickle(path: Path) -> None:
    read_official_pickle(path)


def _read_mat(path: Path) -> None:
    from scipy.io import loadmat

    if not loadmat(str(path)):
        raise ValueError("no variables")


def readable(path: Path, suffix: str | None = None) -> tuple[bool, str]:
    """Whether ``path`` reads in the format its suffix names (no code from the file runs).

    Args:
        path: the file.
        suffix: the format to check (e.g. ``'.pth'`` for a ``.pth.part`` download); default ``path``'s suffix.

    Returns:
        ``(ok, detail)``; unknown suffixes count as readable.
    """
    suffix = (suffix or path.suffix).lower()
    reader = {".safetensors": _read_safetensors_header, ".mat": _read_mat}.get(suffix)
    if suffix in TORCH_SUFFIXES:
        reader = _read_torch
    elif suffix in PICKLE_SUFFIXES:
        reader = _read_pickle
    if reader is None:
        return True, "format not checked"
    try:
        reader(path)
    except Exception as exc:  # noqa: BLE001 - any failure to read means the file is unusable
        return False, f"does not read as {suffix} ({_first_line(exc)})"
    return True, "reads"


@dataclass(frozen=True)
class FileCheck:
    """What verifying one present file found."""

    state: str
    """'valid', 'present', 'changed' or 'corrupt'."""
    detail: str
    sha256: str | None = None
    """The file's SHA-256 when it was hashed."""


def published_mismatch(asset: Asset, size: int, digest: str | None) -> str | None:
    """Why a file of ``size`` bytes and SHA-256 ``digest`` is not the published one, or None."""
    if asset.size is not None and size != asset.size:
        return f"size {size} B, expected {asset.size} B (truncated or wrong file)"
    expected = asset.sha256 or asset.sha256_prefix
    if digest is not None and expected is not None and not digest.startswith(expected):
        return f"sha256 {digest[:16]}... does not match the published {expected[:16]}..."
    return None


def inspect_file(asset: Asset, path: Path, *, verify_hash: bool = True, root: str | os.PathLike | None = None,
                 recorded: Record | None = None) -> FileCheck:
    """Verify one existing file against what is published and what the ledger recorded.

    Args:
        asset: its registry entry.
        path: the file.
        verify_hash: hash and read the file; False compares only sizes (published and recorded).
        root: weights directory (for the fix commands in messages).
        recorded: the file's ledger record, if any.
    """
    size = path.stat().st_size
    if not verify_hash:
        problem = published_mismatch(asset, size, None)
        if problem is not None:
            return FileCheck("corrupt", problem)
        if recorded is not None and recorded.size != size:
            return FileCheck("changed", changed_message(asset, root, recorded, size=size))
        return FileCheck("present", f"{size} B, not verified")
    digest = file_sha256(path)
    problem = published_mismatch(asset, size, digest)
    if problem is None:
        ok, detail = readable(path)
        problem = None if ok else detail
    if problem is not None:
        return FileCheck("corrupt", problem, digest)
    if recorded is not None and recorded.sha256 != digest:
        return FileCheck("changed", changed_message(asset, root, recorded, sha256=digest), digest)
    if asset.sha256 is not None or asset.sha256_prefix is not None:
        return FileCheck("valid", f"sha256 {digest[:16]}... matches the published checksum", digest)
    if asset.size is not None:
        return FileCheck("valid", f"size matches the published {size} B and the file reads", digest)
    if recorded is not None:
        return FileCheck("present", f"sha256 {digest[:16]}... matches the one recorded {recorded.recorded} "
                                    "(no published checksum)", digest)
    return FileCheck("present", f"{size} B, reads; no published checksum and none recorded", digest)


def file_state(asset: Asset, path: Path, *, verify_hash: bool = True, root: str | os.PathLike | None = None,
               recorded: Record | None = None) -> tuple[str, str]:
    """``(state, detail)`` of :func:`inspect_file`."""
    found = inspect_file(asset, path, verify_hash=verify_hash, root=root, recorded=recorded)
    return found.state, found.detail


def check_asset(asset: Asset, root: str | os.PathLike | None = None, *, verify_hash: bool = True,
                record_new: bool = False) -> AssetStatus:
    """The :class:`AssetStatus` of one asset under ``root``.

    Args:
        asset: its registry entry.
        root: weights directory (default ``weights_dir()``).
        verify_hash: hash and read the file (else sizes only).
        record_new: record the SHA-256 of a usable, hashed file that has no ledger record yet (its first check).

    Raises:
        LedgerError: the ledger exists but is unreadable.
    """
    path = weights_dir(root) / asset.filename
    if path.is_file():
        recorded = lookup_record(asset, root)
        found = inspect_file(asset, path, verify_hash=verify_hash, root=root, recorded=recorded)
        new = record_new and recorded is None and found.sha256 is not None and found.state in USABLE_STATES
        detail = found.detail
        if new:
            entry = record(asset, root, found.sha256, path.stat().st_size, "found in place")
            detail = f"{detail}; sha256 {entry.sha256[:16]}... recorded now"
        return AssetStatus(asset.name, path, found.state, detail, asset.features, found.sha256, new)
    converted = converted_path(path)
    if converted is not None and converted_present(converted):
        state, detail = "present", f"only the converted form {converted.name} is present"
    else:
        state, detail = "missing", how_to_get(asset, root)
    return AssetStatus(asset.name, path, state, detail, asset.features)


def check(root: str | os.PathLike | None = None, verify_hash: bool = True, *, names: Iterable[str] | None = None,
          registry: Mapping[str, Asset] | None = None, record_new: bool = False) -> list[AssetStatus]:
    """Check every asset (or ``names``) under the weights directory ``root``.

    Args:
        root: weights directory (default ``weights_dir()``).
        verify_hash: compute checksums and read files; False only compares sizes (fast).
        names: restrict to these registry names (default: all, in registry order).
        registry: the table to check (default ``REGISTRY``).
        record_new: record the SHA-256 of usable files the ledger does not know yet (trust on first use).

    Returns:
        one :class:`AssetStatus` per asset.

    Raises:
        LedgerError: the ledger exists but is unreadable.
    """
    table = REGISTRY if registry is None else registry
    selected = list(table) if names is None else list(dict.fromkeys(names))
    return [check_asset(lookup(n, table), root, verify_hash=verify_hash, record_new=record_new) for n in selected]


def available_features(statuses: Iterable[AssetStatus]) -> dict[str, bool]:
    """Feature -> whether at least one asset providing it is usable ('valid' or 'present')."""
    out: dict[str, bool] = {}
    for status in statuses:
        for feature in status.features:
            out[feature] = out.get(feature, False) or status.usable
    return out
