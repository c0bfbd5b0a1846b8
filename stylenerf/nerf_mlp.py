"""Foreground and background NeRF MLPs (spec-stylenerf.md sections 2.2-2.3, 4.3).

Both run on point lists [B, N, D] (the official code reshapes points into a 32x32 image and runs 1x1 convs;
that is the same per-point MLP). Output per point: ``sigma_raw`` [B, N, 1] and ``out`` [B, N, 3 + F]
(rgb first, then the F feature channels).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from stylenerf.config import GeneratorConfig
from stylenerf.layers import Conv2dLayer, PlainLinear, Style2Layer, ToRGBLayer


def positional_encoding(p: torch.Tensor, n_freq: int) -> torch.Tensor:
    """'normal' encoding: concat_i [sin(2^i pi p), cos(2^i pi p)], i < n_freq, sin block first. [.., D] -> [.., 2LD]"""
    freqs = (2.0 ** torch.arange(n_freq, device=p.device, dtype=p.dtype)) * math.pi  # [L]
    x = p.unsqueeze(-2) * freqs.unsqueeze(-1)  # [..., L, D]
    enc = torch.stack([torch.sin(x), torch.cos(x)], dim=-2)  # [..., L, 2, D]
    return enc.flatten(-3)


class ForegroundNeRF(nn.Module):
    """Style-modulated foreground MLP: fc_in, blocks.0..n-2, sigma_out, feat_out, to_rgb (spec 2.3).

    Styles: ws[:, 0] -> fc_in, ws[:, 1 + i] -> blocks.i, ws[:, n] -> sigma_out, ws[:, n + 1] -> feat_out,
    where n = ``fg_blocks`` (8 for FFHQ: 10 styles in total).
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        n = cfg.nerf
        self.n_freq, self.num_ws, self.normalized_feat = n.n_freq_posenc, n.num_ws, n.normalized_feat
        in_dim = 3 * 2 * n.n_freq_posenc
        self.fc_in = Style2Layer(in_dim, n.fg_hidden, cfg.w_dim)
        self.blocks = nn.ModuleList([Style2Layer(n.fg_hidden, n.fg_hidden, cfg.w_dim) for _ in range(n.fg_blocks - 1)])
        self.sigma_out = ToRGBLayer(n.fg_hidden, 1, cfg.w_dim)
        self.feat_out = ToRGBLayer(n.fg_hidden, n.rgb_out_dim, cfg.w_dim)
        self.to_rgb = Conv2dLayer(n.rgb_out_dim, 3, kernel_size=1)

    def forward(self, p: torch.Tensor, ws: torch.Tensor, grid: tuple[int, int, int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: p [B, N, 3] world points; ws [B, >= num_ws, w_dim] (first num_ws used); grid (H, W, S) of
        the point list, needed only for ``normalized_feat``.

        Returns: sigma_raw [B, N, 1], out [B, N, 3 + F].
        """
        h = self.fc_in(positional_encoding(p, self.n_freq), ws[:, 0])
        for i, block in enumerate(self.blocks):
            h = block(h, ws[:, 1 + i])
        sigma = self.sigma_out.forward_points(h, ws[:, len(self.blocks) + 1])
        feat = self.feat_out.forward_points(h, ws[:, len(self.blocks) + 2])
        if self.normalized_feat:
            feat = _official_row_normalise(feat, grid)
        rgb = torch.einsum("bnc,oc->bno", feat, self.to_rgb.weight[:, :, 0, 0].to(feat.dtype)) * self.to_rgb.weight_gain
        rgb = rgb + self.to_rgb.bias.to(feat.dtype)
        return sigma, torch.cat([rgb, feat], dim=-1)


def _official_row_normalise(feat: torch.Tensor, grid: tuple[int, int, int] | None) -> torch.Tensor:
    """Reproduce the official ``normalized_feat`` quirk (spec 2.3 hazard): the L2 norm is taken over the
    image-column axis of the [(B S), C, H, W] layout, not over channels. feat [B, H*W*S, C]."""
    if grid is None:
        raise ValueError("normalized_feat needs the (H, W, S) grid of the point list")
    h, w, s = grid
    b, _, c = feat.shape
    f = feat.reshape(b, h, w, s, c)
    f = f / (1e-7 + f.norm(dim=2, keepdim=True))
    return f.reshape(b, -1, c)


class BackgroundNeRF(nn.Module):
    """Background MLP on inverse-sphere points (unit vector, inverse radius) + a latent; no styles (spec 2.2).

    Input: PE(4-D point) (80) then z_bg (32) -> 112. Layers: fc_in, blocks.0..n-2 (Linear + ReLU),
    sigma_out and feat_out (plain linear), to_rgb (1x1 equalized conv).
    """

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        n = cfg.nerf
        self.n_freq, self.z_dim = n.n_freq_posenc, n.z_dim_bg
        in_dim = 4 * 2 * n.n_freq_posenc + n.z_dim_bg
        self.fc_in = PlainLinear(in_dim, n.bg_hidden, activation="relu")
        self.blocks = nn.ModuleList([PlainLinear(n.bg_hidden, n.bg_hidden, activation="relu")
                                     for _ in range(n.bg_blocks - 1)])
        self.sigma_out = PlainLinear(n.bg_hidden, 1, with_filter=False)
        self.feat_out = PlainLinear(n.bg_hidden, n.feat_bg, with_filter=False)
        self.to_rgb = Conv2dLayer(n.feat_bg, 3, kernel_size=1)

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: p [B, N, 4] inverse-sphere points; z [B, z_dim_bg]. Returns sigma_raw [B, N, 1], out [B, N, 3 + F]."""
        enc = positional_encoding(p, self.n_freq)
        h = torch.cat([enc, z.unsqueeze(1).expand(-1, p.shape[1], -1).to(enc.dtype)], dim=-1)
        h = self.fc_in(h)
        for block in self.blocks:
            h = block(h)
        sigma, feat = self.sigma_out(h), self.feat_out(h)
        rgb = torch.einsum("bnc,oc->bno", feat, self.to_rgb.weight[:, :, 0, 0].to(feat.dtype)) * self.to_rgb.weight_gain
        rgb = rgb + self.to_rgb.bias.to(feat.dtype)
        return sigma, torch.cat([rgb, feat], dim=-1)
