"""Volume rendering of the StyleNeRF foreground and NeRF++ background (spec-stylenerf.md section 4).

Pure functions over tensors; the NeRF MLPs are passed in as callables. Shapes: P = Rv * Rv rays per camera,
S coarse samples per ray; point lists are pixel-major, step-minor: index = (row * Rv + col) * S + step.

Inference is deterministic (no stratified jitter, no sigma noise); training randomness, when wanted, is
passed in through a ``torch.Generator``.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from stylenerf.camera import Rays

# A field: points [B, N, D] -> (sigma_raw [B, N, 1], out [B, N, C]).
Field = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# A deformation: (points [B, N, 3], stage 'coarse' | 'fine') -> displaced points [B, N, 3].
Deform = Callable[[torch.Tensor, str], torch.Tensor]


def coarse_depths(batch: int, num_rays: int, n_samples: int, device: torch.device | str = "cpu",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Normalised coarse depths di in [0, 1]: linspace(0, 1, S), optionally stratified. [B, P, S]"""
    di = torch.linspace(0.0, 1.0, n_samples, device=device).expand(batch, num_rays, n_samples).contiguous()
    if generator is not None:  # stratified jitter within each interval (training only)
        mids = 0.5 * (di[..., 1:] + di[..., :-1])
        upper = torch.cat([mids, di[..., -1:]], -1)
        lower = torch.cat([di[..., :1], mids], -1)
        u = torch.rand(di.shape, generator=generator).to(device)
        di = lower + (upper - lower) * u
    return di


def to_world_depth(di: torch.Tensor, depth_range: tuple[float, float]) -> torch.Tensor:
    """Normalised depth -> camera-space depth t = near + (far - near) di (depth_transform None)."""
    near, far = depth_range
    return near + (far - near) * di


