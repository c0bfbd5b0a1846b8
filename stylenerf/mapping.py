"""Mapping network z -> ws with truncation (spec-stylenerf.md section 2.1, 1.5)."""
from __future__ import annotations

import torch
from torch import nn

from stylenerf.config import GeneratorConfig
from stylenerf.layers import FullyConnectedLayer


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> ws [B, num_ws, w_dim].

    z is normalised by its second moment, passed through ``num_layers`` equalized-lr FC layers (lrelu,
    lr multiplier 0.01) and broadcast to every style slot. Truncation lerps towards the ``w_avg`` buffer.
    Names: ``fc{i}.weight``, ``fc{i}.bias``, ``w_avg`` (c_dim = 0, so no embedding).
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        m = cfg.mapping
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = cfg.z_dim, cfg.w_dim, cfg.num_ws, m.num_layers
        self.w_avg_beta = m.w_avg_beta
        for i in range(m.num_layers):
            in_features = cfg.z_dim if i == 0 else cfg.w_dim
            layer = FullyConnectedLayer(in_features, cfg.w_dim, activation="lrelu", lr_multiplier=m.lr_multiplier)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None) -> torch.Tensor:
        """Args: z [B, z_dim]; psi in [0, 1] (1 = no truncation); cutoff: truncate only the first n ws.

        Returns: ws [B, num_ws, w_dim].
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {tuple(z.shape)}")
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            return truncate(ws, self.w_avg, truncation_psi, truncation_cutoff)
        return ws


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """w <- w_avg + psi (w - w_avg) for the first ``cutoff`` slots (all if None). ws [B, num_ws, w_dim]."""
    out = ws.clone()
    sl = slice(None) if cutoff is None else slice(None, cutoff)
    out[:, sl] = w_avg.lerp(ws[:, sl], psi)
    return out
