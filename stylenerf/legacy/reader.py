"""Code-free reader of official StyleNeRF training pickles (spec-stylenerf.md section 6).

The official snapshots (``ffhq_256.pkl`` ...) are plain pickles in which every network object is a
"persistent class" record that carries the full source text of its defining module; the official loader
``exec``s that text. This module never does: a restricted unpickler resolves only the globals of an explicit
allow-list (spec 6.4) to safe stand-ins, records persistent objects as inert ``PersistentRecord`` data and
refuses everything else with ``UnsafePickleError`` before it can run. Every call the pickle asks for (REDUCE,
NEWOBJ, INST, OBJ) and every BUILD is checked against the allow-list as well.

After unpickling, module records are flattened to a ``state_dict`` with the official dotted names (spec 1.4),
OmegaConf containers in the constructor kwargs are converted to plain Python with their ``${a.b}``
interpolations resolved through the ``_parent`` chain, and the plain attributes of the synthesis network's
helper objects (CameraRay ``C``, NeRFInput ``I``, VolumeRenderer ``V``, Upsampler ``U``) are kept for the
config cross-check in ``stylenerf.legacy.config``.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylenerf.config import GeneratorConfig
from stylenerf.legacy.allowlist import PersistentRecord, SafeGlobal, StubObject, UnsafePickleError, resolve_global
from stylenerf.legacy.config import LegacyFormatError, config_from_official
from stylenerf.legacy.omegaconf_kwargs import to_plain

log = logging.getLogger(__name__)

__all__ = ["OfficialCheckpoint", "flatten_module", "load_official_generator_state", "read_official_pickle",
           "restricted_loads"]

_HELPER_NAMES = ("C", "I", "V", "U")
"""Non-Module helper objects held by the official NeRFSynthesisNetwork (spec 1.1)."""
_MAX_MODULE_DEPTH = 32
"""Official generators nest about 6 deep; deeper means a self-containing (malformed) module graph."""


# ---- restricted unpickler ------------------------------------------------------------------------------------
class _RestrictedUnpickler(pickle._Unpickler):  # noqa: SLF001 - the pure-Python unpickler lets us gate opcodes
    """Unpickler whose globals come from the allow-list and whose call/build opcodes are gated.

    The pure-Python implementation is used on purpose: its opcode table can be replaced per class, so
    REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ/BUILD only ever reach code written in ``stylenerf.legacy.allowlist``.
    """

    dispatch = dict(pickle._Unpickler.dispatch)  # noqa: SLF001

    def __init__(self, file: Any, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        if not all(part.isidentifier() for part in f"{module}.{name}".split(".")):
            # A GLOBAL cut short by truncation reads as a partial or empty name.
            raise LegacyFormatError(f"{self._source} is not a readable StyleNeRF pickle (truncated or corrupt? "
                                    f"malformed global {module!r} {name!r})")
        return resolve_global(module, name, self._source)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"refusing persistent id {str(pid)[:60]!r} in {self._source}: official StyleNeRF "
                                "pickles do not use them; the file may be malicious or not a StyleNeRF checkpoint")

    def _call(self, target: Any, args: tuple, kwargs: dict | None = None, *, new: bool = False) -> Any:
        if not isinstance(target, SafeGlobal):
            raise UnsafePickleError(f"refusing to call a {type(target).__name__} while reading {self._source}: only "
                                    "allow-listed constructors may be called; the file may be malicious")
        if kwargs:
            raise UnsafePickleError(f"refusing keyword arguments to {target.qualname} in {self._source}")
        return target.construct(tuple(args), new=new)

    def load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = self._call(self.stack[-1], args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args, new=True))

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._call(cls, args, kwargs, new=True))

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        klass = self.find_class(module, name)
        self.append(self._call(klass, tuple(self.pop_mark())))

    def load_obj(self) -> None:
        args = self.pop_mark()
        cls = args.pop(0)
        self.append(self._call(cls, tuple(args)))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, StubObject):
            inst.state = state
        elif isinstance(inst, np.dtype):
            _build_dtype(inst, state, self._source)
        elif isinstance(inst, dict) and not state:
            pass  # dict subclasses (EasyDict) pickle an empty instance __dict__
        else:
            raise UnsafePickleError(f"refusing to set the state of a {type(inst).__name__} while reading "
                                    f"{self._source}; the file may be malicious or not a StyleNeRF checkpoint")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.INST[0]] = load_inst
    dispatch[pickle.OBJ[0]] = load_obj
    dispatch[pickle.BUILD[0]] = load_build


def _build_dtype(dtype: np.dtype, state: Any, source: str) -> None:
    """numpy pickles a dtype as ``dtype(code)`` + BUILD(state); accept only native/neutral byte order.

    The state's other fields are derived for simple dtypes, so nothing needs to be applied; numpy's own
    ``__setstate__`` is never called.
    """
    if not isinstance(state, tuple) or len(state) < 2 or not isinstance(state[1], str):
        raise UnsafePickleError(f"unexpected numpy dtype state {str(state)[:60]!r} in {source}")
    native = "<" if np.little_endian else ">"
    if state[1] not in ("|", "=", native):
        raise LegacyFormatError(f"{source} stores a non-native byte order dtype ({state[1]}{dtype.str[1:]}); "
                                "re-save it on a little-endian machine")


def restricted_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the allow-list unpickler (no code from the data runs).

    Args:
        data: pickle bytes.
        source: name used in error messages.

    Returns:
        plain data, tensors, ``PersistentRecord`` and ``StubObject`` records.

    Raises:
        UnsafePickleError: a global or operation outside the allow-list.
    """
    return _RestrictedUnpickler(io.BytesIO(data), source=source).load()


