"""The Deep3D / BFM09 257-coefficient layout (spec-pipeline.md 3.1, 3.4).

    id 0:80 | exp 80:144 | tex 144:224 | angle 224:227 | gamma 227:254 | trans 254:257
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

LAYOUT: dict[str, tuple[int, int]] = {
    "id": (0, 80), "exp": (80, 144), "tex": (144, 224), "angle": (224, 227), "gamma": (227, 254), "trans": (254, 257),
}
NUM_COEFFS = 257


@dataclass
class FaceCoeffs:
    """Split 3DMM coefficients, all [B, n]: identity, expression, texture, Euler angles (x, y, z; radians),
    SH lighting (27 = 3 colours x 9 bands) and translation."""

    id: torch.Tensor     # [B, 80]
    exp: torch.Tensor    # [B, 64]
    tex: torch.Tensor    # [B, 80]
    angle: torch.Tensor  # [B, 3]
    gamma: torch.Tensor  # [B, 27]
    trans: torch.Tensor  # [B, 3]

    @classmethod
    def from_vector(cls, coeffs: torch.Tensor) -> "FaceCoeffs":
        """Split a [B, 257] tensor (views, no copy)."""
        if coeffs.ndim != 2 or coeffs.shape[1] != NUM_COEFFS:
            raise ValueError(f"expected coefficients of shape [B, {NUM_COEFFS}], got {tuple(coeffs.shape)}")
        return cls(**{name: coeffs[:, a:b] for name, (a, b) in LAYOUT.items()})

    def to_vector(self) -> torch.Tensor:
        """Concatenate back to [B, 257] in the official order."""
        return torch.cat([getattr(self, name) for name in LAYOUT], dim=1)

    def replace(self, **parts: torch.Tensor) -> "FaceCoeffs":
        """A copy with some parts replaced (e.g. ``exp=`` from Audio2Exp)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(parts)
        return FaceCoeffs(**values)

    @classmethod
    def zeros(cls, batch: int = 1, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> "FaceCoeffs":
        return cls.from_vector(torch.zeros(batch, NUM_COEFFS, device=device, dtype=dtype))
