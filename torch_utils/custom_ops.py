"""Lazy just-in-time builds of the CUDA plugins and the policy that picks an op's implementation.

Every custom op in :mod:`torch_utils.ops` has a pure-torch reference twin; the compiled plugin is
only an accelerator for CUDA tensors (style rules 1 and 2, spec-stylenerf.md section 5). Nothing is
compiled at import: :func:`get_plugin` builds a plugin the first time an op needs it, in a build
directory keyed by an md5 of the plugin's sources and headers, the GPU name and the torch/CUDA
versions, so that editing a kernel or changing the machine never picks up a stale binary.

The implementation an op runs is chosen by :func:`select_impl` from the op's ``impl`` argument, the
environment variable ``NERFFS_OPS`` (read by :func:`ops_policy`) and the tensor's device:

=========  ===========  =====================================================================
``impl``   NERFFS_OPS   result
=========  ===========  =====================================================================
'ref'      any          pure torch
'cuda'     any          the plugin; a CPU tensor or a failed build raises ``RuntimeError``
'auto'     'ref'        pure torch
'auto'     'cuda'       the plugin for CUDA tensors (a failed build raises), pure torch on CPU
'auto'     'auto'       the plugin for CUDA tensors; if it fails to build, one warning and pure
                        torch for the rest of the process; pure torch on CPU
=========  ===========  =====================================================================

Environment:
    NERFFS_OPS: ``auto`` (default), ``ref`` or ``cuda``.
    NERFFS_CACHE: cache root (``torch_utils.files.cache_root``: unset or empty means ``~/.cache/nerffs``);
        plugins are built under ``<cache root>/torch_extensions/<module>-<md5>/``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from torch_utils.files import cache_root

log = logging.getLogger(__name__)

OPS_POLICIES = ("auto", "ref", "cuda")
IMPLS = ("auto", "ref", "cuda")


@dataclasses.dataclass
class _PluginEntry:
    """State of one plugin in this process: the loaded module, or the error its build raised."""

    module: Any = None
    error: BaseException | None = None
    fallback_warned: bool = False


# The plugin handle cache: module name -> entry. Filled only by get_plugin()/select_impl(), never at import.
_PLUGINS: dict[str, _PluginEntry] = {}


def ops_policy() -> str:
    """Reads the process-wide op policy from the environment variable ``NERFFS_OPS``.

    Returns:
        One of ``'auto'`` (unset or empty), ``'ref'`` or ``'cuda'`` (case and surrounding blanks ignored).

    Raises:
        ValueError: if the variable holds anything else.
    """
    raw = os.environ.get("NERFFS_OPS", "")
    value = raw.strip().lower() or "auto"
    if value not in OPS_POLICIES:
        raise ValueError(f"NERFFS_OPS={raw!r} is not valid; expected one of {', '.join(OPS_POLICIES)}")
    return value


def extensions_root() -> Path:
    """Directory under which plugins are built: ``<cache root>/torch_extensions``."""
    return cache_root() / "torch_extensions"


def _device_tag() -> str:
    """GPU name plus torch and CUDA versions: binaries built for one of these are not reused for another."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no-gpu"
    return f"torch={torch.__version__};cuda={torch.version.cuda};gpu={gpu}"


def _build_key(module_name: str, files: list[Path], device_tag: str) -> str:
    """Name of a plugin's build directory: ``<module_name>-<md5>``.

    Args:
        module_name: Extension module name.
        files: Sources and headers; their base names and contents enter the hash, their location does not.
        device_tag: Machine description (see :func:`_device_tag`); enters the hash.

    Returns:
        The directory name; it changes whenever any file's content or name, or the device tag, changes.
    """
    md5 = hashlib.md5()
    md5.update(device_tag.encode())
    for path in files:
        md5.update(b"\0" + path.name.encode() + b"\0")
        md5.update(path.read_bytes())
    return f"{module_name}-{md5.hexdigest()}"


