"""Where weight files live, which form of a file to load, and the command that fetches missing ones.

The weights directory is ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights`` (the same rule as the test suite's
``weights`` marker). ``resolve`` prefers the converted form of a file (``nerffs.weights.convert``) when it was made
from the file now present.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from nerffs.errors import WeightsMissingError
from nerffs.weights.registry import Asset, lookup

log = logging.getLogger(__name__)

ENV_VAR = "NERFFS_WEIGHTS"
"""Environment variable naming the weights directory."""
CLI = "python -m scripts.download_weights"
"""How the downloader is invoked (used in messages)."""
STYLENERF_CONVERTED_WEIGHTS = "model.safetensors"
"""Weights file inside a converted StyleNeRF directory (``stylenerf.io.WEIGHTS_NAME``)."""
STYLENERF_CONVERTED_CONFIG = "config.json"
"""Config file inside a converted StyleNeRF directory (``stylenerf.io.CONFIG_NAME``)."""
PICKLE_SUFFIXES = (".pkl", ".pickle")
TORCH_SUFFIXES = (".pth", ".pt", ".model", ".tar")


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    """The weights directory: ``override`` if given, else ``$NERFFS_WEIGHTS``, else ``~/.cache/nerffs/weights``."""
    if override is not None:
        return Path(override).expanduser()
    return Path(os.environ.get(ENV_VAR, Path.home() / ".cache" / "nerffs" / "weights")).expanduser()


def asset_path(name: str, root: str | os.PathLike | None = None, *,
               registry: Mapping[str, Asset] | None = None) -> Path:
    """Where the original file of asset ``name`` is (or would be) under the weights directory ``root``."""
    return weights_dir(root) / lookup(name, registry).filename


def converted_path(original: Path) -> Path | None:
    """Where the converted form of ``original`` is written, or None for formats kept as they are.

    StyleNeRF pickles become the directory ``<stem>.converted/`` (``stylenerf.io.converted_dir_for``); torch files
    become ``<stem>.safetensors`` beside the original; ``.safetensors`` and ``.mat`` files are used as they are.
    """
    suffix = original.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return original.with_name(original.stem + ".converted")
    if suffix in TORCH_SUFFIXES:
        return original.with_name(original.stem + ".safetensors")
    return None


def _converted_weights(converted: Path) -> Path:
    return converted / STYLENERF_CONVERTED_WEIGHTS if converted.suffix == ".converted" else converted


def converted_present(converted: Path) -> bool:
    """Whether a complete converted form exists at ``converted`` (a directory also needs its config)."""
    if converted.suffix == ".converted":
        return all((converted / f).is_file() for f in (STYLENERF_CONVERTED_WEIGHTS, STYLENERF_CONVERTED_CONFIG))
    return converted.is_file()


def safetensors_header(path: Path, max_header: int = 100 << 20) -> tuple[int, dict]:
    """``(header length in bytes, JSON header)`` of a safetensors file, parsed without torch.

    The header maps tensor names to ``{dtype, shape, data_offsets}`` plus an optional ``__metadata__`` dict.

    Raises:
        ValueError: the file is too short or its header length or JSON is invalid.
        OSError: the file cannot be read.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("shorter than a safetensors header")
        length = int.from_bytes(head, "little")
        if length > min(size - 8, max_header):
            raise ValueError(f"header length {length} does not fit the file")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return length, header


def conversion_source_size(converted: Path) -> int | None:
    """The ``source_size`` recorded in a converted file's safetensors header, or None if absent or unreadable."""
    weights = _converted_weights(converted)
    if not weights.is_file():
        return None
    try:
        value = (safetensors_header(weights)[1].get("__metadata__") or {}).get("source_size")
        return int(value) if value is not None else None
    except (OSError, ValueError, AttributeError) as exc:  # unreadable header: not a usable conversion
        log.warning("ignoring unreadable conversion %s (%s)", weights, type(exc).__name__)
        return None


def conversion_is_fresh(original: Path, converted: Path) -> bool:
    """Whether ``converted`` was made from the file now at ``original``: same recorded size and not older."""
    if not (original.is_file() and converted_present(converted)):
        return False  # (an interrupted StyleNeRF conversion has weights but no config yet)
    if conversion_source_size(converted) != original.stat().st_size:
        return False
    return _converted_weights(converted).stat().st_mtime >= original.stat().st_mtime


def resolve(name: str, root: str | os.PathLike | None = None, *,
            registry: Mapping[str, Asset] | None = None) -> Path:
    """The file to load for asset ``name``: its fresh converted form if there is one, else the original.

    When only the converted form is present (the original was deleted to save space) it is returned as well.

    Args:
        name: registry name.
        root: weights directory (default ``weights_dir()``).
        registry: table to look ``name`` up in (default ``REGISTRY``).

    Returns:
        an existing path (a file, or a converted StyleNeRF directory).

    Raises:
        WeightsMissingError: neither form exists; the one-line message names the file, the directory and the
            exact command that fetches it (or how to get it by hand).
        InputError: unknown name.
    """
    asset = lookup(name, registry)
    original = weights_dir(root) / asset.filename
    converted = converted_path(original)
    if original.is_file():
        if converted is not None and conversion_is_fresh(original, converted):
            return converted
        return original
    if converted is not None and converted_present(converted):
        log.info("%s: using %s (the original %s is absent)", name, converted, original.name)
        return converted
    raise WeightsMissingError(missing_message(asset, root))


def missing_message(asset: Asset, root: str | os.PathLike | None = None) -> str:
    """One line naming the absent file, the weights directory and how to obtain it."""
    base = weights_dir(root)
    return (f"{asset.name} weights not found: {base / asset.filename} (weights directory {base}, set by --dir or "
            f"${ENV_VAR}); {how_to_get(asset, root)}")


def how_to_get(asset: Asset, root: str | os.PathLike | None = None) -> str:
    """The exact fetch command for ``asset``, or the manual note and the target path when there is no URL."""
    if asset.downloadable:
        return f"fetch it with `{fetch_command([asset.name], root, registry={asset.name: asset})}`"
    return f"no direct download exists: {asset.manual}, then place it at {weights_dir(root) / asset.filename}"


def missing(names: Iterable[str], root: str | os.PathLike | None = None, *,
            registry: Mapping[str, Asset] | None = None) -> list[str]:
    """The subset of ``names`` for which ``resolve`` would fail, in the given order."""
    out = []
    for name in names:
        try:
            resolve(name, root, registry=registry)
        except WeightsMissingError:
            out.append(name)
    return out


def fetch_command(names: Iterable[str], root: str | os.PathLike | None = None, *,
                  registry: Mapping[str, Asset] | None = None) -> str:
    """One shell command that fetches all of ``names`` (with the licence acceptances they need).

    ``--dir`` is added when ``root`` is given and differs from the default weights directory. Assets without a
    direct URL are included too: the command then prints how to get them by hand.
    """
    assets = [lookup(n, registry) for n in dict.fromkeys(names)]
    accept = [arg for a in assets if a.needs_acceptance and a.downloadable for arg in ("--accept-licence", a.name)]
    return cli_command([a.name for a in assets], root, accept)


def cli_command(args: Sequence[str], root: str | os.PathLike | None = None, options: Sequence[str] = ()) -> str:
    """``python -m scripts.download_weights ARGS [--dir ROOT] OPTIONS`` (``--dir`` only for a non-default root)."""
    parts = list(args)
    if root is not None and weights_dir(root).resolve() != weights_dir().resolve():
        parts += ["--dir", str(weights_dir(root))]
    return " ".join([CLI, *(shlex.quote(p) for p in [*parts, *options])])
