"""Per-face cache of inversion results: PTI's use of the shared cache layer (``nerffs.utils.cache``).

Location: ``inversion_dir(faces)``, the ``inversion`` folder of the per-face cache, for every caller: the
pipeline's identity step (``scripts.talk``) and ``scripts.invert`` read and write the same entries. An entry
is ``<inversion dir>/<key>/`` with

* ``result.safetensors``: ``ws`` [1, num_ws, w_dim], ``bg_latent`` [1, z_dim_bg] and the tuned generator's
  full state dict under ``g.<name>`` (parameters and buffers, official names). The full state is stored
  rather than the difference from the base weights: safetensors does not compress, so a delta would be just
  as large, and applying it would silently depend on the base tensors being bit-identical.
* ``meta.json``: the shared layer's record (format, SHA-256 of ``result.safetensors``) with the key and the
  fields it was made from, tensor shapes and the loss summary. It is written last, so an entry without it is
  incomplete.
* ``checkpoint.safetensors``: only while a run is unfinished (see ``checkpoint.py``); deleted at the end.

The key is a ``content_key`` of everything the result depends on: the target pixels, the camera, the base
generator (its ``weights_fingerprint`` and config: equal weights share entries however they were loaded), the
settings, the LPIPS metrics' fingerprints and the random state. An entry is used only after verification
(record, format, checksum, key, tensor names and shapes against the generator); a failing entry is logged,
deleted and recomputed. Nothing is pickled: tensors are safetensors, everything else JSON.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nerffs.utils.cache import content_key, faces_dir, load_entry, save_entry, weights_fingerprint
from stylenerf import Generator

FORMAT = "nerffs.inversion.result/2"
RESULT_NAME = "result.safetensors"
META_NAME = "meta.json"
CHECKPOINT_NAME = "checkpoint.safetensors"
INVERSION = "inversion"
"""Folder of the inversion entries inside the per-face cache."""


def inversion_dir(faces: str | os.PathLike | None = None) -> Path:
    """Where inversion entries live: ``<faces>/inversion`` (None: the default per-face cache, ``faces_dir()``)."""
    return faces_dir(faces) / INVERSION


@dataclass
class CachedInversion:
    """A verified cache entry: ws [1, num_ws, w_dim], bg_latent [1, z_dim_bg], generator_state, losses."""

    ws: torch.Tensor
    bg_latent: torch.Tensor
    generator_state: dict[str, torch.Tensor]
    losses: dict[str, Any]


def cache_key_fields(g: Generator, image: torch.Tensor, cam2world: torch.Tensor, settings: dict[str, Any],
                     lpips_ids: dict[str, str], rng_state: torch.Tensor) -> dict[str, Any]:
    """The JSON-able fields an inversion result depends on.

    Args:
        g: base generator (its weights fingerprint and config).
        image: [1, 3, R, R] target after resizing (the pixels, not the file).
        cam2world: [1, 4, 4] camera.
        settings: ``InversionConfig.result_settings()``.
        lpips_ids: ``weights_fingerprint`` of the LPIPS metric per stage.
        rng_state: ``torch.Generator.get_state()`` at the start of the inversion.
    """
    return {"format": FORMAT, "image": content_key(image), "cam2world": content_key(cam2world),
            "generator": weights_fingerprint(g), "generator_config": g.cfg.to_dict(), "settings": settings,
            "lpips": lpips_ids, "rng_state": content_key(rng_state)}


def cache_key(fields: dict[str, Any]) -> str:
    """The entry key of ``cache_key_fields``."""
    return content_key(fields)


def store_result(directory: Path, key: str, fields: dict[str, Any], ws: torch.Tensor, bg_latent: torch.Tensor,
                 generator_state: dict[str, torch.Tensor], losses: dict[str, Any]) -> None:
    """Write ``result.safetensors`` then ``meta.json`` (each atomically) and drop the run checkpoint."""
    tensors = {"ws": ws, "bg_latent": bg_latent, **{f"g.{k}": v for k, v in generator_state.items()}}
    values = {"key": key, "key_fields": fields, "shapes": {"ws": list(ws.shape), "bg_latent": list(bg_latent.shape)},
              "num_generator_tensors": len(generator_state), "losses": losses}
    save_entry(directory / RESULT_NAME, directory / META_NAME, FORMAT, tensors, values)
    (directory / CHECKPOINT_NAME).unlink(missing_ok=True)


def load_result(directory: Path, key: str, g: Generator) -> CachedInversion | None:
    """The verified entry, or None when there is none; a damaged entry is deleted (with a warning)."""

    def check(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
        if values.get("key") != key:
            raise ValueError("key mismatch")
        own = g.state_dict()
        state = {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}
        if set(state) != set(own) or any(state[k].shape != v.shape for k, v in own.items()):
            raise ValueError("generator tensors do not match the model")
        for name, shape in {"ws": (1, g.num_ws, g.w_dim), "bg_latent": (1, g.cfg.nerf.z_dim_bg)}.items():
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"{name} has shape {tuple(tensors[name].shape)}, expected {shape}")

    entry = load_entry(directory / RESULT_NAME, directory / META_NAME, FORMAT, check)
    if entry is None:
        return None
    tensors, values = entry
    return CachedInversion(ws=tensors["ws"], bg_latent=tensors["bg_latent"],
                           generator_state={k[2:]: v for k, v in tensors.items() if k.startswith("g.")},
                           losses=values.get("losses", {}))
