"""Code-free reading of official StyleNeRF training pickles (spec-stylenerf.md section 6).

The official snapshots are pickles whose network objects carry their defining source text; the official loader
``exec``s it, this package never does. Modules, from the trust boundary outwards:

* ``allowlist``: the only pickle globals that resolve, each to an inert stand-in (``UnsafePickleError`` for the
  rest);
* ``reader``: the restricted unpickler, ``read_official_pickle`` and the flattening to a ``state_dict``;
* ``omegaconf_kwargs``: the stored OmegaConf constructor kwargs as plain Python, interpolations resolved;
* ``config``: kwargs + tensor shapes -> ``GeneratorConfig``, cross-checked (``LegacyFormatError``).
"""
from stylenerf.legacy.allowlist import PersistentRecord, StubObject, UnsafePickleError
from stylenerf.legacy.config import LegacyFormatError, config_from_official, describe_mismatch, expected_state_shapes
from stylenerf.legacy.omegaconf_kwargs import to_plain
from stylenerf.legacy.reader import (OfficialCheckpoint, flatten_module, load_official_generator_state,
                                     read_official_pickle, restricted_loads)

__all__ = ["LegacyFormatError", "OfficialCheckpoint", "PersistentRecord", "StubObject", "UnsafePickleError",
           "config_from_official", "describe_mismatch", "expected_state_shapes", "flatten_module",
           "load_official_generator_state", "read_official_pickle", "restricted_loads", "to_plain"]
