"""Small framework helpers: shape assertions, cached constant tensors, scoped tracer-warning suppression."""
from __future__ import annotations

import contextlib
import functools
import logging
import warnings
from typing import Any, Callable, Iterator, Sequence, TypeVar

import numpy as np
import torch

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Any])

# Per-static-args cache of constant tensors: (value bytes, shape, dtype, device, memory format) -> tensor.
_CONSTANT_CACHE: dict[tuple, torch.Tensor] = {}


def constant(value: Any, shape: Sequence[int] | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str | None = None,
             memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Returns a cached tensor holding ``value`` (the same object for the same arguments).

    Useful for constants inside ``forward`` that would otherwise be re-created (and re-uploaded to the
    GPU) on every call. The returned tensor must be treated as read-only.

    Args:
        value: Scalar, nested list, numpy array or tensor.
        shape: If given, ``value`` is broadcast to this shape.
        dtype: Result dtype (default ``torch.get_default_dtype()``).
        device: Result device (default CPU).
        memory_format: Result memory format.

    Returns:
        The constant tensor, shape ``shape`` or the shape of ``value``.
    """
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value)
    shape_key = tuple(shape) if shape is not None else None
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    device = torch.device(device if device is not None else "cpu")
    key = (array.shape, array.dtype.str, array.tobytes(), shape_key, dtype, device, memory_format)
    tensor = _CONSTANT_CACHE.get(key)
    if tensor is None:
        tensor = torch.as_tensor(array.copy(), dtype=dtype, device=device)
        if shape_key is not None:
            tensor = torch.broadcast_to(tensor, shape_key)
        tensor = tensor.contiguous(memory_format=memory_format)
        _CONSTANT_CACHE[key] = tensor
    return tensor


@contextlib.contextmanager
def suppress_tracer_warnings() -> Iterator[None]:
    """Context manager that silences ``torch.jit.TracerWarning`` inside its scope only.

    The global warning filters are restored on exit, also when the body raises.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[int | None]) -> None:
    """Asserts that ``tensor`` has the shape ``ref_shape``, where ``None`` entries match any size.

    Args:
        tensor: Tensor to check.
        ref_shape: Expected shape; entries are ints, ``None`` (any size) or 0-d tensors (compared as values).

    Raises:
        AssertionError: naming the actual and expected shapes when they differ in rank or in any entry.
    """
    actual = tuple(tensor.shape)
    expected = tuple(ref_shape)

    def describe() -> str:
        shown = ", ".join("*" if r is None else str(int(r)) for r in expected)
        return f"tensor shape {list(actual)} does not match the expected [{shown}] (* = any size)"

    if len(actual) != len(expected):
        raise AssertionError(describe() + f": rank {len(actual)} vs {len(expected)}")
    for index, (size, ref) in enumerate(zip(actual, expected)):
        if ref is None:
            continue
        if isinstance(ref, torch.Tensor):
            with suppress_tracer_warnings():  # under tracing the comparison is a constant; that is intended
                ok = bool(torch.as_tensor(size) == ref)
        else:
            ok = size == ref
        if not ok:
            raise AssertionError(describe() + f": dimension {index} is {size}, expected {int(ref)}")


def profiled_function(fn: _F) -> _F:
    """Decorator that labels every call of ``fn`` in the torch profiler with the function's name."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
