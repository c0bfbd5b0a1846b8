"""Resumable snapshots of an optimisation stage (projection or tuning), stored as one safetensors file.

A snapshot holds the stage variables, the Adam state, the random-generator state and the loss history, so a
run restarted from it continues exactly where the interrupted run was: with the same inputs and seed the
resumed run reaches the same result as an uninterrupted one. Non-tensor parts (step, stage, loss history,
optimiser hyper-parameters) are JSON in the safetensors header metadata, together with a content key over
every tensor (``nerffs.utils.cache.tensors_key``) that is verified on load; a snapshot failing any check is
ignored (the stage restarts).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from nerffs.utils.cache import tensors_key
from nerffs.utils.io import save_safetensors

log = logging.getLogger(__name__)

FORMAT = "nerffs.inversion.checkpoint/2"


@dataclass
class StageState:
    """A stage's progress.

    Attributes:
        stage: 'projection' or 'tuning'.
        step: optimisation steps completed.
        variables: stage tensors by name (projection: ``w_opt`` [1, 1, w_dim], ``bg`` [1, z_dim_bg]; tuning:
            ``g.<parameter name>``) plus any context the orchestrator adds (``ws``, ``bg``).
        optimizer: ``torch.optim.Optimizer.state_dict()`` (None before the first step).
        rng_state: ``torch.Generator.get_state()`` (uint8) or None when the stage draws no random numbers.
        losses: per-step loss history, name -> list of floats.
        info: small JSON-able extras (e.g. the projection's loss history carried into the tuning stage).
    """

    stage: str
    step: int
    variables: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None = None
    rng_state: torch.Tensor | None = None
    losses: dict[str, list[float]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


def _flatten(state: StageState) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {f"var.{k}": v.detach().to("cpu").contiguous().clone() for k, v in state.variables.items()}
    meta: dict[str, Any] = {"format": FORMAT, "stage": state.stage, "step": state.step, "losses": state.losses,
                            "info": state.info, "optimizer": None}
    if state.rng_state is not None:
        tensors["rng_state"] = state.rng_state.clone()
    if state.optimizer is not None:
        scalars: dict[str, dict[str, Any]] = {}
        for idx, entry in state.optimizer["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"opt.{idx}.{key}"] = value.detach().to("cpu").contiguous().clone()
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        meta["optimizer"] = {"param_groups": state.optimizer["param_groups"], "scalars": scalars}
    return tensors, meta


def _unflatten(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> StageState:
    variables = {k[4:]: v for k, v in tensors.items() if k.startswith("var.")}
    optimizer = None
    if meta["optimizer"] is not None:
        per_param: dict[int, dict[str, Any]] = {}
        for name, value in tensors.items():
            if name.startswith("opt."):
                _, idx, key = name.split(".", 2)
                per_param.setdefault(int(idx), {})[key] = value
        for idx, entry in meta["optimizer"]["scalars"].items():
            per_param.setdefault(int(idx), {}).update(entry)
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()}
                  for g in meta["optimizer"]["param_groups"]]
        optimizer = {"state": per_param, "param_groups": groups}
    return StageState(stage=meta["stage"], step=int(meta["step"]), variables=variables, optimizer=optimizer,
                      rng_state=tensors.get("rng_state"), losses=meta["losses"], info=meta["info"])


def save_state(path: Path, state: StageState) -> None:
    """Write ``state`` to ``path`` atomically (a crash mid-write leaves the previous snapshot intact)."""
    tensors, meta = _flatten(state)
    meta["digest"] = tensors_key(tensors)
    save_safetensors(path, tensors, metadata={"nerffs": json.dumps(meta)})
    log.debug("checkpoint %s: %s step %d", path, state.stage, state.step)


def load_state(path: Path) -> StageState | None:
    """Read a snapshot; None (with a warning) when it is absent, unreadable, foreign or fails its checksum."""
    if not path.is_file():
        return None

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["nerffs"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}")
        if tensors_key(tensors) != meta.get("digest"):
            raise ValueError("checksum mismatch")
        return _unflatten(tensors, meta)
    except Exception as exc:  # any damage means: start the stage again
        log.warning("ignoring damaged inversion checkpoint %s (%s: %s); restarting", path,
                       type(exc).__name__, exc)
        return None


class Checkpointer:
    """Saves a ``StageState`` every ``every`` steps to one file; ``None``-safe helpers for the loops.

    Args:
        path: snapshot file (``<cache entry>/checkpoint.safetensors``).
        every: save after every ``every``-th completed step (0 disables periodic saves).
    """

    def __init__(self, path: Path, every: int) -> None:
        self.path, self.every = path, every
        self.context: dict[str, torch.Tensor] = {}
        """Tensors added to every snapshot (e.g. the pivot ``ws``/``bg`` during tuning)."""
        self.info: dict[str, Any] = {}

    def due(self, steps_done: int, total: int) -> bool:
        """True when a snapshot should be written after ``steps_done`` steps (never after the last one)."""
        return self.every > 0 and steps_done % self.every == 0 and steps_done < total

    def save(self, state: StageState) -> None:
        state.variables = {**self.context, **state.variables}
        state.info = {**self.info, **state.info}
        save_state(self.path, state)

    def load(self) -> StageState | None:
        return load_state(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
