"""Logging and progress helpers for library code (no print in the library)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def get_logger(name: str) -> logging.Logger:
    """Module logger; configuration (level, handlers) is left to the application."""
    return logging.getLogger(name)


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, enabled: bool = True,
             unit: str = "it") -> Iterator[T]:
    """Wrap ``iterable`` in a tqdm progress bar when ``enabled`` (and tqdm is installed), else pass through.

    The bar is written to stderr so stdout stays clean for machine-readable output.
    """
    if not enabled:
        yield from iterable
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a requirement, but stay usable without it
        yield from iterable
        return
    yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True)
