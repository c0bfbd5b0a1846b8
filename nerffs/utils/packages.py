"""Locating files shipped inside installed packages without importing them (offline-assets.md section 10)."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def package_dir(name: str) -> Path | None:
    """Directory of an installed package, or None when it is not installed (the package is not imported)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a broken install, or a module object without a spec
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])