def _stage_sources(files: list[Path], build_dir: Path) -> None:
    """Copies the sources into ``build_dir`` atomically (concurrent processes may race on the same key)."""
    if build_dir.is_dir():
        return
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}-", dir=build_dir.parent))
    try:
        for path in files:
            shutil.copyfile(path, staging / path.name)
        try:
            os.replace(staging, build_dir)
        except OSError:
            if not build_dir.is_dir():  # lost a race only if the winner's directory exists
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _build(module_name: str, files: list[Path], sources: list[Path], build_kwargs: dict[str, Any]) -> Any:
    """Compiles and imports one plugin; raises ``RuntimeError`` with the reason when that is impossible."""
    if torch.version.cuda is None:
        raise RuntimeError(f"cannot build CUDA plugin {module_name!r}: this torch ({torch.__version__}) is a CPU build")
    from torch.utils import cpp_extension  # heavy import (setuptools); only when a build is really needed

    try:
        cpp_extension.verify_ninja_availability()
    except RuntimeError as err:
        raise RuntimeError(f"cannot build CUDA plugin {module_name!r}: ninja is not available ({err})") from err
    build_dir = extensions_root() / _build_key(module_name, files, _device_tag())
    _stage_sources(files, build_dir)
    log.info("Building/loading CUDA plugin %r in %s ...", module_name, build_dir)
    start = time.perf_counter()
    module = cpp_extension.load(
        name=module_name,
        sources=[str(build_dir / s.name) for s in sources],
        build_directory=str(build_dir),
        verbose=log.isEnabledFor(logging.DEBUG),
        **build_kwargs,
    )
    log.info("CUDA plugin %r ready (%.1f s)", module_name, time.perf_counter() - start)
    return module


def get_plugin(module_name: str, sources: list[str], headers: list[str] | None = None,
               source_dir: str | None = None, **build_kwargs: Any) -> Any:
    """Returns a compiled extension module, building it on first use (lazy JIT build with ninja).

    The outcome is cached per process under ``module_name``: later calls return the loaded module at
    once, or re-raise the first failure without trying to build again.

    Args:
        module_name: Python name of the extension (``TORCH_EXTENSION_NAME`` in the C++ sources).
        sources: ``.cpp``/``.cu`` file names, relative to ``source_dir`` unless absolute.
        headers: Header file names that the sources include; they are hashed and copied next to them.
        source_dir: Directory of the relative names (default: the current directory).
        **build_kwargs: Passed to ``torch.utils.cpp_extension.load``, e.g. ``extra_cuda_cflags``.

    Returns:
        The loaded extension module.

    Raises:
        RuntimeError: if the plugin cannot be built or loaded (now or in an earlier call).
    """
    entry = _PLUGINS.setdefault(module_name, _PluginEntry())
    if entry.module is not None:
        return entry.module
    if entry.error is not None:
        raise RuntimeError(f"CUDA plugin {module_name!r} failed to build earlier: {entry.error}") from entry.error
    base = Path(source_dir) if source_dir is not None else Path.cwd()
    source_paths = [base / s for s in sources]
    files = source_paths + [base / h for h in headers or []]
    try:
        entry.module = _build(module_name, files, source_paths, build_kwargs)
    except Exception as err:  # noqa: BLE001 - compiler and loader errors come in many types
        entry.error = err
        log.error("CUDA plugin %r could not be built: %s", module_name, err)
        raise RuntimeError(f"CUDA plugin {module_name!r} could not be built: {err}") from err
    return entry.module


def select_impl(impl: str, x: torch.Tensor, module_name: str, load: Callable[[], Any]) -> Any | None:
    """Decides whether an op runs its plugin or its pure-torch reference (see the module docstring).

    Args:
        impl: The op's ``impl`` argument: ``'auto'``, ``'cuda'`` or ``'ref'``.
        x: The op's main input; only its ``is_cuda`` and ``device`` are used.
        module_name: The plugin's name in the handle cache (as passed to :func:`get_plugin` by ``load``).
        load: Zero-argument callable returning the plugin (normally a :func:`get_plugin` call).

    Returns:
        The plugin module when the CUDA path is to be used, ``None`` for the reference path.

    Raises:
        ValueError: on an unknown ``impl`` or ``NERFFS_OPS`` value.
        RuntimeError: when the CUDA path is required (``impl='cuda'``, or ``'auto'`` with
            ``NERFFS_OPS=cuda`` on a CUDA tensor) but ``x`` is not on a CUDA device or the build fails.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl={impl!r} is not valid; expected one of {', '.join(IMPLS)}")
    if impl == "ref":
        return None
    if impl == "cuda":
        if not x.is_cuda:
            raise RuntimeError(f"impl='cuda' needs a CUDA tensor, got one on {x.device}; use impl='auto' or 'ref'")
        return load()
    policy = ops_policy()
    if policy == "ref" or not x.is_cuda:
        return None
    if policy == "cuda":
        return load()
    try:
        return load()
    except RuntimeError as err:
        entry = _PLUGINS.setdefault(module_name, _PluginEntry())
        if not entry.fallback_warned:
            entry.fallback_warned = True
            log.warning("CUDA plugin %r unavailable (%s); using the pure-torch reference for the rest of "
                           "this process (set NERFFS_OPS=cuda to make this an error)", module_name, err)
        return None
