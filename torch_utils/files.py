"""Files every layer writes and reads: the cache root, atomic writes, SHA-256 of files.

They live here, in the lowest package, because the lowest users need them: the CUDA plugin builder
(``custom_ops``) builds under the cache root, and the generator reader/writer (``stylenerf.io``) writes
atomically and hashes weight files. ``nerffs`` uses the same functions; nothing above redefines them.

Environment:
    NERFFS_CACHE: cache root; unset or empty means ``~/.cache/nerffs``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

CACHE_ENV = "NERFFS_CACHE"
CHUNK = 1 << 22
"""Bytes read at a time when hashing a file (large weight files are never read whole)."""


def cache_root() -> Path:
    """The cache root: ``$NERFFS_CACHE`` (``~`` expanded), or ``~/.cache/nerffs`` when unset or blank."""
    value = os.environ.get(CACHE_ENV) or ""
    return Path(value).expanduser() if value.strip() else Path.home() / ".cache" / "nerffs"


# ---- atomic writes ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    A reader never sees a half-written file and a failure leaves no partial file behind.

    Args:
        path: the final destination. Its parent directory is created if needed.
        suffix: suffix of the temporary file (defaults to the destination's, so tools that look at the
            extension, e.g. ffmpeg, still pick the right format).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix if suffix is not None else dest.suffix,
                               dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; a finished output gets the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` atomically, as own contiguous CPU copies (safetensors refuses tensors that
    share storage), with the usual file mode."""
    own = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        mode = tmp.stat().st_mode & 0o777
        save_file(own, str(tmp), metadata=None if metadata is None else dict(metadata))
        os.chmod(tmp, mode)  # safetensors recreates the file with mode 0600


# ---- checksums -------------------------------------------------------------------------------------------------
def hash_file(path: str | os.PathLike, digest: hashlib._Hash | None = None) -> hashlib._Hash:
    """Feed a file's bytes, read in chunks, into ``digest`` (a new SHA-256 when None) and return it."""
    digest = hashlib.sha256() if digest is None else digest
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hash_file(path).hexdigest()
