"""Safe reading of official checkpoint files and strict loading with one-line error messages.

Nothing here executes code from a file: ``.safetensors`` are read with safetensors, ``.pt``/``.pth`` with
``torch.load(weights_only=True)`` (tensors and plain containers only). Official pickles of the StyleNeRF
generator go through ``stylenerf.legacy`` instead.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nerffs.errors import CheckpointError, WeightsMissingError


def read_state_dict(path: str | os.PathLike, *, key: str | None = None, prefix: str | None = None,
                    what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a flat ``name -> tensor`` mapping from a .safetensors or .pt/.pth file without executing code.

    Args:
        path: the file.
        key: for torch files, the entry of the top-level dict holding the state dict (e.g. ``'net_recon'``,
            ``'model'``, ``'model_state_dict'``); None uses the top level.
        prefix: keep only names starting with this prefix and strip it (e.g. ``'audio2exp.'``).
        what: human name of the asset, used in error messages.

    Returns:
        dict name -> tensor (on CPU).

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: the file cannot be read safely or does not hold the expected entries.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsMissingError(f"{what} not found at {p}; place the file there (see README 'Weights')")
    try:
        if p.suffix == ".safetensors":  # read only the tensors asked for (bundles hold several models)
            from safetensors import safe_open

            with safe_open(str(p), framework="pt", device="cpu") as f:
                state: Any = {k: f.get_tensor(k) for k in f.keys() if prefix is None or k.startswith(prefix)}
        else:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that needs code execution
        raise CheckpointError(f"{what} at {p} is unreadable or unsafe ({_load_failure(exc)}); re-download it") \
            from exc
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            keys = list(state)[:8] if isinstance(state, Mapping) else type(state).__name__
            raise CheckpointError(f"{what} at {p} has no entry {key!r} (found {keys}); is it the right file?")
        state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{what} at {p} does not hold a state dict (got {type(state).__name__})")
    out = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if prefix is not None:
        out = {k[len(prefix):]: v for k, v in out.items() if k.startswith(prefix)}
        if not out:
            raise CheckpointError(f"{what} at {p} has no tensors under prefix {prefix!r}; is it the right file?")
    return out


def _load_failure(exc: BaseException) -> str:
    """The reason a file failed to load, in a few words.

    torch's weights-only refusal opens with a generic paragraph that suggests ``weights_only=False`` (which
    would run code from the file); only the unpickler's own reason after ``WeightsUnpickler error:`` is kept.
    Other messages are cut at their first sentence.
    """
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        reason = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        return f"the safe loader refused it: {reason[:160] or type(exc).__name__}; not a plain tensor checkpoint"
    first = text.splitlines()[0] if text else ""
    first = first.split(". ", 1)[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def safetensors_keys(path: str | os.PathLike) -> list[str]:
    """Tensor names of a .safetensors file, from its header only (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return list(f.keys())
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}); re-download it") \
            from exc


def load_strict(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with a one-line report of every mismatch.

    Raises:
        CheckpointError: names missing, unexpected, or of the wrong shape (first few listed).
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)}!={tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            problems.append(f"{len(items)} {label} ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''})")
    if problems:
        raise CheckpointError(f"{what} does not match the model: {'; '.join(problems)}; "
                              "is it the right file and model variant?")
    module.load_state_dict(dict(state_dict), strict=True)
