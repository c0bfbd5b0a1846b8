"""Per-face cache of the work done once per photo: alignment and the talking-head reference.

An entry is ``<root>/<kind>-<key>.safetensors`` (tensors) plus ``<kind>-<key>.json`` (plain values and the
sha256 of the tensor file). The key is a sha256 over the image bytes, the generator weights and every
setting that affects the result, so a changed setting never reuses a stale entry. Entries are written
atomically and verified before reuse; a corrupted entry is logged, deleted and recomputed. The PTI
inversion keeps its own cache (``nerffs.inversion``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.preprocess.align import AlignedFace
from nerffs.talking.controls import ControlPoints
from nerffs.talking.loop import Reference
from nerffs.utils.io import atomic_path, atomic_write_text
from stylenerf import SampleDepths

log = logging.getLogger(__name__)
FORMAT = 1


def default_cache_dir() -> Path:
    """``$NERFFS_CACHE/faces`` (default ``~/.cache/nerffs/faces``)."""
    return Path(os.environ.get("NERFFS_CACHE", Path.home() / ".cache" / "nerffs")).expanduser() / "faces"


def content_key(*parts: Any) -> str:
    """sha256 over bytes / arrays / tensors / JSON-able values, in order (first 32 hex digits)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous().numpy()
        if isinstance(part, np.ndarray):
            h.update(str((part.dtype.str, part.shape)).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=_jsonable).encode())
        h.update(b"|")
    return h.hexdigest()[:32]


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return repr(obj)


def weights_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's state (names, shapes, values): identifies the generator an entry was made with."""
    return content_key(*[x for k, v in sorted(module.state_dict().items()) for x in (k, v)])


class FaceCache:
    """Read/write verified entries of one kind ('align' or 'reference') under ``root``."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        return self.root / f"{kind}-{key}.safetensors", self.root / f"{kind}-{key}.json"

    def save(self, kind: str, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        from safetensors.torch import save_file

        data, meta_path = self._paths(kind, key)
        with atomic_path(data) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        digest = hashlib.sha256(data.read_bytes()).hexdigest()
        atomic_write_text(meta_path, json.dumps({"format": FORMAT, "sha256": digest, **meta}, indent=1))

    def load(self, kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The entry, or None when absent; a corrupted entry is removed (and None returned)."""
        from safetensors.torch import load_file

        data, meta_path = self._paths(kind, key)
        if not (data.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format") != FORMAT or hashlib.sha256(data.read_bytes()).hexdigest() != meta["sha256"]:
                raise ValueError("checksum or format mismatch")
            return load_file(str(data)), meta
        except Exception as exc:  # any damage: recompute rather than trust it
            log.warning("cache entry %s-%s is corrupt (%s); recomputing", kind, key, exc)
            data.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            return None

    # ---- typed helpers -----------------------------------------------------------------------------
    def save_aligned(self, key: str, a: AlignedFace) -> None:
        t = {"image": torch.from_numpy(np.ascontiguousarray(a.image)), "quad": torch.from_numpy(a.quad),
             "matrix": torch.from_numpy(a.matrix), "inverse": torch.from_numpy(a.inverse),
             "points": torch.from_numpy(np.ascontiguousarray(a.points))}
        self.save("align", key, t, {"source_shape": list(a.source_shape)})

    def load_aligned(self, key: str) -> AlignedFace | None:
        entry = self.load("align", key)
        if entry is None:
            return None
        t, meta = entry
        return AlignedFace(image=t["image"].numpy(), quad=t["quad"].numpy(), matrix=t["matrix"].numpy(),
                           inverse=t["inverse"].numpy(), source_shape=tuple(meta["source_shape"]),
                           points=t["points"].numpy())

    def save_reference(self, key: str, ref: Reference) -> None:
        t = {"ws": ref.ws, "bg_latent": ref.bg_latent, "depths_coarse": ref.depths.coarse,
             "bg_feat": ref.bg_feat, "coeffs": ref.coeffs.to_vector(), "controls": ref.controls.ref,
             "image": ref.image}
        if ref.depths.fine is not None:
            t["depths_fine"] = ref.depths.fine
        t.update({f"official_{k}": v for k, v in ref.official_indices.items()})
        if ref.pivot is not None:
            t.update(pivot=ref.pivot, pivot_plane=ref.pivot_plane)
        self.save("reference", key, t, {"n_face": ref.controls.n_face, "n_head": ref.controls.n_head,
                                        "fit_error_px": ref.fit_error_px})

    def load_reference(self, key: str, device: torch.device | str = "cpu") -> Reference | None:
        entry = self.load("reference", key)
        if entry is None:
            return None
        t, meta = entry
        t = {k: v.to(device) for k, v in t.items()}
        return Reference(ws=t["ws"], bg_latent=t["bg_latent"], depths=SampleDepths(t["depths_coarse"],
                         t.get("depths_fine")), bg_feat=t["bg_feat"], coeffs=FaceCoeffs.from_vector(t["coeffs"]),
                         controls=ControlPoints(ref=t["controls"], n_face=int(meta["n_face"]),
                                                n_head=int(meta.get("n_head", 0))), image=t["image"],
                         official_indices={k[9:]: v for k, v in t.items() if k.startswith("official_")},
                         fit_error_px=meta.get("fit_error_px"), pivot=t.get("pivot"),
                         pivot_plane=t.get("pivot_plane"))
