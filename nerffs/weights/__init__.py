"""Pretrained weights: registry, verified resumable download, licence gating, one-time conversion, checks.

The weights directory is ``$NERFFS_WEIGHTS`` (default ``~/.cache/nerffs/weights``); each asset of ``REGISTRY`` has a
fixed relative path in it. Typical use::

    from nerffs import weights
    path = weights.resolve("sadtalker")          # WeightsMissingError names the exact fetch command
    weights.missing(["stylenerf_ffhq512", "deep3d"])
    weights.download("deep3d")                  # .part + Range resume + checks + atomic rename + sha256 recorded
    weights.convert("stylenerf_ffhq512")        # once; resolve() then returns the converted form
    weights.available_features(weights.check())
    weights.read_ledger()                       # relative file -> sha256, size, when and where first seen

Command line: ``python -m scripts.download_weights --help``.

Modules: ``registry`` (the table), ``paths`` (directory, resolve, fetch command), ``ledger`` (the SHA-256 of
each file as first seen, ``<weights dir>/checksums.json``), ``verify`` (checks), ``download`` (HTTP),
``convert`` (safetensors conversion).
"""
from __future__ import annotations

from nerffs.errors import ChecksumError, DownloadError, LedgerError, LicenceNotAcceptedError
from nerffs.weights.convert import convert
from nerffs.weights.download import download, licence_notice, require_acceptance, sources
from nerffs.weights.ledger import LEDGER_NAME, Record, forget, ledger_path, read_ledger
from nerffs.weights.paths import (ENV_VAR, asset_path, conversion_is_fresh, converted_path, fetch_command, missing,
                                  missing_message, resolve, weights_dir)
from nerffs.weights.registry import DEFAULT_PROVIDERS, FEATURES, REGISTRY, Asset, lookup, names_for_features
from nerffs.weights.verify import (STATES, AssetStatus, FileCheck, available_features, check, check_asset, file_state,
                                  inspect_file, readable)

__all__ = ["DEFAULT_PROVIDERS", "ENV_VAR", "FEATURES", "LEDGER_NAME", "REGISTRY", "STATES", "Asset", "AssetStatus",
           "ChecksumError", "DownloadError", "FileCheck", "LedgerError", "LicenceNotAcceptedError", "Record",
           "asset_path", "available_features", "check", "check_asset", "conversion_is_fresh", "convert",
           "converted_path", "download", "fetch_command", "file_state", "forget", "inspect_file", "ledger_path",
           "licence_notice", "lookup", "missing", "missing_message", "names_for_features", "read_ledger", "readable",
           "require_acceptance", "resolve", "sources", "weights_dir"]
