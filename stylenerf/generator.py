"""StyleNeRF generator assembly (spec-stylenerf.md sections 1.1, 1.4-1.5, 3-4) with the hooks NeRFFaceSpeech needs.

``Generator`` = ``mapping`` (z -> ws) + ``synthesis`` (ws, camera -> image). The synthesis network has two
separately callable stages so callers can cache one and rerun the other:

1. ``render_nerf``: rays, coarse + hierarchical fine foreground samples, background, compositing
   -> ``NeRFOutput`` (feature map [B, F, Rv, Rv], NeRF RGB [B, 3, Rv, Rv], depths, sample points).
2. ``upsample``: feature map + NeRF RGB + ws -> image [B, 3, R, R].

Hooks (arguments, never globals): ``deform`` moves coarse/fine sample points before the MLP sees them;
``depths`` fixes the normalised sample depths; ``bg_latent`` fixes the background latent; ``bg_feat`` reuses
a cached background; ``feature_hook`` edits the feature map before the upsampler (feature blending).
Gradients flow to ws, latents and parameters whenever autograd is enabled; wrap inference in
``torch.inference_mode()`` (the pipeline does) so no graph is built.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from stylenerf import volume_renderer as vr
from stylenerf.camera import Rays, freeze_bg_camera, generate_rays, sample_cameras
from stylenerf.config import GeneratorConfig
from stylenerf.mapping import MappingNetwork
from stylenerf.nerf_mlp import BackgroundNeRF, ForegroundNeRF
from stylenerf.upsampler import build_blocks

FeatureHook = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SampleDepths:
    """Normalised sample depths in [0, 1] (world depth = near + (far - near) * d). Each [B, Rv*Rv, S]."""

    coarse: torch.Tensor
    fine: torch.Tensor | None = None


@dataclass
class NeRFOutput:
    """Result of the NeRF stage.

    feat [B, F, Rv, Rv]; img_nerf [B, 3, Rv, Rv]; depths (coarse and fine normalised depths, pre-merge);
    points_coarse / points_fine [B, Rv*Rv*S, 3] undeformed world sample positions (index =
    (row * Rv + col) * S + step); bg_feat [B, Rv*Rv, 3 + F] background before the transmittance factor
    (cacheable with a frozen background); bg_lambda [B, Rv*Rv] transmittance through the foreground.
    """

    feat: torch.Tensor
    img_nerf: torch.Tensor
    depths: SampleDepths
    points_coarse: torch.Tensor
    points_fine: torch.Tensor | None
    bg_feat: torch.Tensor
    bg_lambda: torch.Tensor


@dataclass
class SynthesisOutput:
    """img [B, 3, R, R] in about [-1, 1]; ``nerf`` holds the NeRF-stage tensors (feature map before the hook)."""

    img: torch.Tensor
    nerf: NeRFOutput


class NeRFSynthesisNetwork(nn.Module):
    """ws [B, num_ws, w_dim] + cam2world [B, 4, 4] -> image. Children: fg_nerf, bg_nerf, b{r}; buffer alpha."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        self._init_common(cfg)
        self.fg_nerf = ForegroundNeRF(cfg)
        self.bg_nerf = BackgroundNeRF(cfg)
        for name, block in build_blocks(cfg.block_resolutions, cfg.nerf.rgb_out_dim, cfg.w_dim, cfg.upsampler).items():
            self.add_module(name, block)

    def _init_common(self, cfg: GeneratorConfig) -> None:
        """Attributes every synthesis network has, whatever its fields and upsampler (subclasses with other
        ``fg_nerf`` / ``bg_nerf`` / ``upsample`` call this instead of building the official children)."""
        self.cfg = cfg
        self.num_ws, self.num_nerf_ws = cfg.num_ws, cfg.nerf.num_ws
        self.block_resolutions = cfg.block_resolutions
        # Training-curriculum buffer; 1 = fully trained (spec 3.6). Informational at inference here.
        self.register_buffer("alpha", torch.ones([]))

    # ---- stage 1: NeRF ---------------------------------------------------------------------------
    def render_nerf(self, ws: torch.Tensor, cam2world: torch.Tensor, *, bg_latent: torch.Tensor | None = None,
                    freeze_bg: bool = False, deform: vr.Deform | None = None, depths: SampleDepths | None = None,
                    bg_feat: torch.Tensor | None = None, rng: torch.Generator | None = None) -> NeRFOutput:
        """Render the NeRF feature map.

        Args:
            ws: [B, num_ws or num_nerf_ws, w_dim]; the first ``num_nerf_ws`` styles drive the foreground.
            cam2world: [B, 4, 4] foreground camera.
            bg_latent: [B, z_dim_bg] background latent; drawn from ``rng`` when None.
            freeze_bg: background rays from the fixed camera of spec 4.2 instead of ``cam2world``.
            deform: callable (points [B, N, 3], 'coarse' | 'fine') -> points; applied before the MLP only
                (compositing uses the undeformed depths, spec 7.3).
            depths: fixed normalised sample depths; skips hierarchical sampling when ``fine`` is given.
            bg_feat: cached background features [B, Rv*Rv, 3 + F] (from a previous ``NeRFOutput``).
            rng: randomness for the background latent (only used when ``bg_latent`` is None).
        """
        cfg, b = self.cfg, ws.shape[0]
        if cam2world.shape != (b, 4, 4):
            raise ValueError(f"cam2world must be [{b}, 4, 4] to match ws, got {tuple(cam2world.shape)}")
        rays = self._rays(cam2world)
        ray_norm = rays.directions.norm(dim=-1)  # [B, P]
        p, s = rays.directions.shape[1], cfg.renderer.n_ray_samples
        di = depths.coarse if depths is not None else vr.coarse_depths(b, p, s, ws.device)
        pts_c = rays.at(vr.to_world_depth(di, cfg.camera.depth_range))
        sig_c, out_c = self._query_fg(pts_c, ws, deform, "coarse", (p, s))
        di_f = pts_f = None
        if cfg.renderer.hierarchical:
            di_f = depths.fine if depths is not None and depths.fine is not None else None
            if di_f is None:
                w_c, _ = vr.volume_weights(sig_c, vr.to_world_depth(di, cfg.camera.depth_range), ray_norm)
                di_f = vr.sample_pdf(di, w_c, s)
            pts_f = rays.at(vr.to_world_depth(di_f, cfg.camera.depth_range))
            sig_f, out_f = self._query_fg(pts_f, ws, deform, "fine", (p, di_f.shape[-1]))
            di_all, sig_all, out_all = vr.merge_samples(di_f, sig_f, out_f, di, sig_c, out_c)
        else:
            di_all, sig_all, out_all = di, sig_c, out_c
        weights, bg_lambda = vr.volume_weights(sig_all, vr.to_world_depth(di_all, cfg.camera.depth_range), ray_norm)
        fg = vr.integrate(weights, out_all)  # [B, P, 3 + F]
        if bg_feat is None:
            bg_feat = self._render_bg(cam2world, rays, bg_latent, freeze_bg, rng)
        feat_map = fg + bg_lambda.unsqueeze(-1) * bg_feat
        rv = cfg.resolution_vol
        feat_map = feat_map.transpose(1, 2).reshape(b, -1, rv, rv)
        return NeRFOutput(feat=feat_map[:, 3:], img_nerf=feat_map[:, :3], depths=SampleDepths(di, di_f),
                          points_coarse=pts_c, points_fine=pts_f, bg_feat=bg_feat, bg_lambda=bg_lambda)

    def _rays(self, cam2world: torch.Tensor) -> Rays:
        c = self.cfg
        return generate_rays(cam2world, c.resolution_vol, c.img_resolution, c.camera.fov, c.camera.ray_align_corner)

    def _query_fg(self, pts: torch.Tensor, ws: torch.Tensor, deform: vr.Deform | None, stage: str,
                  ps: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Foreground MLP on (optionally deformed) points -> sigma [B, P, S], out [B, P, S, 3 + F]."""
        if deform is not None:
            moved = deform(pts, stage)
            if moved.shape != pts.shape:
                raise ValueError(f"deform returned {tuple(moved.shape)}, expected {tuple(pts.shape)}")
            pts = moved
        rv = self.cfg.resolution_vol
        sigma, out = self.fg_nerf(pts, ws, grid=(rv, rv, ps[1]))
        b = pts.shape[0]
        return sigma.reshape(b, ps[0], ps[1]), out.reshape(b, ps[0], ps[1], -1)

    def _render_bg(self, cam2world: torch.Tensor, rays: Rays, bg_latent: torch.Tensor | None, freeze_bg: bool,
                   rng: torch.Generator | None) -> torch.Tensor:
        b, c = cam2world.shape[0], self.cfg
        if bg_latent is None:
            bg_latent = torch.randn(b, c.nerf.z_dim_bg, generator=rng).to(cam2world.device)
        if bg_latent.shape != (b, c.nerf.z_dim_bg):
            raise ValueError(f"bg_latent must be [{b}, {c.nerf.z_dim_bg}], got {tuple(bg_latent.shape)}")
        if freeze_bg:
            rays = self._rays(freeze_bg_camera(c.camera, b, cam2world.device).to(cam2world.dtype))
        field = lambda p: self.bg_nerf(p, bg_latent)  # noqa: E731
        return vr.render_background(field, rays, c.renderer.n_bg_samples, c.camera.bg_start)

    def upsample_radius(self) -> int:
        """How far (in NeRF-grid cells, rounded up) a change of one feature cell can reach in the upsampled
        image, and how far an output pixel looks back: the upsampler run on a crop of the feature map equals
        the full run at every pixel at least this many cells inside the crop (unless the crop edge is the
        image edge, where both pad alike).

        Per block, in its input pixels: the conv0 kernel (k // 2), the x2 upsampling (nn_cat reads one
        neighbour), the [1, 3, 3, 1] blur (one input pixel), the conv1 kernel (k // 2 output pixels) and the RGB
        skip's x2 FIR upsampling (one input pixel); block b runs at 2^b times the NeRF grid.
        """
        u = self.cfg.upsampler
        half = u.kernel_size // 2
        per_block = max(1, half + (1 if u.mode == "nn_cat" else 0) + (1 if u.blur else 0) + -(-half // 2))
        return math.ceil(sum(per_block / 2 ** b for b in range(len(self.block_resolutions))))

    # ---- stage 2: upsampler ----------------------------------------------------------------------
    def upsample(self, feat: torch.Tensor, img_nerf: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
        """feat [B, F, Rv, Rv], img_nerf [B, 3, Rv, Rv], ws [B, num_ws, w_dim] -> img [B, 3, R, R]."""
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must have {self.num_ws} styles, got {ws.shape[1]}")
        u = ws[:, self.num_nerf_ws:]
        x, img = feat, (None if self.cfg.upsampler.no_residual_img else img_nerf.to(torch.float32))
        for i, res in enumerate(self.block_resolutions):
            x, img = getattr(self, f"b{res}")(x, img, u[:, 2 * i: 2 * i + 3])
        return img

    def forward(self, ws: torch.Tensor, cam2world: torch.Tensor, *, feature_hook: FeatureHook | None = None,
                **nerf_kwargs) -> SynthesisOutput:
        """Both stages: ``render_nerf(ws, cam2world, **nerf_kwargs)``, ``feature_hook``, ``upsample``."""
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.cfg.w_dim):
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.cfg.w_dim}], got {tuple(ws.shape)}")
        nerf = self.render_nerf(ws, cam2world, **nerf_kwargs)
        feat = nerf.feat if feature_hook is None else feature_hook(nerf.feat)
        return SynthesisOutput(img=self.upsample(feat, nerf.img_nerf, ws), nerf=nerf)


class Generator(nn.Module):
    """z [B, z_dim] -> ws -> image. State-dict names equal the official ``G_ema`` (spec 1.4)."""

    def __init__(self, cfg: GeneratorConfig, synthesis: NeRFSynthesisNetwork | None = None,
                 mapping: nn.Module | None = None) -> None:
        """``synthesis`` / ``mapping`` replace the official networks (another model source with the same
        interfaces, e.g. the offline portrait field); by default both are built from ``cfg``."""
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.img_resolution, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.img_resolution, cfg.num_ws
        # Construction order matches the official object graph: synthesis first, then mapping (spec 1.1).
        self.synthesis = NeRFSynthesisNetwork(cfg) if synthesis is None else synthesis
        self.mapping = MappingNetwork(cfg) if mapping is None else mapping

    def forward(self, z: torch.Tensor, cam2world: torch.Tensor | None = None, truncation_psi: float = 1.0,
                rng: torch.Generator | None = None, **synthesis_kwargs) -> SynthesisOutput:
        """Map z and render; a random training-distribution camera is drawn from ``rng`` when none is given."""
        ws = self.mapping(z, truncation_psi=truncation_psi)
        if cam2world is None:
            cam2world = sample_cameras(self.cfg.camera, z.shape[0], rng, z.device)
        return self.synthesis(ws, cam2world.to(z.dtype), rng=rng, **synthesis_kwargs)
