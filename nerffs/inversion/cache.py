"""Per-face cache of inversion results, keyed by everything that decides the result.

Layout: ``<cache_dir>/<key>/`` with

* ``result.safetensors``: ``ws`` [1, num_ws, w_dim], ``bg_latent`` [1, z_dim_bg] and the tuned generator's
  full state dict under ``g.<name>`` (parameters and buffers, official names). The full state is stored
  rather than the difference from the base weights: safetensors does not compress, so a delta would be just
  as large, and applying it would silently depend on the base tensors being bit-identical.
* ``meta.json``: format, the key and the fields it was made from, the SHA-256 of ``result.safetensors``,
  tensor shapes and the loss summary. It is written last, so an entry without it is incomplete.
* ``checkpoint.safetensors``: only while a run is unfinished (see ``checkpoint.py``); deleted at the end.

An entry is used only after verification (meta parses, key and format match, file checksum matches, tensor
names and shapes fit the generator). A failing entry is logged, deleted and recomputed. Nothing is pickled:
tensors are safetensors, everything else JSON.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nerffs.inversion.checkpoint import tensor_digest
from nerffs.inversion.common import save_safetensors
from nerffs.utils.io import atomic_write_text, file_sha256
from nerffs.utils.logging import get_logger
from stylenerf import Generator

logger = get_logger(__name__)

FORMAT = "nerffs.inversion.result"
FORMAT_VERSION = 1
RESULT_NAME = "result.safetensors"
META_NAME = "meta.json"
CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class CachedInversion:
    """A verified cache entry: ws [1, num_ws, w_dim], bg_latent [1, z_dim_bg], generator_state, losses."""

    ws: torch.Tensor
    bg_latent: torch.Tensor
    generator_state: dict[str, torch.Tensor]
    losses: dict[str, Any]


def _sha256_tensor(t: torch.Tensor) -> str:
    return tensor_digest({"t": t.to(torch.float32)})


def weights_fingerprint(g: Generator, base_weights_id: str) -> str:
    """Identity of the base weights: ``base_weights_id`` unless it is 'random', else a hash of the state dict."""
    if base_weights_id != "random":
        return base_weights_id
    return "state:" + tensor_digest(g.state_dict())


def cache_key_fields(g: Generator, image: torch.Tensor, cam2world: torch.Tensor, settings: dict[str, Any],
                     base_weights_id: str, lpips_ids: dict[str, str], rng_state: torch.Tensor) -> dict[str, Any]:
    """The JSON-able fields an inversion result depends on.

    Args:
        g: base generator (its config always enters; its weights when ``base_weights_id`` is 'random').
        image: [1, 3, R, R] target after resizing (hashed as float32 bytes: the pixels, not the file).
        cam2world: [1, 4, 4] camera.
        settings: ``InversionConfig.result_settings()``.
        base_weights_id: e.g. the sha256 of the weights file; 'random' = hash the weights in memory.
        lpips_ids: LPIPS fingerprints per stage.
        rng_state: ``torch.Generator.get_state()`` at the start of the inversion.
    """
    return {"format": f"{FORMAT}/{FORMAT_VERSION}", "image_sha256": _sha256_tensor(image.detach().cpu()),
            "cam2world_sha256": _sha256_tensor(cam2world.detach().cpu()),
            "base_weights": weights_fingerprint(g, base_weights_id), "generator_config": g.cfg.to_dict(),
            "settings": settings, "lpips": lpips_ids, "rng_state_sha256": tensor_digest({"rng": rng_state})}


def cache_key(fields: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``fields``."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def entry_dir(cache_dir: Path, key: str) -> Path:
    """Directory of the entry for ``key``."""
    return Path(cache_dir) / key


def save_entry(directory: Path, key: str, fields: dict[str, Any], ws: torch.Tensor, bg_latent: torch.Tensor,
               generator_state: dict[str, torch.Tensor], losses: dict[str, Any]) -> None:
    """Write ``result.safetensors`` then ``meta.json`` (each atomically) and drop the run checkpoint."""
    tensors = {"ws": ws, "bg_latent": bg_latent, **{f"g.{k}": v for k, v in generator_state.items()}}
    result = directory / RESULT_NAME
    save_safetensors(result, tensors)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "key": key, "key_fields": fields,
            "result_sha256": file_sha256(result), "shapes": {"ws": list(ws.shape), "bg_latent": list(bg_latent.shape)},
            "num_generator_tensors": len(generator_state), "losses": losses}
    atomic_write_text(directory / META_NAME, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    (directory / CHECKPOINT_NAME).unlink(missing_ok=True)


def load_entry(directory: Path, key: str, g: Generator) -> CachedInversion | None:
    """Return the verified entry, or None when there is none; a damaged entry is deleted (with a warning)."""
    if not (directory / META_NAME).exists() and not (directory / RESULT_NAME).exists():
        return None
    try:
        return _read_verified(directory, key, g)
    except Exception as exc:  # any failure means the entry cannot be trusted
        logger.warning("inversion cache entry %s is damaged (%s: %s); recomputing", directory,
                       type(exc).__name__, exc)
        for name in (META_NAME, RESULT_NAME):
            (directory / name).unlink(missing_ok=True)
        return None


def _read_verified(directory: Path, key: str, g: Generator) -> CachedInversion:
    from safetensors.torch import load_file

    meta = json.loads((directory / META_NAME).read_text())
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION or meta.get("key") != key:
        raise ValueError("format or key mismatch")
    if file_sha256(directory / RESULT_NAME) != meta.get("result_sha256"):
        raise ValueError("checksum mismatch")
    tensors = load_file(str(directory / RESULT_NAME))
    state = {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}
    own = g.state_dict()
    if set(state) != set(own) or any(state[k].shape != v.shape for k, v in own.items()):
        raise ValueError("generator tensors do not match the model")
    expect = {"ws": (1, g.num_ws, g.w_dim), "bg_latent": (1, g.cfg.nerf.z_dim_bg)}
    for name, shape in expect.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}, expected {shape}")
    return CachedInversion(ws=tensors["ws"], bg_latent=tensors["bg_latent"], generator_state=state,
                           losses=meta.get("losses", {}))


def clear_entry(directory: Path) -> None:
    """Remove an entry directory entirely (results and checkpoint)."""
    shutil.rmtree(directory, ignore_errors=True)
