"""Camera model of StyleNeRF (spec-stylenerf.md section 3).

Conventions: a camera is a camera-to-world matrix ``cam2world`` [B, 4, 4] whose rotation columns are the
camera x, y, z axes in world coordinates and whose translation is the camera centre. The camera looks along
its -z axis (OpenGL). World frame: +z up, +x the frontal viewing axis (the frontal camera sits at (1, 0, 0)
looking at the origin), +y image-right for the frontal view. Intrinsics: a square NDC sensor [-1, 1]^2 with
field of view ``fov`` (12 degrees for FFHQ): ``K^-1 = diag(tan(fov/2), tan(fov/2), 1, 1)``.

Angles: ``yaw`` (u) is the azimuth around +z, ``pitch`` here is the polar angle ``v`` measured from +z
(v = pi/2 is the equator, the frontal camera). Helper ``camera_from_angles`` builds ``look_at`` poses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from stylenerf.config import CameraConfig


def look_at(eye: torch.Tensor, at: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world matrices looking from ``eye`` [B, 3] at ``at`` (default origin) with world ``up`` (+z).

    z_axis = normalize(eye - at), x_axis = normalize(up x z_axis), y_axis = z_axis x x_axis (spec 3.2).

    Args:
        eye: [B, 3] camera centres.
        at: [B, 3] or [3] target, default the origin.
        up: [B, 3] or [3] up vector, default world +z; must not be parallel to the viewing direction.

    Returns:
        [B, 4, 4] camera-to-world.
    """
    if eye.ndim != 2 or eye.shape[1] != 3:
        raise ValueError(f"eye must be [B, 3], got {tuple(eye.shape)}")
    at = torch.zeros_like(eye) if at is None else at.expand_as(eye)
    up = eye.new_tensor([0.0, 0.0, 1.0]).expand_as(eye) if up is None else up.expand_as(eye)
    z = torch.nn.functional.normalize(eye - at, dim=-1)
    x_raw = torch.cross(up, z, dim=-1)
    if bool((x_raw.norm(dim=-1) < 1e-8).any()):
        raise ValueError("look_at: the viewing direction is parallel to 'up'; pass another up vector")
    x = torch.nn.functional.normalize(x_raw, dim=-1)
    y = torch.nn.functional.normalize(torch.cross(z, x, dim=-1), dim=-1)
    m = torch.eye(4, dtype=eye.dtype, device=eye.device).repeat(eye.shape[0], 1, 1)
    m[:, :3, 0], m[:, :3, 1], m[:, :3, 2], m[:, :3, 3] = x, y, z, eye
    return m


def camera_from_angles(yaw: torch.Tensor | float, polar: torch.Tensor | float = math.pi / 2,
                       radius: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """Pose on a sphere: eye = r (sin v cos u, sin v sin u, cos v), looking at the origin (spec 3.2).

    Args:
        yaw: u in radians ([B] tensor or float). Positive yaw moves the camera towards +y.
        polar: v in radians from +z (pi/2 = frontal height). Larger v moves the camera down.
        radius: distance to the origin.

    Returns:
        [B, 4, 4] camera-to-world.
    """
    u = torch.as_tensor(yaw, dtype=torch.float32, device=device).reshape(-1)
    v = torch.as_tensor(polar, dtype=torch.float32, device=device).reshape(-1)
    u, v = torch.broadcast_tensors(u, v)
    eye = radius * torch.stack([torch.sin(v) * torch.cos(u), torch.sin(v) * torch.sin(u), torch.cos(v)], dim=-1)
    return look_at(eye)


def frontal_camera(batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """The frontal camera (yaw 0, polar pi/2, radius 1): eye (1, 0, 0), looking along -x with +z up. [B, 4, 4]

    The one frontal camera of the project (float32; ``cos(pi/2)`` rounds to -4.4e-8 in the eye's z).
    """
    return camera_from_angles(torch.zeros(batch), math.pi / 2, device=device)


def freeze_bg_camera(cfg: CameraConfig, batch: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    """Fixed background camera of ``render_option='freeze_bg'``: yaw 0, v = pi/2 + 0.2 (spec 4.2). [B, 4, 4]"""
    return camera_from_angles(torch.zeros(batch), math.pi / 2 + cfg.freeze_bg_pitch, cfg.radius, device=device)


def sample_cameras(cfg: CameraConfig, batch: int, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Random training-distribution poses: Gaussian (u ~ N(mean, half-range), v likewise) or uniform in range.

    Randomness comes only from ``generator``. Returns [B, 4, 4].
    """
    r = torch.randn(2, batch, generator=generator) if cfg.gaussian_camera else torch.rand(2, batch, generator=generator)
    (u0, u1), (v0, v1) = cfg.range_u, cfg.range_v
    if cfg.gaussian_camera:
        u = (u0 + u1) / 2 + r[0] * (u1 - u0) / 2
        v = (v0 + v1) / 2 + r[1] * (v1 - v0) / 2
    else:
        u, v = u0 + r[0] * (u1 - u0), v0 + r[1] * (v1 - v0)
    return camera_from_angles(u, v, cfg.radius, device=device)


def ndc_grid(resolution_vol: int, img_resolution: int, align_corner: bool,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """NDC coordinates of the NeRF pixel grid (spec 3.3). Row 0 is the top (+y).

    Returns:
        x [Rv] (column coordinates), y [Rv] (row coordinates).
    """
    idx = torch.arange(resolution_vol, dtype=torch.float64)
    if align_corner:
        # A corner-aligned full-resolution grid, nearest-subsampled to Rv (source index j * R / Rv).
        src = idx * (img_resolution // resolution_vol)
        coord = -1.0 + 2.0 * src / (img_resolution - 1)
    else:
        coord = (2.0 * idx + 1.0) / resolution_vol - 1.0
    return coord.float().to(device), (-coord).float().to(device)


@dataclass
class Rays:
    """Rays of one camera batch, pixel-major (index = row * Rv + col).

    origins [B, 3]; directions [B, Rv*Rv, 3] un-normalised, with unit camera-z component, so a sample at
    parameter t is at camera-space depth t: p = origin + t * direction.
    """

    origins: torch.Tensor
    directions: torch.Tensor

    def at(self, t: torch.Tensor) -> torch.Tensor:
        """Points at parameters t [B, P, S] -> [B, P*S, 3] (pixel-major, step-minor)."""
        p = self.origins[:, None, None, :] + t.unsqueeze(-1) * self.directions.unsqueeze(2)
        return p.reshape(p.shape[0], -1, 3)


def generate_rays(cam2world: torch.Tensor, resolution_vol: int, img_resolution: int, fov: float,
                  align_corner: bool) -> Rays:
    """Rays through the NeRF pixel grid of each camera (spec 3.3).

    Args:
        cam2world: [B, 4, 4].
        resolution_vol: Rv.
        img_resolution: R (only used by the corner-aligned grid).
        fov: degrees.
        align_corner: ``ray_align_corner``.
    """
    if cam2world.ndim != 3 or cam2world.shape[1:] != (4, 4):
        raise ValueError(f"cam2world must be [B, 4, 4], got {tuple(cam2world.shape)}")
    tan = math.tan(math.radians(fov) / 2)
    xs, ys = ndc_grid(resolution_vol, img_resolution, align_corner, cam2world.device)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    pc = torch.stack([xx * tan, yy * tan, -torch.ones_like(xx)], dim=-1).reshape(-1, 3).to(cam2world.dtype)
    rot = cam2world[:, :3, :3]
    directions = torch.einsum("bij,pj->bpi", rot, pc)
    return Rays(origins=cam2world[:, :3, 3], directions=directions)
