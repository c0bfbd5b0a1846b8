"""Control points of the ray deformation in the frontal NeRF plane (paper 4.3; spec-stylenerf.md 7.3).

The plane is the world (y, z) plane seen by the frontal camera. Image coordinates c in [0, size] map to
S(c) = 2 * half * c / size - half with half = 0.10 (the frontal NeRF view spans about +-tan 6 deg = +-0.105):

* face points: Deep3D projections (u right, v up) of every ``stride``-th 3DMM vertex of the 224 frame,
  (S(u), S(v)) -> (world y, world z);
* static ("torso") points: every ``stride``-th pixel of the hair/neck/cloth parsing mask of the reference
  render, (S(col), -S(row)) (rows point down, z up). They are the same in the reference and every frame,
  so samples nearest to them never move (pinned body). With head motion rendered by deformation, the static
  points on the head (hair, hat) form a separate group that turns with the head.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PLANE_HALF = 0.10
FACE_FRAME = 224


def to_plane(pixels: torch.Tensor, size: float, half: float = PLANE_HALF) -> torch.Tensor:
    """S(c) = 2 half c / size - half, elementwise."""
    return pixels * (2 * half / size) - half


def face_control_points(proj: torch.Tensor, stride: int = 4, frame: int = FACE_FRAME) -> torch.Tensor:
    """proj [B, V, 2] (u right, v up, pixels of the ``frame`` image) -> [B, ceil(V / stride), 2] plane points."""
    if proj.ndim != 3 or proj.shape[-1] != 2:
        raise ValueError(f"proj must be [B, V, 2], got {tuple(proj.shape)}")
    return to_plane(proj[:, ::stride], frame)


def torso_control_points(static_mask: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """static_mask [H, W] (bool or 0/1, parsing resolution) -> [P, 2] plane points (row-major pixel order)."""
    if static_mask.ndim != 2:
        raise ValueError(f"static_mask must be [H, W], got {tuple(static_mask.shape)}")
    rows, cols = torch.nonzero(static_mask > 0.5, as_tuple=True)
    rows, cols = rows[::stride].float(), cols[::stride].float()
    size = float(static_mask.shape[1])
    return torch.stack([to_plane(cols, size), -to_plane(rows, float(static_mask.shape[0]))], dim=-1)


@dataclass
class ControlPoints:
    """Reference control points: face points first, then the head's other points (only with head motion),
    then the static points.

    Attributes:
        ref: [1, N, 2] reference set (N = n_face + n_head + n_static).
        n_face: number of face points.
        n_head: number of head points (hair, hat): pinned like static points unless the head turns.
    """

    ref: torch.Tensor
    n_face: int
    n_head: int = 0

    @classmethod
    def build(cls, proj_ref: torch.Tensor, static_points: torch.Tensor, stride: int = 4,
              head_points: torch.Tensor | None = None) -> "ControlPoints":
        """proj_ref [1, V, 2] (fitted reference face), static_points [P, 2], head_points [H, 2] -> reference."""
        face = face_control_points(proj_ref, stride)
        parts = [face] + ([] if head_points is None else [head_points.to(face).unsqueeze(0)])
        ref = torch.cat(parts + [static_points.to(face).unsqueeze(0)], dim=1)
        return cls(ref=ref, n_face=face.shape[1], n_head=0 if head_points is None else int(head_points.shape[0]))

    @property
    def head(self) -> torch.Tensor:
        """[n_head, 2] reference head points."""
        return self.ref[0, self.n_face:self.n_face + self.n_head]

    def driven(self, proj: torch.Tensor, stride: int = 4, head: torch.Tensor | None = None) -> torch.Tensor:
        """Driven sets for frames: proj [B, V, 2], head [B, n_head, 2] (None: unmoved) -> [B, N, 2]; static
        points unchanged."""
        face = face_control_points(proj, stride)
        if face.shape[1] != self.n_face:
            raise ValueError(f"{face.shape[1]} face points per frame, reference has {self.n_face}")
        rest = self.ref[:, self.n_face:].expand(proj.shape[0], -1, -1)
        if head is not None:
            if head.shape[1:] != (self.n_head, 2):
                raise ValueError(f"head points must be [B, {self.n_head}, 2], got {tuple(head.shape)}")
            rest = torch.cat([head.to(rest.dtype), rest[:, self.n_head:]], dim=1)
        return torch.cat([face.to(rest.dtype), rest], dim=1)
