"""Allow-list of pickle globals for official StyleNeRF snapshots and their inert stand-ins (spec 6.3-6.4).

``resolve_global(module, name)`` is the whole trust boundary of ``stylenerf.legacy``: a name on the list maps
to a ``SafeGlobal`` whose ``construct`` validates its arguments before building plain data (containers,
tensors, numpy scalars) or an inert record; any other name raises ``UnsafePickleError`` naming the global.

Allowed (spec 6.4):

* ``torch_utils.persistence._reconstruct_persistent_obj`` -> ``PersistentRecord`` (module source kept as
  text, never imported or executed);
* ``torch.storage._load_from_bytes`` -> ``torch.load(..., weights_only=True)`` of the legacy storage bytes;
  ``torch._utils._rebuild_tensor_v2``; ``_rebuild_parameter(_with_state)`` -> the plain data tensor;
  ``torch.Size``, ``torch.device`` and torch dtype objects (``torch.float32`` ...);
* ``collections.OrderedDict``, ``collections.defaultdict`` (-> dict), builtin containers and scalars;
* ``numpy.dtype`` (simple kinds), the numpy scalar reconstructor and ``ndarray`` reconstruction (as records);
* every ``torch.nn.modules.*`` and ``omegaconf.*`` class, ``typing.Any/Dict/List`` -> ``StubObject``;
* ``dnnlib.util.EasyDict`` -> dict.
"""
from __future__ import annotations

