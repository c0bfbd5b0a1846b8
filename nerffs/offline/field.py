"""The offline prior: an explicit radiance field of one photo behind the StyleNeRF generator interface.

``portrait_generator(portrait)`` returns a :class:`stylenerf.Generator` whose synthesis network is
:class:`PortraitSynthesis`: the official ``render_nerf`` (rays, coarse + fine samples, deformation hook,
compositing, frozen background) runs unchanged over two small fields, and ``upsample`` decodes the feature map.

* Foreground (:class:`PortraitField`): a solid behind the fitted surface, ``sigma = s * sigmoid((x_s(q) - x) /
  eps)`` with ``x_s`` the surface depth along the frontal ray through the point and q the point's frontal NDC.
  Output features per point: RGB (the photo at q, coarse), then ``u, v`` (q as texture coordinates of the
  photo), ``dark`` and ``teeth`` (mouth-interior weights) and ``closed`` (read the closed-mouth copy of the
  photo: its mouth opening filled by the mirrored lips, so a shut mouth shows no trace of the teeth).
* Styles: the field has no learned styles; the first NeRF style vector carries an *expression code*
  (``code[:K]`` = expression, ``code[K]`` = 1 to apply it). With the code set, the field renders the face with
  that expression (a smooth backward warp by the photo's dense expression motion) and paints the mouth
  interior between the driven inner lips: the photo's own teeth moved with their jaws, a dark cavity between
  them, or a synthetic teeth band when the photo's mouth was closed. :class:`ExpressionCode` (the LipaintNet
  stand-in) writes that code; the identity styles (all zeros) render the photo.
* Background (:class:`PortraitBackground`): constant; the foreground is opaque, so it only shows on rays that
  leave the sample range.
* Upsampler (:class:`TextureDecoder`): bilinear upsampling of the feature map to the output size, then the photo
  sampled at (u, v) at full resolution, with the teeth and cavity colours mixed in by their weights. So the
  frontal view reproduces the photo, other views rotate real (fitted) geometry, and the method's ray
  deformation and feature blending act on texture coordinates.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nerffs.lipaint.model import mouth_styles
from nerffs.offline.geometry import NUM_CHANNELS, TAN6
from nerffs.offline.portrait import Portrait
from stylenerf import Generator
from stylenerf.config import GeneratorConfig, MappingConfig, NeRFConfig, RendererConfig, UpsamplerConfig
from stylenerf.generator import NeRFSynthesisNetwork

FEATURES = ("u", "v", "dark", "teeth", "closed")
CODE_FLAG = NUM_CHANNELS
"""Index of the 'apply the expression' flag in the expression code (after the K expression values)."""


@dataclass(frozen=True)
class FieldConfig:
    """Render settings of the offline field."""

    resolution: int = 512
    """Output image side (the aligned photo is made at this size)."""
    resolution_vol: int = 128
    """NeRF grid side Rv (rays per side); the decoder upsamples texture coordinates from it."""
    samples: int = 8
    """Coarse samples per ray (as many fine samples follow)."""
    sigma: float = 1000.0
    """Density inside the solid."""
    softness: float = 0.003
    """World-x width of the density edge."""
    w_dim: int = 16
    """Style width; must hold the expression code (K values + flag)."""
    dark_rgb: tuple[float, float, float] = (0.11, 0.04, 0.04)
    """Colour of the mouth cavity (RGB in [0, 1])."""
    warp_iterations: int = 3
    """Fixed-point steps inverting the expression motion."""

    def generator_config(self) -> GeneratorConfig:
        """A StyleNeRF config with this field's shapes (10 NeRF styles, official camera and depth range)."""
        if self.w_dim < NUM_CHANNELS + 1:
            raise ValueError(f"FieldConfig.w_dim must be at least {NUM_CHANNELS + 1}, got {self.w_dim}")
        return GeneratorConfig(
            img_resolution=self.resolution, z_dim=8, w_dim=self.w_dim, resolution_vol=self.resolution_vol,
            mapping=MappingConfig(num_layers=0),
            nerf=NeRFConfig(rgb_out_dim=len(FEATURES), fg_hidden=8, bg_hidden=8, z_dim_bg=4, n_freq_posenc=1),
            renderer=RendererConfig(n_ray_samples=self.samples, n_bg_samples=2),
            upsampler=UpsamplerConfig(channel_base=4 * self.resolution, channel_max=4))


