"""Safe reading of official checkpoint files and strict loading with one-line error messages.

Nothing here executes code from a file: ``.safetensors`` are read with safetensors, ``.pt``/``.pth`` with
``torch.load(weights_only=True)`` (tensors and plain containers only). Official pickles of the StyleNeRF
generator go through ``stylenerf.legacy`` instead.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import safe_open

from nerffs.errors import CheckpointError, WeightsMissingError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=torch.nn.Module)


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


def load_with_counters(module: M, state_dict: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> M:
    """``load_strict`` after filling absent BatchNorm ``num_batches_tracked`` counters with 0 (they only matter
    for training and the SadTalker files may not store them); returns ``module`` in eval mode."""
    state = dict(state_dict)
    for name, buf in module.state_dict().items():
        if name.endswith(".num_batches_tracked") and name not in state:
            state[name] = torch.zeros_like(buf)
    load_strict(module, state, what=what)
    return module.eval()


def load_sadtalker_network(model: M, path: str | os.PathLike, part: str, legacy_file: str,
                           device: torch.device | str = "cpu") -> M:
    """Load one SadTalker network from either official format, chosen by the file extension.

    Args:
        model: the network, freshly built (its class names it in messages).
        path: ``*.safetensors`` (the SadTalker bundle: the entries under ``'<part>.'``) or ``*.pth``/``*.pt``
            (the network's own file: its ``'model'`` entry), read without executing code.
        part: the network's prefix in the bundle (``'audio2exp'``, ``'audio2pose'``).
        legacy_file: the name of its own ``.pth`` file, offered in the unknown-extension message.
        device: where to put the network.

    Returns:
        ``model`` with the weights (``load_with_counters``), in eval mode, on ``device``.

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: unknown extension, unreadable file, no entries for ``part``, or missing, unexpected or
            misshaped keys.
    """
    name = type(model).__name__
    suffix = Path(path).suffix.lower()
    if suffix == ".safetensors":
        what = f"SadTalker safetensors ({part} part)"
        state = read_state_dict(path, prefix=f"{part}.", what=what)
    elif suffix in (".pth", ".pt"):
        what = f"{name} .pth checkpoint"
        state = read_state_dict(path, key="model", what=what)
    else:
        raise CheckpointError(f"{name} weights {path} have an unknown extension {suffix!r}; pass "
                              f"SadTalker_V0.0.2_256.safetensors or {legacy_file}")
    load_with_counters(model, state, what=what)
    log.info("loaded %s from %s", name, path)
    return model.to(device)
