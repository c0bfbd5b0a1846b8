"""Progress helpers for library code (no print in the library; each module logs through its own logger)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


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