def _grid(q: torch.Tensor) -> torch.Tensor:
    """NDC (y right, z up) [B, N, 2] -> grid_sample coordinates [B, N, 1, 2] (x right, y down)."""
    return torch.stack([q[..., 0], -q[..., 1]], dim=-1).unsqueeze(2)


def _sample(img: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Bilinear lookup of [B, C, H, W] at NDC points [B, N, 2] -> [B, N, C] (edges clamped)."""
    out = F.grid_sample(img, _grid(q), mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


def _chain_at(chain: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Heights of left-to-right polylines chain [B, n, 2] (y, z) at columns y [B, N] (clamped at the ends)."""
    ys, order = chain[..., 0].sort(dim=-1)
    zs = chain[..., 1].gather(-1, order)
    idx = torch.searchsorted(ys.contiguous(), y.contiguous()).clamp(1, ys.shape[-1] - 1)
    y0, y1 = ys.gather(-1, idx - 1), ys.gather(-1, idx)
    z0, z1 = zs.gather(-1, idx - 1), zs.gather(-1, idx)
    t = ((y - y0) / (y1 - y0).clamp_min(1e-9)).clamp(0.0, 1.0)
    return z0 + t * (z1 - z0)


def _nonzero_box(motion: torch.Tensor) -> torch.Tensor:
    """[[y_min, z_min], [y_max, z_max]] NDC box of the grid cells where any motion [K, 3, G, G] is non-zero."""
    g = motion.shape[-1]
    rows, cols = torch.nonzero(motion.abs().amax(dim=(0, 1)) > 0, as_tuple=True)
    if rows.numel() == 0:
        return torch.zeros(2, 2)
    y = (torch.stack([cols.min(), cols.max() + 1]).float() / g) * 2 - 1
    z = 1 - (torch.stack([rows.max() + 1, rows.min()]).float() / g) * 2
    return torch.stack([torch.stack([y[0], z[0]]), torch.stack([y[1], z[1]])])


def _in_box(points: torch.Tensor, box: torch.Tensor, margin: float) -> torch.Tensor:
    """[N] bool: points [N, 2] inside ``box`` [[lo], [hi]] widened by ``margin``."""
    lo, hi = box[0].to(points) - margin, box[1].to(points) + margin
    return ((points >= lo) & (points <= hi)).all(dim=-1)


def _ramp(x: torch.Tensor, width: float) -> torch.Tensor:
    return (x / width).clamp(0.0, 1.0)


class PortraitField(nn.Module):
    """Foreground field: (points [B, N, 3], styles [B, >= 1, w_dim]) -> sigma [B, N, 1], out [B, N, 3 + 5]."""

    def __init__(self, portrait: Portrait, cfg: FieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        g = portrait.depth.shape[0]
        colour = torch.from_numpy(np.array(portrait.texture)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        colour = F.interpolate(colour, size=(g, g), mode="area")
        self.register_buffer("surface", torch.cat([torch.from_numpy(portrait.depth)[None, None], colour], dim=1))
        k = portrait.motion.shape[0]
        self.register_buffer("motion", torch.from_numpy(portrait.motion).reshape(k, 3, g, g))
        self.register_buffer("e0", torch.from_numpy(portrait.e0).float())
        ndc = portrait.ndc()
        self.register_buffer("upper", torch.from_numpy(ndc[portrait.lips_upper]).float())
        self.register_buffer("lower", torch.from_numpy(ndc[portrait.lips_lower]).float())
        self.register_buffer("upper_motion", torch.from_numpy(portrait.chain_motion(portrait.lips_upper)).float())
        self.register_buffer("lower_motion", torch.from_numpy(portrait.chain_motion(portrait.lips_lower)).float())
        self.mouth_width = float(abs(ndc[portrait.outer_upper[-1], 0] - ndc[portrait.outer_upper[0], 0]))
        self.cell = 2.0 / g
        self.register_buffer("motion_box", _nonzero_box(self.motion))

    def forward(self, p: torch.Tensor, ws: torch.Tensor, grid: tuple[int, int, int] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = p.shape
        ndc = p[..., 1:] / ((1.0 - p[..., :1]) * TAN6)
        code = ws[:, 0].to(p.dtype)
        q, uv, dx = ndc, ndc, torch.zeros_like(p[..., 0])
        dark = teeth = closed = torch.zeros_like(dx)
        edit = code[:, CODE_FLAG] > 0.5
        if bool(edit.any()):
            rows = edit.nonzero()[:, 0]
            parts = self._expression(ndc[rows], code[rows, :NUM_CHANNELS])
            q, uv, dx, dark, teeth, closed = (t.clone().index_put((rows,), v) for t, v in
                                              zip((q, uv, dx, dark, teeth, closed), parts))
        depth = _sample(self.surface[:, :1].expand(b, -1, -1, -1), q)[..., 0] + dx
        rgb = _sample(self.surface[:, 1:].expand(b, -1, -1, -1), uv)
        sigma = self.cfg.sigma * torch.sigmoid((depth - p[..., 0]) / self.cfg.softness)
        out = torch.cat([rgb, uv, dark[..., None], teeth[..., None], closed[..., None]], dim=-1)
        return sigma[..., None], out

    def _expression(self, ndc: torch.Tensor, exp: torch.Tensor):
        """Warp and mouth interior for expression ``exp`` [B, K] at NDC points [B, N, 2].

        Only points that can be affected are computed: the warp inside the box where the photo's expression
        motion is non-zero (widened by this expression's largest displacement), the interior inside the box of
        the driven inner lips; everywhere else the result is exactly the identity (no motion, no interior).
        """
        delta = exp - self.e0.to(exp.dtype)
        motion = torch.einsum("bk,kchw->bchw", delta, self.motion.to(exp.dtype))
        q, dx = ndc.clone(), torch.zeros_like(ndc[..., 0])
        uv, dark, teeth, closed = q.clone(), torch.zeros_like(dx), torch.zeros_like(dx), torch.ones_like(dx)
        for i in range(len(ndc)):
            reach = float(motion[i, :2].abs().amax()) + self.cell
            sel = _in_box(ndc[i], self.motion_box, reach).nonzero()[:, 0]
            if len(sel):
                p = ndc[i, sel][None]
                w = p
                for _ in range(self.cfg.warp_iterations):
                    w = p - _sample(motion[i:i + 1, :2], w)
                q[i, sel], dx[i, sel] = w[0], _sample(motion[i:i + 1, 2:], w)[0, :, 0]
            up, low = self._driven_lips(delta[i:i + 1])
            lips = torch.cat([up[0], low[0]])
            box = torch.stack([lips.amin(0), lips.amax(0)])
            sel = _in_box(ndc[i], box, 2 * self.cell).nonzero()[:, 0]
            uv[i] = q[i]
            if len(sel):
                parts = self._interior(ndc[i, sel][None], q[i, sel][None], up, low)
                for out, part in zip((uv, dark, teeth, closed), parts):
                    out[i, sel] = part[0]
        return q, uv, dx, dark, teeth, closed

    def _driven_lips(self, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inner-lip chains [B, n, 2] of the expression offsets ``delta`` [B, K]."""
        up = self.upper.to(delta.dtype) + torch.einsum("bk,knc->bnc", delta, self.upper_motion.to(delta.dtype))
        low = self.lower.to(delta.dtype) + torch.einsum("bk,knc->bnc", delta, self.lower_motion.to(delta.dtype))
        return up, low

    def _interior(self, ndc: torch.Tensor, q: torch.Tensor, up: torch.Tensor, low: torch.Tensor):
        """Texture coordinates and cavity / teeth / closed-copy weights between the driven inner lips
        ``up`` / ``low`` [B, n, 2], at points ``ndc`` (driven) warped to ``q`` (photo) [B, N, 2]."""
        up0, low0 = self.upper.to(ndc.dtype), self.lower.to(ndc.dtype)
        y, z = ndc[..., 0], ndc[..., 1]
        left, right = up[:, :1, 0], up[:, -1:, 0]
        s = (y - left) / (right - left).clamp_min(1e-6)
        z_up, z_low = _chain_at(up, y), _chain_at(low, y)
        soft = 0.5 * self.cell
        inside = _ramp(z_up - z, soft) * _ramp(z - z_low, soft) * ((s > 0) & (s < 1)).to(ndc.dtype)
        # The photo's own mouth opening at the matching column: its teeth move with their lips.
        y0 = up0[0, 0] + s.clamp(0, 1) * (up0[-1, 0] - up0[0, 0])
        z_up0 = _chain_at(up0[None].expand(len(ndc), -1, -1), y0)
        z_low0 = _chain_at(low0[None].expand(len(ndc), -1, -1), y0)
        half = 0.5 * (z_up0 - z_low0).clamp_min(0.0)
        d_up, d_low = z_up - z, z - z_low
        use_up = d_up <= d_low
        z_tex = torch.where(use_up, z_up0 - d_up, z_low0 + d_low)
        photo_teeth = 1.0 - _ramp(torch.minimum(d_up, d_low) - half, soft)
        has_interior = _ramp(2.0 * half - 0.04 * self.mouth_width, 0.04 * self.mouth_width)
        band = 0.08 * self.mouth_width * torch.sin(torch.pi * s.clamp(0, 1)).clamp_min(0.0).sqrt()
        synthetic = 1.0 - _ramp(d_up - band, soft)
        show_photo = inside * has_interior * photo_teeth
        uv = torch.lerp(q, torch.stack([y0, z_tex], dim=-1), show_photo[..., None])
        teeth = inside * (1.0 - has_interior) * synthetic
        dark = inside * (1.0 - has_interior * photo_teeth - (1.0 - has_interior) * synthetic)
        return uv, dark, teeth, 1.0 - show_photo


class PortraitBackground(nn.Module):
    """Background field: a constant colour (the photo's border) with texture coordinates along the ray."""

    def __init__(self, portrait: Portrait) -> None:
        super().__init__()
        t = portrait.texture.astype(np.float32) / 127.5 - 1.0
        border = np.concatenate([t[0], t[-1], t[:, 0], t[:, -1]]).mean(axis=0)
        self.register_buffer("colour", torch.from_numpy(border))

    def forward(self, p: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, _ = p.shape
        uv = (p[..., 1:3] / TAN6).clamp(-1.0, 1.0)
        rgb = self.colour.to(p.dtype).expand(b, n, 3)
        return torch.ones_like(p[..., :1]), torch.cat([rgb, uv, torch.zeros_like(p[..., :3])], dim=-1)


class TextureDecoder(nn.Module):
    """feature map [B, 5, Rv, Rv] -> image [B, 3, R, R] in [-1, 1]: the photo sampled at the rendered uv (its
    closed-mouth copy where ``closed`` says so), then the teeth and cavity colours mixed in."""

    def __init__(self, portrait: Portrait, cfg: FieldConfig) -> None:
        super().__init__()
        self.resolution, self.scale = cfg.resolution, cfg.resolution // cfg.resolution_vol
        tex = torch.from_numpy(np.array(portrait.texture)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        closed = torch.from_numpy(np.array(portrait.texture_closed)).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        self.register_buffer("texture", torch.cat([tex, closed], dim=1))
        self.register_buffer("teeth", torch.from_numpy(portrait.teeth_rgb).float().view(1, 3, 1, 1) * 2 - 1)
        self.register_buffer("dark", torch.tensor(cfg.dark_rgb).view(1, 3, 1, 1) * 2 - 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        """feat [B, 5, h, w] (the whole map, or a crop of it) -> [B, 3, h s, w s] with s = R / Rv."""
        f = F.interpolate(feat, scale_factor=self.scale, mode="bilinear", align_corners=False)
        grid = torch.stack([f[:, 0], -f[:, 1]], dim=-1)
        both = F.grid_sample(self.texture.to(feat.dtype).expand(len(feat), -1, -1, -1), grid, mode="bilinear",
                             padding_mode="border", align_corners=False)
        img = torch.lerp(both[:, :3], both[:, 3:], f[:, 4:5].clamp(0, 1))
        img = torch.lerp(img, self.teeth.to(img.dtype).expand_as(img), f[:, 3:4].clamp(0, 1))
        return torch.lerp(img, self.dark.to(img.dtype).expand_as(img), f[:, 2:3].clamp(0, 1))


class PortraitSynthesis(NeRFSynthesisNetwork):
    """The official two-stage synthesis over the portrait fields (only the children and ``upsample`` differ)."""

    def __init__(self, cfg: GeneratorConfig, portrait: Portrait, field_cfg: FieldConfig) -> None:
        nn.Module.__init__(self)  # the official children are replaced, not built
        self._init_common(cfg)
        self.fg_nerf = PortraitField(portrait, field_cfg)
        self.bg_nerf = PortraitBackground(portrait)
        self.decoder = TextureDecoder(portrait, field_cfg)

    def upsample(self, feat: torch.Tensor, img_nerf: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must have {self.num_ws} styles, got {ws.shape[1]}")
        return self.decoder(feat)

    def upsample_radius(self) -> int:
        """The decoder's bilinear upsampling reads the two nearest cells per axis: one cell of reach."""
        return 1


class ConstantMapping(nn.Module):
    """z -> all-zero styles: the portrait field's identity lives in its buffers, not in a latent."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None) -> torch.Tensor:
        return z.new_zeros(z.shape[0], self.num_ws, self.w_dim)


class ExpressionCode(nn.Module):
    """LipaintNet stand-in: w' = w with the expression code written in (``w'[:K] = exp[:K]``, flag 1)."""

    def __init__(self, w_dim: int, exp_dim: int = 64) -> None:
        super().__init__()
        self.w_dim, self.exp_dim = w_dim, exp_dim

    def forward(self, w: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
        out = w.clone()
        out[:, :NUM_CHANNELS] = exp[:, :NUM_CHANNELS].to(w.dtype)
        out[:, CODE_FLAG] = 1.0
        return out

    def mouth_styles(self, ws: torch.Tensor, exp: torch.Tensor, num_nerf_ws: int) -> torch.Tensor:
        """Styles of the LipaintNet pass: the code repeated over the NeRF slots (see LipaintNet.mouth_styles)."""
        return mouth_styles(self, ws, exp, num_nerf_ws)


def portrait_generator(portrait: Portrait, cfg: FieldConfig | None = None) -> Generator:
    """A frozen generator rendering ``portrait`` (see the module docstring)."""
    cfg = cfg or FieldConfig()
    if portrait.size != cfg.resolution:
        raise ValueError(f"portrait fitted at {portrait.size} px, field renders {cfg.resolution} px")
    gcfg = cfg.generator_config()
    g = Generator(gcfg, synthesis=PortraitSynthesis(gcfg, portrait, cfg), mapping=ConstantMapping(gcfg))
    return g.eval().requires_grad_(False)
