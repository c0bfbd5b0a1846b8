"""Plain-Python view of unpickled checkpoint data, with OmegaConf interpolations resolved (spec 6.3-6.4).

Official snapshots trained through ``run_train.py`` store the generator's constructor kwargs as OmegaConf
objects. Unpickled by ``stylenerf.legacy`` they are ``StubObject`` records with the OmegaConf state layout:
containers (``DictConfig``/``ListConfig``) keep their children in ``_content``, value nodes keep ``_val``,
and every object links to its container through ``_parent``. Some leaves are still interpolation strings,
e.g. ``mapping_kwargs.num_layers = "${spec.map}"`` (spec 6.3); they are resolved by walking ``_parent`` up to
the root training config and looking up the dotted key there. Relative keys (``${.x}``, ``${..x}``) start at
the node's container. Resolver calls (``${now:...}``, ``${oc.env:...}``) cannot be evaluated without
OmegaConf and are kept as text with a warning; they never occur in the generator kwargs we need, and only
keys that are actually referenced are resolved.
"""
from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np

from stylenerf.legacy.config import LegacyFormatError
from stylenerf.legacy.allowlist import PersistentRecord, SafeGlobal, StubObject

log = logging.getLogger(__name__)

_REF = re.compile(r"\$\{([^${}]*)\}")
_MAX_DEPTH = 64
"""Nesting/interpolation depth limit (guards against reference cycles in a malformed file)."""


class _Unresolved(Exception):
    """An interpolation that cannot be resolved from the stored data."""


def _state(obj: Any) -> dict:
    state = obj.state if isinstance(obj, (StubObject, PersistentRecord)) else None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        return {**state[0], **(state[1] or {})}
    return state if isinstance(state, dict) else {}


def to_plain(obj: Any, _depth: int = 0) -> Any:
    """Convert unpickled data to plain Python: dicts, lists, tuples, scalars, strings (tensors kept as is).

    OmegaConf records become dicts/lists/values with interpolations resolved; numpy scalars become Python
    scalars and array records numpy arrays; other records become ``'<qualname>'`` strings.

    Args:
        obj: any object produced by the restricted unpickler.

    Returns:
        the plain equivalent.

    Raises:
        LegacyFormatError: the data is nested deeper than any real checkpoint (a reference cycle).
    """
    if _depth > _MAX_DEPTH:
        raise LegacyFormatError("checkpoint data nested too deeply (reference cycle?)")
    if isinstance(obj, StubObject):
        if obj.qualname.startswith("omegaconf"):
            return _omega_plain(obj, _depth)
        if obj.qualname == "numpy.ndarray":
            return _array(obj)
        return f"<{obj.qualname}>"
    if isinstance(obj, PersistentRecord):
        return f"<{obj.class_name}>"
    if isinstance(obj, SafeGlobal):
        return obj.qualname
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {to_plain(k, _depth + 1): to_plain(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v, _depth + 1) for v in obj]
    if isinstance(obj, (tuple, set, frozenset)):
        return type(obj)(to_plain(v, _depth + 1) for v in obj)
    return obj


def _array(obj: StubObject) -> np.ndarray | str:
    """Rebuild a simple (non-object) numpy array from its pickled state (version, shape, dtype, fortran, data)."""
    state = obj.state
    if (isinstance(state, tuple) and len(state) == 5 and isinstance(state[2], np.dtype) and not state[2].hasobject
            and isinstance(state[4], bytes) and all(isinstance(n, int) for n in state[1])):
        shape, dtype, fortran, data = state[1], state[2], bool(state[3]), state[4]
        count = int(np.prod(shape)) if shape else 1
        if len(data) == count * dtype.itemsize:
            return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()
    return "<numpy.ndarray (unsupported layout)>"


def _omega_plain(node: StubObject, depth: int) -> Any:
    state = _state(node)
    if "_content" in state:
        content = state["_content"]
        if isinstance(content, dict):
            return {to_plain(k, depth + 1): to_plain(v, depth + 1) for k, v in content.items()}
        if isinstance(content, (list, tuple)):
            return [to_plain(v, depth + 1) for v in content]
        if isinstance(content, str):
            return _resolve_string(content, node, depth)
        return to_plain(content, depth + 1)
    if "_val" in state:
        value = state["_val"]
        if isinstance(value, str):
            return _resolve_string(value, node, depth)
        return to_plain(value, depth + 1)
    return f"<{node.qualname}>"


def _resolve_string(text: str, node: StubObject, depth: int) -> Any:
    """Resolve ``${key}`` references in ``text``; a lone reference keeps the referenced value's type."""
    if "${" not in text:
        return text
    try:
        whole = _REF.fullmatch(text)
        if whole is not None:
            return _lookup(whole.group(1).strip(), node, depth)
        return _REF.sub(lambda m: str(_lookup(m.group(1).strip(), node, depth)), text)
    except _Unresolved as exc:
        log.warning("checkpoint config: cannot resolve %r (%s); kept as text", text, exc)
        return text


def _parent(node: Any) -> Any:
    parent = _state(node).get("_parent")
    if parent is None:
        raise _Unresolved("no parent config stored")
    return parent


def _root(node: Any) -> Any:
    for _ in range(_MAX_DEPTH):
        parent = _state(node).get("_parent")
        if parent is None:
            return node
        node = parent
    raise _Unresolved("parent chain too long (cycle?)")


def _child(container: Any, part: str) -> Any:
    content = _state(container).get("_content")
    if isinstance(content, dict):
        if part in content:
            return content[part]
        if part.lstrip("-").isdigit() and int(part) in content:
            return content[int(part)]
    elif isinstance(content, (list, tuple)) and part.lstrip("-").isdigit():
        if -len(content) <= int(part) < len(content):
            return content[int(part)]
    raise _Unresolved(f"key {part!r} not found")


def _lookup(key: str, node: StubObject, depth: int) -> Any:
    """Value of an interpolation key seen from ``node`` (absolute from the root, or relative with dots)."""
    if depth >= _MAX_DEPTH - 1:
        raise _Unresolved("interpolation chain too deep (cycle?)")
    if ":" in key:
        raise _Unresolved(f"resolver call {key!r} needs OmegaConf")
    if key.startswith("."):
        dots = len(key) - len(key.lstrip("."))
        base = _parent(node)
        for _ in range(dots - 1):
            base = _parent(base)
        rest = key[dots:]
    else:
        base, rest = _root(node), key
    current = base
    for part in filter(None, rest.split(".")):
        current = _child(current, part)
    return to_plain(current, depth + 1)
