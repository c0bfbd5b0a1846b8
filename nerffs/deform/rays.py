"""Sample-point deformation from control-point motion (paper Eq. 7; spec-stylenerf.md section 7.3).

Control points live in the frontal image plane, in world (y, z) units: ``ref`` are the points of the fitted
reference face, ``pred`` the same points with the audio-driven expression (torso points are identical in
both, so they pin the body). Every NeRF sample p is a backward warp: the canonical field is queried at
p + (ref - pred)[nearest control point of p], moving only the (y, z) components.

Two matching modes:

* ``"world"`` (default): the nearest control point is found from the sample's own world (y, z) position
  for the camera actually rendered, so the same 3D point gets the same displacement from any viewpoint.
* ``"official"``: the nearest indices are computed once on the frontal reference render's samples and
  reused by sample index for every camera (what the official code does; wrong off-frontal, kept to compare).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


import torch

from nerffs.deform.knn import nearest_indices

MODES = ("world", "official")


@dataclass
class ControlPointDeformer:
    """Callable ``(points [B, N, 3], stage) -> points`` for ``NeRFSynthesisNetwork.render_nerf(deform=...)``.

    Attributes:
        ref: [1 or B, V, 2] control points of the reference face in world (y, z).
        pred: [1 or B, V, 2] the same control points in the driven frames (one set per batch item).
        mode: "world" or "official" (see module docstring).
        official_indices: for mode "official": stage -> [N] indices from the frontal reference samples.
        chunk: queries per nearest-neighbour step.
        index_cache: optional dict shared across calls with the same ``ref`` (world mode): the matches of an
            exact set of sample points are reused (fixed camera + fixed depths give the same points every
            frame, so the search runs once per camera instead of once per frame).
    """

    ref: torch.Tensor
    pred: torch.Tensor
    mode: str = "world"
    official_indices: dict[str, torch.Tensor] = field(default_factory=dict)
    chunk: int = 8192
    index_cache: dict | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if (self.ref.ndim != 3 or self.pred.ndim != 3 or self.ref.shape[1:] != self.pred.shape[1:]
                or self.ref.shape[-1] != 2 or self.ref.shape[0] not in (1, self.pred.shape[0])):
            raise ValueError(f"ref and pred must both be [B, V, 2], got {tuple(self.ref.shape)} and "
                             f"{tuple(self.pred.shape)}")
        if self.mode == "official" and not {"coarse", "fine"} <= set(self.official_indices):
            raise ValueError("mode 'official' needs official_indices for 'coarse' and 'fine' "
                             "(see match_reference_samples)")

    def displacement(self, points: torch.Tensor, stage: str) -> torch.Tensor:
        """(y, z) displacement of each point: [B, N, 3] -> [B, N, 2]."""
        delta = (self.ref - self.pred).to(points.dtype)  # [B|1, V, 2]
        b = points.shape[0]
        if delta.shape[0] not in (1, b):
            raise ValueError(f"{delta.shape[0]} control-point sets for a batch of {b} point sets")
        delta = delta.expand(b, -1, -1)
        if self.mode == "official":
            # Indices of batch item 0 of the reference render, reused for every item and camera.
            idx = self.official_indices[stage].to(points.device).expand(b, -1)
        else:
            idx = self._world_indices(points, stage)
        return delta.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2))

    def _world_indices(self, points: torch.Tensor, stage: str) -> torch.Tensor:
        """[B, N] nearest control point of each sample by its own (y, z), reusing cached matches."""
        ref = self.ref.to(points.dtype)
        if self.index_cache is None:
            return nearest_indices(points[..., 1:], ref.expand(points.shape[0], -1, -1), self.chunk)
        rows = []
        for item in points:
            key = (stage, tuple(item.shape), hashlib.blake2b(item.detach().cpu().numpy().tobytes(),
                                                             digest_size=16).digest())
            idx = self.index_cache.get(key)
            if idx is None:
                idx = nearest_indices(item[None, :, 1:], ref[:1], self.chunk)[0]
                if len(self.index_cache) >= 256:  # bounded: drop the oldest entry
                    self.index_cache.pop(next(iter(self.index_cache)))
                self.index_cache[key] = idx
            rows.append(idx)
        return torch.stack(rows)

    def __call__(self, points: torch.Tensor, stage: str) -> torch.Tensor:
        """Return displaced copies of ``points`` [B, N, 3] (never modifies the input in place)."""
        d = self.displacement(points, stage)
        return torch.cat([points[..., :1], points[..., 1:] + d], dim=-1)


def match_reference_samples(ref: torch.Tensor, points_coarse: torch.Tensor, points_fine: torch.Tensor,
                            chunk: int = 8192) -> dict[str, torch.Tensor]:
    """Official matching: nearest control point of each frontal reference sample, by sample index.

    Args:
        ref: [1, V, 2] reference control points.
        points_coarse / points_fine: [1, N, 3] sample points of the frontal reference render.

    Returns:
        {"coarse": [N], "fine": [N]} int64 indices.
    """
    return {stage: nearest_indices(p[:1, :, 1:], ref[:1].to(p.dtype), chunk)[0]
            for stage, p in (("coarse", points_coarse), ("fine", points_fine))}
