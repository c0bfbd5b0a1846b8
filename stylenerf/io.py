"""Saving and loading StyleNeRF generators as ``config.json`` + ``model.safetensors`` (style rule 6).

A converted generator is a directory with the typed ``GeneratorConfig`` as JSON and the ``G_ema`` tensors
(official names, spec 1.4) as safetensors; it is rebuilt from source and loaded with ``strict=True``. Official
``.pkl`` snapshots are read through ``stylenerf.legacy`` (no code from the file is executed) and can be
converted once with ``convert_official_pickle``; ``load_generator`` then prefers the converted directory
``<pkl stem>.converted/`` next to the pickle when it matches the pickle's size.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from stylenerf.config import GeneratorConfig
from stylenerf.generator import Generator
from stylenerf.legacy import config_from_official, describe_mismatch, read_official_pickle
from torch_utils.files import atomic_path, atomic_write_text, file_sha256, save_safetensors

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
OFFICIAL_NAME = "official.json"
"""Audit record written by the converter: resolved official kwargs and helper attributes (never read back)."""
FORMAT_NAME = "nerffs.stylenerf.generator"
FORMAT_VERSION = "1"
PICKLE_SUFFIXES = (".pkl", ".pickle")


class GeneratorCheckpointError(RuntimeError):
    """A generator file exists but cannot be used: unreadable, invalid config, or tensors that do not fit."""


# ---- helpers -------------------------------------------------------------------------------------------------------
def converted_dir_for(pkl_path: str | os.PathLike) -> Path:
    """Default output directory of ``convert_official_pickle``: ``<dir>/<stem>.converted``."""
    p = Path(pkl_path)
    return p.with_name(p.stem + ".converted")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


# ---- save ----------------------------------------------------------------------------------------------------------
def save_generator(cfg: GeneratorConfig, state_dict: Mapping[str, torch.Tensor], out_dir: str | os.PathLike, *,
                   metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``out_dir`` (each atomically).

    Args:
        cfg: generator configuration.
        state_dict: tensors with the official names (e.g. ``Generator.state_dict()``).
        out_dir: target directory (created if needed).
        metadata: extra string entries for the safetensors header (e.g. ``source_sha256``).

    Returns:
        ``out_dir`` as a Path.
    """
    out = Path(out_dir)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    header.update({k: str(v) for k, v in (metadata or {}).items()})
    save_safetensors(out / WEIGHTS_NAME, state_dict, metadata=header)
    with atomic_path(out / CONFIG_NAME) as tmp:
        cfg.to_json(tmp)
    log.info("saved generator (%d tensors, %d px) to %s", len(state_dict), cfg.img_resolution, out)
    return out