def _unpickle(path: Path) -> Any:
    with open(path, "rb") as f:
        head = f.read(4)
        if head.startswith(b"PK\x03\x04"):
            raise LegacyFormatError(f"{path} is a torch zip checkpoint, not an official StyleNeRF training pickle "
                                    "(use stylenerf.io.load_generator for converted files)")
        if not head or head[0] != pickle.PROTO[0]:
            raise LegacyFormatError(f"{path} is not a pickle (first bytes {head!r}); expected an official "
                                    "StyleNeRF .pkl")
        f.seek(0)
        try:
            return _RestrictedUnpickler(f, source=str(path)).load()
        except (UnsafePickleError, LegacyFormatError):
            raise
        except Exception as exc:  # truncated/corrupt data surfaces as many different exception types
            msg = str(exc).splitlines()[0][:160] if str(exc) else ""
            raise LegacyFormatError(f"{path} is not a readable StyleNeRF pickle (truncated or corrupt? "
                                    f"{type(exc).__name__}: {msg})") from exc


# ---- records -> state dicts and plain attributes -------------------------------------------------------------
def _module_state(node: Any, where: str) -> dict:
    state = node.state if isinstance(node, (PersistentRecord, StubObject)) else None
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
        state = {**state[0], **(state[1] or {})}
    if not isinstance(state, dict):
        raise LegacyFormatError(f"module {where or '<root>'} has no state dict (got {type(node).__name__})")
    return state


def flatten_module(node: PersistentRecord | StubObject, prefix: str = "", _depth: int = 0) -> dict[str, torch.Tensor]:
    """Collect parameters and persistent buffers of a module record with dotted names, as ``state_dict`` does.

    Order per module: its parameters, its buffers, then each child (recursively); ``None`` entries and
    buffers in ``_non_persistent_buffers_set`` are skipped.

    Args:
        node: a persistent-class record or a ``torch.nn`` container stub (ModuleList, Sequential).
        prefix: name prefix (``"synthesis."`` ...), empty at the root.

    Returns:
        dict name -> tensor.

    Raises:
        LegacyFormatError: a child is not a module record or a parameter is not a tensor.
    """
    if _depth > _MAX_MODULE_DEPTH:
        raise LegacyFormatError(f"module nesting deeper than {_MAX_MODULE_DEPTH} at {prefix[:80]}...: a module "
                                "that contains itself; the file is corrupt or malicious")
    state = _module_state(node, prefix.rstrip("."))
    out: dict[str, torch.Tensor] = {}
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for group in ("_parameters", "_buffers"):
        for name, value in (state.get(group) or {}).items():
            if value is None or (group == "_buffers" and name in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise LegacyFormatError(f"{prefix}{name} is a {type(value).__name__}, expected a tensor")
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, (PersistentRecord, StubObject)):
            raise LegacyFormatError(f"child module {prefix}{name} is a {type(child).__name__}, expected a module")
        out.update(flatten_module(child, f"{prefix}{name}.", _depth + 1))
    return out


def _attr_value(value: Any) -> Any:
    """Plain, printable form of a helper attribute (records become '<ClassName>', big tensors a summary)."""
    if isinstance(value, PersistentRecord):
        return f"<{value.class_name}>"
    if isinstance(value, torch.Tensor):
        return value.tolist() if value.numel() <= 64 else f"<tensor {list(value.shape)}>"
    return to_plain(value)