def volume_weights(sigma_raw: torch.Tensor, t: torch.Tensor, ray_norm: torch.Tensor,
                   last_dist: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Compositing weights of one ray batch (spec 4.1).

    delta_k = (t_{k+1} - t_k) * |r|, delta_last = ``last_dist``; alpha_k = 1 - exp(-relu(sigma_k) delta_k);
    T_k = prod_{j<k} (1 - alpha_j + 1e-10); w_k = alpha_k T_k.

    Args:
        sigma_raw: [B, P, S] raw densities.
        t: [B, P, S] ascending camera-space depths.
        ray_norm: [B, P] length of the (un-normalised) ray direction.
        last_dist: distance assigned to the last interval (0 when a background follows).

    Returns:
        weights [B, P, S], and the transmittance left after the ray, bg_lambda [B, P] (= T_{S-1}).
    """
    dists = t[..., 1:] - t[..., :-1]
    dists = torch.cat([dists, torch.full_like(dists[..., :1], last_dist)], dim=-1) * ray_norm.unsqueeze(-1)
    alpha = 1.0 - torch.exp(-torch.relu(sigma_raw) * dists)
    trans = torch.cumprod(1.0 - alpha + 1e-10, dim=-1)
    trans = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    return alpha * trans, trans[..., -1]


@torch.no_grad()
def sample_pdf(di: torch.Tensor, weights: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Deterministic hierarchical sampling (spec 4.1): inverse-CDF of the interior coarse weights.

    Args:
        di: [B, P, S] normalised coarse depths.
        weights: [B, P, S] coarse weights.
        n_samples: number of fine samples.

    Returns:
        [B, P, n_samples] normalised fine depths, ascending.
    """
    bins = 0.5 * (di[..., 1:] + di[..., :-1])  # [B, P, S-1]
    w = weights[..., 1:-1] + 1e-5  # [B, P, S-2]
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, dim=-1)], dim=-1)  # [B, P, S-1]
    u = torch.linspace(0.0, 1.0, n_samples, device=di.device, dtype=di.dtype).expand(*cdf.shape[:-1], n_samples)
    idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=False)
    below = (idx - 1).clamp(min=0)
    above = idx.clamp(max=cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    bin_lo, bin_hi = bins.gather(-1, below), bins.gather(-1, above)
    denom = cdf_hi - cdf_lo
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return bin_lo + (u - cdf_lo) / denom * (bin_hi - bin_lo)


def depth2pts_outside(origins: torch.Tensor, dirs: torch.Tensor, inv_depth: torch.Tensor) -> torch.Tensor:
    """NeRF++ inverse-sphere parametrisation of background points (spec 4.2).

    Args:
        origins: [B, P, 3] ray origins (inside or on the unit sphere).
        dirs: [B, P, 3] unit ray directions.
        inv_depth: [S] inverse radii in [0, 1].

    Returns:
        [B, P, S, 4] points (unit vector on the sphere, inverse radius).
    """
    o, d = origins.unsqueeze(2), dirs.unsqueeze(2)  # [B, P, 1, 3]
    d1 = -(d * o).sum(-1, keepdim=True)
    p_mid = o + d1 * d
    p_mid_norm = p_mid.norm(dim=-1, keepdim=True).clamp(max=1.0)
    d2 = torch.sqrt((1.0 - p_mid_norm.square()).clamp(min=0.0))
    p_sphere = o + (d1 + d2) * d
    axis = torch.nn.functional.normalize(torch.cross(o, p_sphere, dim=-1), dim=-1)
    inv = inv_depth.to(o.dtype).reshape(1, 1, -1, 1)
    phi = torch.asin(p_mid_norm)
    theta = torch.asin((p_mid_norm * inv).clamp(-1.0, 1.0))
    angle = phi - theta  # [B, P, S, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    # Rodrigues rotation of the exit point about ``axis`` by ``angle`` (broadcast over the S samples).
    rotated = (p_sphere * cos + torch.cross(axis, p_sphere, dim=-1) * sin
               + axis * (axis * p_sphere).sum(-1, keepdim=True) * (1.0 - cos))
    rotated = torch.nn.functional.normalize(rotated, dim=-1)
    return torch.cat([rotated, inv.expand(*rotated.shape[:-1], 1)], dim=-1)


def render_background(field: Field, rays: Rays, n_samples: int, bg_start: float) -> torch.Tensor:
    """Integrated background features (spec 4.2). Returns [B, P, C] (weights sum to one per ray)."""
    b, p, _ = rays.directions.shape
    inv_depth = -torch.linspace(-1.0, 0.0, n_samples, device=rays.directions.device) * bg_start
    dirs = torch.nn.functional.normalize(rays.directions, dim=-1)
    origins = rays.origins.unsqueeze(1).expand(b, p, 3)
    pts = depth2pts_outside(origins, dirs, inv_depth)  # [B, P, S, 4]
    sigma_raw, out = field(pts.reshape(b, p * n_samples, 4))
    sigma = torch.relu(sigma_raw.reshape(b, p, n_samples))
    z = -inv_depth
    dists = torch.cat([z[1:] - z[:-1], z.new_tensor([1e10])]).expand(b, p, n_samples)
    alpha = 1.0 - torch.exp(-sigma * dists)
    alpha = torch.cat([alpha[..., :-1], torch.ones_like(alpha[..., -1:])], dim=-1)
    trans = torch.cumprod(1.0 - alpha + 1e-10, dim=-1)
    trans = torch.cat([torch.ones_like(trans[..., :1]), trans[..., :-1]], dim=-1)
    weights = alpha * trans
    return (weights.unsqueeze(-1) * out.reshape(b, p, n_samples, -1)).sum(dim=2)


def merge_samples(di_a: torch.Tensor, sig_a: torch.Tensor, out_a: torch.Tensor, di_b: torch.Tensor,
                  sig_b: torch.Tensor, out_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Concatenate two sample sets along the ray ([a, b] order) and sort by depth (stable).

    di_* [B, P, S*], sig_* [B, P, S*], out_* [B, P, S*, C] -> merged, sorted (di, sigma, out).
    """
    di = torch.cat([di_a, di_b], dim=-1)
    order = torch.sort(di, dim=-1, stable=True).indices
    sig = torch.cat([sig_a, sig_b], dim=-1).gather(-1, order)
    out = torch.cat([out_a, out_b], dim=2)
    out = out.gather(2, order.unsqueeze(-1).expand(-1, -1, -1, out.shape[-1]))
    return di.gather(-1, order), sig, out


def integrate(weights: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """sum_k w_k out_k: weights [B, P, S], out [B, P, S, C] -> [B, P, C]."""
    return torch.einsum("bps,bpsc->bpc", weights, out)

