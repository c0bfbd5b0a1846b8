"""Per-face cache of the work done once per photo: alignment and the talking-head reference.

An entry is ``<root>/<kind>-<key>.safetensors`` (tensors) plus ``<kind>-<key>.json`` (plain values and the
sha256 of the tensor file), written and verified by the shared cache layer (``nerffs.utils.cache``). The key
is a ``content_key`` over the image, the models' ``weights_fingerprint`` and every setting that affects the
result, so a changed setting never reuses a stale entry. PTI inversions live in this cache's ``inversion``
folder (``nerffs.inversion.cache``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.preprocess.align import AlignedFace
from nerffs.talking.controls import ControlPoints
from nerffs.talking.loop import Reference
from nerffs.utils.cache import faces_dir, load_entry, save_entry
from stylenerf import SampleDepths

FORMAT = 1


class FaceCache:
    """Read/write verified entries of one kind ('align', 'reference', 'portrait') under ``root``.

    Args:
        root: the per-face cache directory (None: ``nerffs.utils.cache.faces_dir()``, ``<cache root>/faces``).
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = faces_dir(root)

    def _paths(self, kind: str, key: str) -> tuple[Path, Path]:
        return self.root / f"{kind}-{key}.safetensors", self.root / f"{kind}-{key}.json"

    def save(self, kind: str, key: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        save_entry(*self._paths(kind, key), FORMAT, tensors, meta)

    def load(self, kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The entry, or None when absent; a damaged entry is removed (and None returned)."""
        return load_entry(*self._paths(kind, key), FORMAT)

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
