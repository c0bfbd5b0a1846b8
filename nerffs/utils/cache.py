"""The cache layer under every per-face result: where entries live, how they are keyed, written and verified.

* Location: ``faces_dir(root)`` is ``root`` when given, else ``<cache root>/faces`` (the cache root is
  ``torch_utils.files.cache_root``: ``$NERFFS_CACHE``, or ``~/.cache/nerffs`` when unset or empty). The face
  cache (``nerffs.talking.cache``) keeps its entries there and PTI (``nerffs.inversion.cache``) in its
  ``inversion`` folder, so ``scripts.invert`` and ``scripts.talk`` read and write the same entries.
* Keys: ``content_key`` hashes the content of everything a result depends on (image bytes, tensors, settings);
  a model enters through ``weights_fingerprint``, the one fingerprint of a model's weights, whoever loaded it.
* Entries: ``save_entry`` writes a safetensors file and then a JSON record (format, SHA-256 of the tensor
  file, plain values), each atomically; ``load_entry`` returns an entry only when the record parses, its format
  matches and the checksum holds. A damaged entry is logged, deleted and recomputed by the caller.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from nerffs.utils.io import atomic_write_text, file_sha256, save_safetensors
from torch_utils.files import cache_root

log = logging.getLogger(__name__)

FACES = "faces"
"""Folder of the per-face results under the cache root."""

Entry = tuple[dict[str, torch.Tensor], dict[str, Any]]
"""(tensors, plain values) of a verified entry."""


def faces_dir(root: str | os.PathLike | None = None) -> Path:
    """Where per-face results live: ``root`` if given, else ``<cache root>/faces``."""
    return Path(root).expanduser() if root is not None else cache_root() / FACES


# ---- keys ------------------------------------------------------------------------------------------------------
def hash_part(digest: hashlib._Hash, part: Any) -> None:
    """Feed one value into ``digest``: arrays and tensors as dtype, shape and raw bytes, bytes as they are,
    anything else as canonical JSON (dataclasses by their fields)."""
    if isinstance(part, torch.Tensor):
        part = part.detach().cpu().contiguous().numpy()
    if isinstance(part, np.ndarray):
        digest.update(str((part.dtype.str, part.shape)).encode())
        digest.update(np.ascontiguousarray(part).tobytes())
    elif isinstance(part, (bytes, bytearray)):
        digest.update(part)
    else:
        digest.update(json.dumps(part, sort_keys=True, default=_jsonable).encode())


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return repr(obj)


def content_key(*parts: Any) -> str:
    """SHA-256 over ``parts`` in order (see ``hash_part``), as its first 32 hex digits."""
    digest = hashlib.sha256()
    for part in parts:
        hash_part(digest, part)
        digest.update(b"|")
    return digest.hexdigest()[:32]


def tensors_key(tensors: Mapping[str, torch.Tensor]) -> str:
    """``content_key`` of named tensors: names, dtypes, shapes and values, in name order."""
    return content_key(*[x for name in sorted(tensors) for x in (name, tensors[name])])


def weights_fingerprint(module: torch.nn.Module) -> str:
    """The fingerprint of a model's weights (every parameter and buffer): equal for equal weights however they
    were loaded, so it identifies the model in every cache key."""
    return tensors_key(module.state_dict())


# ---- entries ---------------------------------------------------------------------------------------------------
def save_entry(data: Path, record: Path, fmt: str | int, tensors: Mapping[str, torch.Tensor],
               values: Mapping[str, Any]) -> None:
    """Write ``tensors`` to ``data`` (safetensors), then the JSON ``record``: ``format``, the ``sha256`` of
    ``data`` and ``values``. The record comes last, so an entry without it is incomplete."""
    save_safetensors(data, tensors)
    text = json.dumps({"format": fmt, "sha256": file_sha256(data), **values}, indent=1, sort_keys=True)
    atomic_write_text(record, text + "\n")


def load_entry(data: Path, record: Path, fmt: str | int,
               check: Callable[[dict[str, torch.Tensor], dict[str, Any]], None] | None = None) -> Entry | None:
    """The entry written by ``save_entry``, verified; None when there is none.

    Args:
        data, record: the entry's tensor file and JSON record.
        fmt: the format the record must state.
        check: further verification (e.g. tensor shapes against a model); raises when the entry is unusable.

    Returns:
        (tensors, record values), or None when neither file exists or the entry is damaged; a damaged entry is
        logged and deleted, so the caller recomputes and rewrites it.
    """
    if not data.exists() and not record.exists():
        return None
    try:
        values = json.loads(record.read_text())
        if values.get("format") != fmt:
            raise ValueError(f"format {values.get('format')!r}, expected {fmt!r}")
        if file_sha256(data) != values.get("sha256"):
            raise ValueError("checksum mismatch")
        tensors = load_file(str(data))
        if check is not None:
            check(tensors, values)
        return tensors, values
    except Exception as exc:  # any damage: recompute rather than trust it
        log.warning("cache entry %s is damaged (%s: %s); recomputing", data, type(exc).__name__, exc)
        data.unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        return None