import io
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle names a global or asks for an operation outside the allow-list; nothing was executed."""


_PLAIN = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)


@dataclass(eq=False)
class PersistentRecord:
    """An official ``@persistent_class`` object, kept as data.

    Attributes:
        class_name: the class name stored in the pickle (e.g. ``'NeRFBlock'``).
        module_src: the embedded source text of the defining module (for auditing; never executed).
        version: persistence format version (6 for StyleNeRF).
        state: the instance ``__dict__`` (``_parameters``, ``_buffers``, ``_modules``, ``_init_kwargs`` ...).
    """

    class_name: str
    module_src: str
    version: int
    state: Any


@dataclass(eq=False)
class StubObject:
    """Inert stand-in for an instance of an allow-listed class (torch.nn container, OmegaConf node ...).

    Attributes:
        qualname: ``module.name`` of the class named in the pickle.
        args: constructor arguments the pickle supplied.
        state: whatever the pickle passed to BUILD (``__setstate__``), or None.
    """

    qualname: str
    args: tuple = ()
    state: Any = None


@dataclass(frozen=True, eq=False)
class SafeGlobal:
    """An allow-listed global. ``construct`` is the only code a pickle can reach through it.

    Attributes:
        qualname: ``module.name`` as named in the pickle.
        build: validates the arguments and returns the constructed value.
        new_empty: for NEWOBJ (``cls.__new__(cls, *args)``), the value to create instead; None means ``build``.
    """

    qualname: str
    build: Callable[[str, tuple], Any]
    new_empty: Callable[[], Any] | None = None

    def construct(self, args: tuple, *, new: bool = False) -> Any:
        if new and self.new_empty is not None:
            if args:
                raise UnsafePickleError(f"refusing arguments to {self.qualname}.__new__: {str(args)[:60]}")
            return self.new_empty()
        return self.build(self.qualname, args)

    def __repr__(self) -> str:
        return f"<allowed global {self.qualname}>"


# ---- argument validation ---------------------------------------------------------------------------------------
def _fail(qualname: str, args: tuple) -> UnsafePickleError:
    return UnsafePickleError(f"refusing call {qualname}{str(tuple(type(a).__name__ for a in args))}: "
                             "arguments outside the allow-list; the file may be malicious")


def _check_plain(qualname: str, args: tuple, max_args: int) -> None:
    if len(args) > max_args or not all(isinstance(a, _PLAIN) for a in args):
        raise _fail(qualname, args)


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


# ---- builders ----------------------------------------------------------------------------------------------------
def _container(kind: type) -> Callable[[str, tuple], Any]:
    def build(qualname: str, args: tuple) -> Any:
        _check_plain(qualname, args, 1)
        if kind is bytes and args and not isinstance(args[0], (bytes, list, tuple)):
            raise _fail(qualname, args)  # bytes(n) would allocate n bytes on the file's say-so
        return kind(*args)
    return build


def _defaultdict(qualname: str, args: tuple) -> dict:
    # defaultdict(factory) + SETITEMS; the factory is irrelevant for data and is not kept.
    if len(args) > 1 or (args and not (args[0] is None or isinstance(args[0], SafeGlobal))):
        raise _fail(qualname, args)
    return {}


def _stub(qualname: str, args: tuple) -> StubObject:
    return StubObject(qualname, tuple(args))


def _reconstruct_persistent_obj(qualname: str, args: tuple) -> PersistentRecord:
    meta = args[0] if len(args) == 1 else None
    if (not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str)
            or not isinstance(meta.get("module_src"), str)):
        raise UnsafePickleError(f"refusing {qualname} with unexpected metadata "
                                f"{sorted(meta) if isinstance(meta, dict) else type(meta).__name__}")
    return PersistentRecord(class_name=meta["class_name"], module_src=meta["module_src"],
                            version=int(meta.get("version", 0)), state=meta.get("state"))


def _load_from_bytes(qualname: str, args: tuple) -> Any:
    if len(args) != 1 or not isinstance(args[0], bytes):
        raise _fail(qualname, args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation chatter for legacy-format storages
        storage = torch.load(io.BytesIO(args[0]), map_location="cpu", weights_only=True)
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f"{qualname} produced a {type(storage).__name__}, expected a tensor storage")
    return storage


def _rebuild_tensor_v2(qualname: str, args: tuple) -> torch.Tensor:
    if len(args) < 4 or not isinstance(args[0], (torch.TypedStorage, torch.UntypedStorage)):
        raise _fail(qualname, args)
    storage, offset, size, stride = args[:4]
    if not isinstance(offset, int) or not _is_int_tuple(size) or not _is_int_tuple(stride):
        raise _fail(qualname, args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Hooks and requires_grad are dropped on purpose: the result is plain data. torch checks the bounds.
        return torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), False, OrderedDict())


def _rebuild_parameter(qualname: str, args: tuple) -> torch.Tensor:
    if len(args) not in (3, 4) or not isinstance(args[0], torch.Tensor):
        raise _fail(qualname, args)
    return args[0]


def _torch_size(qualname: str, args: tuple) -> torch.Size:
    if len(args) != 1 or not _is_int_tuple(args[0]):
        raise _fail(qualname, args)
    return torch.Size(args[0])


def _torch_device(qualname: str, args: tuple) -> torch.device:
    if not 1 <= len(args) <= 2 or not isinstance(args[0], str) or (len(args) == 2 and not isinstance(args[1], int)):
        raise _fail(qualname, args)
    return torch.device(*args)


def _safe_dtype(value: Any) -> np.dtype | None:
    try:
        dtype = np.dtype(value) if isinstance(value, (str, np.dtype)) else None
    except TypeError:
        return None
    return dtype if dtype is not None and dtype.kind in "biufcSU" and not dtype.hasobject else None


def _numpy_dtype(qualname: str, args: tuple) -> np.dtype:
    if not 1 <= len(args) <= 3 or _safe_dtype(args[0]) is None or not all(isinstance(a, bool) for a in args[1:]):
        raise _fail(qualname, args)
    return np.dtype(args[0], align=bool(args[1]) if len(args) > 1 else False, copy=True)


def _numpy_scalar(qualname: str, args: tuple) -> Any:
    if len(args) != 2 or not isinstance(args[0], np.dtype) or _safe_dtype(args[0]) is None:
        raise _fail(qualname, args)
    if not isinstance(args[1], bytes) or len(args[1]) != args[0].itemsize:
        raise _fail(qualname, args)
    return np.frombuffer(args[1], dtype=args[0], count=1)[0]


def _numpy_reconstruct(qualname: str, args: tuple) -> StubObject:
    # ndarray pickles as _reconstruct(ndarray, (0,), b'b') + BUILD((version, shape, dtype, fortran, data));
    # kept as a record and turned into an array by ``stylenerf.legacy.omegaconf_kwargs.to_plain``.
    if not args or not (isinstance(args[0], SafeGlobal) and args[0].qualname.endswith("ndarray")):
        raise _fail(qualname, args)
    return StubObject("numpy.ndarray", ())


def _refuse_call(qualname: str, args: tuple) -> Any:
    raise _fail(qualname, args)


def _allow_list() -> dict[str, SafeGlobal]:
    table: dict[str, SafeGlobal] = {}

    def add(qualname: str, build: Callable[[str, tuple], Any], new_empty: Callable[[], Any] | None = None) -> None:
        table[qualname] = SafeGlobal(qualname, build, new_empty)

    add("torch_utils.persistence._reconstruct_persistent_obj", _reconstruct_persistent_obj)
    add("torch.storage._load_from_bytes", _load_from_bytes)
    add("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2)
    add("torch._utils._rebuild_parameter", _rebuild_parameter)
    add("torch._utils._rebuild_parameter_with_state", _rebuild_parameter)
    add("torch.Size", _torch_size)
    add("torch.device", _torch_device)
    add("collections.OrderedDict", _container(OrderedDict), OrderedDict)
    add("collections.defaultdict", _defaultdict, dict)
    add("dnnlib.util.EasyDict", _container(dict), dict)
    for kind in (dict, list, set, frozenset, tuple, int, float, bool, str, bytes, complex):
        add(f"builtins.{kind.__name__}", _container(kind), kind)
    add("numpy.dtype", _numpy_dtype)
    add("numpy.ndarray", _refuse_call)
    for core in ("numpy.core", "numpy._core"):
        add(f"{core}.multiarray.scalar", _numpy_scalar)
        add(f"{core}.multiarray._reconstruct", _numpy_reconstruct)
    for name in ("Any", "Dict", "List"):  # OmegaConf metadata ref/key/element types
        add(f"typing.{name}", _stub, lambda qualname=f"typing.{name}": StubObject(qualname))
    return table


_ALLOWED: dict[str, SafeGlobal] = _allow_list()
"""Immutable after import: the fixed part of the allow-list."""


def resolve_global(module: str, name: str, source: str) -> Any:
    """Map a pickle global to its safe stand-in, or refuse.

    Args:
        module: module path named in the pickle.
        name: attribute name named in the pickle.
        source: file name used in the error message.

    Returns:
        a ``SafeGlobal`` (callable names) or a torch dtype object (``torch.float32`` ...).

    Raises:
        UnsafePickleError: the global is not on the allow-list.
    """
    qualname = f"{module}.{name}"
    if qualname in _ALLOWED:
        return _ALLOWED[qualname]
    if name.isidentifier() and (module == "omegaconf" or module.startswith(("omegaconf.", "torch.nn.modules."))):
        return SafeGlobal(qualname, _stub, lambda: StubObject(qualname))
    if module == "torch" and name.isidentifier() and isinstance(getattr(torch, name, None), torch.dtype):
        return getattr(torch, name)
    raise UnsafePickleError(f"refusing to load {qualname} from {source}: not on the allow-list; the file may be "
                            "malicious or not a StyleNeRF checkpoint")