# ---- load ----------------------------------------------------------------------------------------------------------
def _read_weights(weights: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            header = dict(f.metadata() or {})
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as exc:  # safetensors raises its own error types for truncated/corrupt headers
        raise GeneratorCheckpointError(f"{weights} is unreadable ({_first_line(exc)}); re-convert the generator") \
            from exc
    fmt = header.get("format")
    if fmt is not None and fmt != FORMAT_NAME:
        raise GeneratorCheckpointError(f"{weights} holds {fmt!r}, not a StyleNeRF generator ({FORMAT_NAME})")
    return tensors, header


def _read_converted(weights: Path, cfg_path: Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    if not weights.is_file():
        raise FileNotFoundError(f"generator weights not found: {weights}")
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{CONFIG_NAME} not found beside {weights}; a converted generator needs both files")
    try:
        cfg = GeneratorConfig.from_json(cfg_path)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise GeneratorCheckpointError(f"{cfg_path} is not a valid generator config ({_first_line(exc)})") from exc
    tensors, _ = _read_weights(weights)
    return cfg, tensors


def _fresh_conversion(pkl: Path) -> Path | None:
    """The converted directory beside ``pkl`` if it exists and was made from a file of the same size."""
    converted = converted_dir_for(pkl)
    weights = converted / WEIGHTS_NAME
    if not (weights.is_file() and (converted / CONFIG_NAME).is_file()):
        return None
    try:
        _, header = _read_weights(weights)
    except GeneratorCheckpointError as exc:
        log.warning("ignoring %s: %s", converted, exc)
        return None
    if header.get("source_size") != str(pkl.stat().st_size):
        log.warning("ignoring %s: it was converted from a different file than %s (re-run the converter)",
                    converted, pkl)
        return None
    return converted


def load_generator_state(path: str | os.PathLike) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Read ``(config, state_dict)`` from a converted directory, a ``.safetensors`` file or an official ``.pkl``.

    Args:
        path: a directory with ``config.json`` + ``model.safetensors``; a ``.safetensors`` file with
            ``config.json`` beside it; or an official pickle (its ``<stem>.converted/`` directory is used when
            present and made from that file).

    Returns:
        the generator configuration and its tensors (CPU).

    Raises:
        FileNotFoundError: the file or a required companion is missing.
        GeneratorCheckpointError: unreadable weights, an invalid config, or an unsupported file type.
        stylenerf.legacy.UnsafePickleError, stylenerf.legacy.LegacyFormatError: for official pickles.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"generator checkpoint not found: {p}")
    if p.is_dir():
        return _read_converted(p / WEIGHTS_NAME, p / CONFIG_NAME)
    if p.suffix == ".safetensors":
        return _read_converted(p, p.with_name(CONFIG_NAME))
    if p.suffix in PICKLE_SUFFIXES:
        converted = _fresh_conversion(p)
        if converted is not None:
            log.info("using converted generator %s for %s", converted, p)
            return _read_converted(converted / WEIGHTS_NAME, converted / CONFIG_NAME)
        ckpt = read_official_pickle(p)
        cfg = config_from_official(ckpt.g_init_kwargs, ckpt.g_ema, synthesis_attrs=ckpt.synthesis_attrs)
        return cfg, ckpt.g_ema
    raise GeneratorCheckpointError(f"{p}: unsupported generator file type {p.suffix!r}; expected a directory, "
                                   f".safetensors or an official {'/'.join(PICKLE_SUFFIXES)}")


def load_state_checked(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True,
                       source: str = "checkpoint") -> None:
    """``load_state_dict`` with a one-line report; wrong shapes always fail, missing/unexpected only if strict.

    Raises:
        GeneratorCheckpointError: names or shapes do not match (the first few are listed).
    """
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state_dict.items()}
    problem = describe_mismatch(own, given)
    misshaped = [k for k in own if k in given and own[k] != given[k]]
    if problem and (strict or misshaped):
        raise GeneratorCheckpointError(f"{source} does not fit {type(module).__name__}: {problem}")
    if problem:
        log.warning("%s: loading non-strictly: %s", source, problem)
    module.load_state_dict({k: v for k, v in state_dict.items() if k in own}, strict=strict)


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu", *, strict: bool = True) -> Generator:
    """Build a ``Generator`` from a converted directory, ``.safetensors`` file or official pickle.

    Args:
        path: see ``load_generator_state``.
        device: target device.
        strict: require exactly the model's names (shape mismatches always fail).

    Returns:
        the generator in eval mode on ``device``.

    Raises:
        FileNotFoundError, GeneratorCheckpointError, UnsafePickleError, LegacyFormatError: see
            ``load_generator_state`` and ``load_state_checked``.
    """

    cfg, state = load_generator_state(path)
    generator = Generator(cfg)
    load_state_checked(generator, state, strict=strict, source=str(path))
    return generator.to(device).eval()


# ---- conversion ------------------------------------------------------------------------------------------------------
def dump_module_sources(sources: Mapping[str, str], out_dir: str | os.PathLike) -> Path:
    """Write each distinct embedded module source as text (``module_<sha12>.py.txt``) plus ``index.json``.

    The files are for auditing which code trained a checkpoint; they are never imported. Returns ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    index: dict[str, str] = {}
    for class_name, text in sorted(sources.items()):
        name = f"module_{hashlib.sha256(text.encode()).hexdigest()[:12]}.py.txt"
        if name not in index.values():
            atomic_write_text(out / name, text)
        index[class_name] = name
    atomic_write_text(out / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    return out


def convert_official_pickle(pkl_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                            sources_dir: str | os.PathLike | None = None) -> Path:
    """Convert an official StyleNeRF ``.pkl`` into a ``config.json`` + ``model.safetensors`` directory.

    Args:
        pkl_path: the official snapshot.
        out_dir: output directory; default ``<stem>.converted`` beside the pickle (found by ``load_generator``).
        sources_dir: if given, also write the embedded module sources there (``dump_module_sources``).

    Returns:
        the output directory.

    Raises:
        FileNotFoundError, UnsafePickleError, LegacyFormatError: see ``stylenerf.legacy.read_official_pickle``.
    """
    pkl = Path(pkl_path)
    ckpt = read_official_pickle(pkl)
    cfg = config_from_official(ckpt.g_init_kwargs, ckpt.g_ema, synthesis_attrs=ckpt.synthesis_attrs)
    out = Path(out_dir) if out_dir is not None else converted_dir_for(pkl)
    source = {"source_file": pkl.name, "source_sha256": file_sha256(pkl), "source_size": str(pkl.stat().st_size)}
    save_generator(cfg, ckpt.g_ema, out, metadata=source)
    audit: dict[str, Any] = {"source": source, "g_init_kwargs": ckpt.g_init_kwargs,
                             "synthesis_attrs": ckpt.synthesis_attrs, "training_set_kwargs": ckpt.training_set_kwargs,
                             "module_classes": sorted(ckpt.module_sources)}
    atomic_write_text(out / OFFICIAL_NAME, json.dumps(audit, indent=2, sort_keys=True, default=repr) + "\n")
    if sources_dir is not None:
        dump_module_sources(ckpt.module_sources, sources_dir)
    log.info("converted %s -> %s (%d px, F=%d, %s)", pkl, out, cfg.img_resolution, cfg.nerf.rgb_out_dim,
             cfg.upsampler.upsample_mode)
    return out