def _plain_attrs(record: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Public instance attributes of a record (no torch internals, no ``_init_*``, none of ``exclude``)."""
    state = _module_state(record, getattr(record, "class_name", "helper"))
    return {k: _attr_value(v) for k, v in state.items()
            if isinstance(k, str) and not k.startswith("_") and k != "training" and k not in exclude}


def _synthesis_attrs(synthesis: Any) -> dict[str, Any]:
    state = _module_state(synthesis, "synthesis")
    attrs: dict[str, Any] = {"synthesis": _plain_attrs(synthesis, exclude=_HELPER_NAMES)}
    for name in _HELPER_NAMES:
        if name in state:
            helper = state[name]
            attrs[name] = None if helper is None else {"class_name": getattr(helper, "class_name", None),
                                                       **_plain_attrs(helper)}
    return attrs


def _collect_sources(root: Any) -> dict[str, str]:
    """class_name -> module_src for every persistent record reachable from ``root`` (iterative walk)."""
    sources: dict[str, str] = {}
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, PersistentRecord):
            sources.setdefault(obj.class_name, obj.module_src)
            todo.append(obj.state)
        elif isinstance(obj, StubObject):
            todo.append(obj.state)
        elif isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
    return sources


# ---- public API ------------------------------------------------------------------------------------------------
@dataclass
class OfficialCheckpoint:
    """Contents of an official StyleNeRF snapshot, as data (no code from the file was run).

    Attributes:
        g_ema: ``G_ema`` tensors with the official dotted names (spec 1.4), e.g. ``mapping.fc0.weight``.
        d: discriminator tensors, or None when the pickle has no ``D``.
        g_init_kwargs: ``G_ema`` constructor kwargs as plain Python, OmegaConf interpolations resolved.
        synthesis_attrs: plain attributes of the synthesis network (key ``synthesis``) and of its helper
            objects ``C`` (camera), ``I`` (NeRF input, None for FFHQ), ``V`` (renderer), ``U`` (upsampler).
        module_sources: embedded ``module_src`` text per class name, for auditing only (never executed).
        training_set_kwargs: the snapshot's dataset kwargs as plain Python, or None.
        source: the file read.
    """

    g_ema: dict[str, torch.Tensor]
    d: dict[str, torch.Tensor] | None
    g_init_kwargs: dict[str, Any]
    synthesis_attrs: dict[str, Any]
    module_sources: dict[str, str]
    training_set_kwargs: dict[str, Any] | None
    source: Path | None = field(default=None)


def read_official_pickle(path: str | os.PathLike) -> OfficialCheckpoint:
    """Read an official StyleNeRF ``.pkl`` without executing anything stored in it (spec 6.4).

    Args:
        path: the snapshot (a dict with ``G_ema``, usually also ``G``, ``D``, ``training_set_kwargs``).

    Returns:
        the checkpoint contents as tensors and plain Python.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnsafePickleError: the pickle names a global outside the allow-list or asks for a disallowed call.
        LegacyFormatError: the file is truncated, corrupt, or not a StyleNeRF snapshot.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"StyleNeRF pickle not found: {p}")
    top = _unpickle(p)
    if not isinstance(top, dict) or not isinstance(top.get("G_ema"), PersistentRecord):
        found = sorted(map(str, top))[:8] if isinstance(top, dict) else type(top).__name__
        raise LegacyFormatError(f"{p} has no persistent 'G_ema' network (found {found}); not a StyleNeRF snapshot")
    g_rec: PersistentRecord = top["G_ema"]
    g_state = _module_state(g_rec, "G_ema")
    kwargs = to_plain(g_state.get("_init_kwargs") or {})
    if not isinstance(kwargs, dict):
        raise LegacyFormatError(f"{p}: G_ema._init_kwargs is a {type(kwargs).__name__}, expected a mapping")
    if g_state.get("_init_args"):
        raise LegacyFormatError(f"{p}: G_ema was built with positional args {g_state['_init_args']!r}; "
                                "only keyword construction is supported")
    synthesis = (g_state.get("_modules") or {}).get("synthesis")
    if synthesis is None:
        raise LegacyFormatError(f"{p}: G_ema has no 'synthesis' module; not a StyleNeRF generator")
    d_rec = top.get("D")
    tsk = top.get("training_set_kwargs")
    log.info("read %s: G_ema class %s, %d module sources embedded (not executed)", p, g_rec.class_name,
             len(_collect_sources(top)))
    return OfficialCheckpoint(
        g_ema=flatten_module(g_rec),
        d=flatten_module(d_rec) if isinstance(d_rec, (PersistentRecord, StubObject)) else None,
        g_init_kwargs=kwargs,
        synthesis_attrs=_synthesis_attrs(synthesis),
        module_sources=_collect_sources(top),
        training_set_kwargs=to_plain(tsk) if tsk is not None else None,
        source=p,
    )


def load_official_generator_state(path: str | os.PathLike) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    """Read an official pickle and return ``(config, G_ema state_dict)`` ready for ``Generator(cfg)``.

    Raises:
        FileNotFoundError, UnsafePickleError, LegacyFormatError: see ``read_official_pickle`` and
            ``config_from_official``.
    """
    ckpt = read_official_pickle(path)
    cfg = config_from_official(ckpt.g_init_kwargs, ckpt.g_ema, synthesis_attrs=ckpt.synthesis_attrs)
    return cfg, OrderedDict(ckpt.g_ema)
