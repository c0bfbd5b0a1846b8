"""One-time conversion of official weight files to safetensors next to the originals (style rule 6).

* StyleNeRF ``.pkl`` -> ``<stem>.converted/{config.json, model.safetensors, official.json}`` through
  ``stylenerf.io.convert_official_pickle`` (allow-list unpickler; no code from the pickle runs).
* ``.pth`` / ``.pt`` / ``.model`` -> ``<stem>.safetensors`` holding the state dict (read with
  ``torch.load(weights_only=True)``; the asset's ``convert_key`` entry, names prefixed with ``convert_prefix`` so the
  file reads like the official bundle), plus ``<stem>.convert.json`` recording the source.
* ``.safetensors`` and ``.mat`` files are used as they are.

Every converted safetensors header records ``source_size``; ``nerffs.weights.resolve`` only prefers a conversion
made from the file now present.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import save_file

from nerffs.errors import CheckpointError, WeightsMissingError
from nerffs.utils.checkpoint import read_state_dict
from nerffs.utils.io import atomic_path, atomic_write_text, file_sha256
from nerffs.weights.paths import PICKLE_SUFFIXES, conversion_is_fresh, converted_path, missing_message, weights_dir
from nerffs.weights.registry import Asset, lookup
from stylenerf.io import GeneratorCheckpointError, convert_official_pickle

log = logging.getLogger(__name__)

FORMAT_NAME = "nerffs.weights.state_dict"
"""``format`` entry of the safetensors header of a converted torch file."""
RECORD_SUFFIX = ".convert.json"


def record_path(converted: Path) -> Path:
    """The JSON record written beside a converted ``<stem>.safetensors``: ``<stem>.convert.json``."""
    return converted.with_name(converted.stem + RECORD_SUFFIX)


def _source_metadata(src: Path) -> dict[str, str]:
    return {"source_file": src.name, "source_size": str(src.stat().st_size), "source_sha256": file_sha256(src)}


def _convert_torch(asset: Asset, src: Path, out: Path) -> Path:
    """``.pth``-style file -> ``out`` (.safetensors) + JSON record."""
    state = read_state_dict(src, key=asset.convert_key, what=f"{asset.name} checkpoint")
    if not state:
        raise CheckpointError(f"{asset.name} checkpoint at {src} holds no tensors; is it the right file?")
    # Own contiguous copies: safetensors refuses tensors that share storage.
    tensors = {asset.convert_prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    source = _source_metadata(src)
    header = {"format": FORMAT_NAME, "asset": asset.name, "source_key": asset.convert_key or "",
              "name_prefix": asset.convert_prefix, **source}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    record = {**header, "tensors": len(tensors), "converted_file": out.name}
    atomic_write_text(record_path(out), json.dumps(record, indent=2, sort_keys=True) + "\n")
    log.info("%s: converted %s -> %s (%d tensors)", asset.name, src.name, out, len(tensors))
    return out


def _convert_pickle(asset: Asset, src: Path, out: Path) -> Path:
    """StyleNeRF pickle -> converted directory, errors as one-line ``CheckpointError``."""

    try:
        return convert_official_pickle(src, out)
    except (pickle.UnpicklingError, ValueError, GeneratorCheckpointError) as exc:  # unsafe or not a StyleNeRF pickle
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot convert {asset.name} ({src}): {first}; re-download it with "
                              f"`python -m scripts.download_weights {asset.name} --force`") from exc


def convert(name: str, root: str | os.PathLike | None = None, *, force: bool = False,
            registry: Mapping[str, Asset] | None = None) -> Path | None:
    """Convert asset ``name`` once into its safetensors form next to the original.

    Args:
        name: registry name.
        root: weights directory (default ``weights_dir()``).
        force: convert again even if a fresh conversion exists.
        registry: table to look ``name`` up in (default ``REGISTRY``).

    Returns:
        the converted path (a ``.safetensors`` file or a StyleNeRF ``.converted`` directory), or None for files
        used as they are (``.safetensors``, ``.mat``).

    Raises:
        WeightsMissingError: the original is absent (the message says how to fetch it).
        CheckpointError: the original cannot be read safely or holds no state dict.
    """
    asset = lookup(name, registry)
    src = weights_dir(root) / asset.filename
    if not src.is_file():
        raise WeightsMissingError(missing_message(asset, root))
    out = converted_path(src)
    if out is None:
        log.info("%s: %s is used as it is (no conversion needed)", name, src.name)
        return None
    if not force and conversion_is_fresh(src, out):
        log.info("%s: %s is up to date", name, out)
        return out
    if src.suffix.lower() in PICKLE_SUFFIXES:
        return _convert_pickle(asset, src, out)
    return _convert_torch(asset, src, out)
