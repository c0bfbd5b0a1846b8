"""3DMM head pose -> StyleNeRF camera-to-world matrices, and yaw/pitch orbits around it.

Implements spec-stylenerf.md 3.2 (world frame: +z up, +x the frontal viewing axis, +y image right of the frontal
view; a camera looks along its own -z; camera-to-world columns are the camera x, y, z axes, last column the camera
centre) and 3.5 (NeRFFaceSpeech ``get_front_matrix``: ``R = O @ (Rz Ry Rx)^T`` with
``O = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]``, translation = third column of ``R``; the camera sits on the unit sphere and
looks at the origin).

Yaw / pitch convention used here (orbit angles of the camera centre ``c`` around the origin):

* ``yaw = atan2(c_y, c_x)`` -- StyleNeRF's azimuth ``u``; positive yaw moves the camera toward world +y.
* ``pitch = atan2(c_z, hypot(c_x, c_y))`` -- elevation, i.e. ``pi/2 - v`` with StyleNeRF's polar angle ``v``;
  positive pitch moves the camera up (looking down on the face).

A Deep3D yaw ``beta`` gives camera yaw ``-beta`` and a Deep3D pitch ``alpha`` gives camera pitch ``+alpha`` (see the
spec 3.5 examples); Deep3D roll only spins the camera around its viewing axis.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nerffs.face3d.bfm import compute_rotation


def _frame_axes(dtype: torch.dtype, device: torch.device | str | None) -> torch.Tensor:
    """The fixed Deep3D -> StyleNeRF axis map ``O`` (spec-stylenerf 3.5): Deep3D x, y, z -> world +y, +z, +x."""
    return torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=dtype, device=device)


def _homogeneous(rot: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """[B, 3, 3] rotation + [B, 3] centre -> [B, 4, 4] camera-to-world."""
    out = torch.zeros(rot.shape[0], 4, 4, dtype=rot.dtype, device=rot.device)
    out[:, :3, :3] = rot
    out[:, :3, 3] = centre
    out[:, 3, 3] = 1.0
    return out


def _check_cam2world(cam2world: torch.Tensor) -> None:
    if cam2world.ndim != 3 or cam2world.shape[1:] != (4, 4):
        raise ValueError(f"cam2world must have shape [B, 4, 4], got {tuple(cam2world.shape)}")


def front_matrix_from_rotation(rot: torch.Tensor) -> torch.Tensor:
    """NFS ``get_front_matrix`` for a Deep3D rotation matrix (the transposed ``R^T`` of ``compute_rotation``).

    Args:
        rot: [B, 3, 3] ``(Rz Ry Rx)^T`` as returned by :func:`nerffs.face3d.bfm.compute_rotation`.

    Returns:
        [B, 4, 4] camera-to-world with rotation ``O @ rot`` and centre = its third column (unit distance).
    """
    if rot.ndim != 3 or rot.shape[1:] != (3, 3):
        raise ValueError(f"rot must have shape [B, 3, 3], got {tuple(rot.shape)}")
    r = _frame_axes(rot.dtype, rot.device) @ rot
    return _homogeneous(r, r[:, :, 2])


def front_matrix(angles: torch.Tensor | None = None, *, batch: int = 1, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """StyleNeRF camera for a Deep3D head pose (spec-stylenerf 3.5); ``None`` gives the frontal camera.

    Only the angles matter: the Deep3D translation coefficients are ignored, as in NFS.

    Args:
        angles: [B, 3] Deep3D Euler angles (x pitch, y yaw, z roll; radians, coefficients 224:227) or None.
        batch, device, dtype: used only when ``angles`` is None.

    Returns:
        [B, 4, 4] camera-to-world; for None, ``O`` itself = look_at from eye (1, 0, 0) with up +z.
    """
    if angles is None:
        rot = torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3)
        return front_matrix_from_rotation(rot)
    return front_matrix_from_rotation(compute_rotation(angles))


def look_at(eye: torch.Tensor, at: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """Camera-to-world for a camera at ``eye`` looking at ``at`` (spec-stylenerf 3.2 pose generator).

    ``z = normalize(eye - at)``, ``x = normalize(up x z)``, ``y = z x x``; the camera looks along its -z.

    Args:
        eye: [B, 3] camera centres.
        at: [B, 3] or [3] target, default the origin.
        up: [B, 3] or [3] up vector, default world +z.

    Returns:
        [B, 4, 4] camera-to-world.
    """
    if eye.ndim != 2 or eye.shape[1] != 3:
        raise ValueError(f"eye must have shape [B, 3], got {tuple(eye.shape)}")
    at = eye.new_zeros(3) if at is None else at
    up = eye.new_tensor([0.0, 0.0, 1.0]) if up is None else up
    z = F.normalize(eye - at, dim=-1)
    x_raw = torch.cross(up.expand_as(z), z, dim=-1)
    if bool((x_raw.norm(dim=-1) < 1e-8).any()):
        raise ValueError("look_at: the viewing direction is parallel to 'up'; pass another up vector")
    x = F.normalize(x_raw, dim=-1)
    y = torch.cross(z, x, dim=-1)
    return _homogeneous(torch.stack([x, y, z], dim=-1), eye)


def orbit_camera(yaw: torch.Tensor | float, pitch: torch.Tensor | float, radius: float = 1.0) -> torch.Tensor:
    """A camera on a sphere looking at the origin, up +z; ``orbit_camera(0, 0)`` is the frontal camera.

    Args:
        yaw: [B] (or scalar) azimuth in radians (StyleNeRF ``u``).
        pitch: [B] (or scalar) elevation in radians (``pi/2 - v``), must stay inside (-pi/2, pi/2).
        radius: camera distance (StyleNeRF FFHQ uses 1).

    Returns:
        [B, 4, 4] camera-to-world.
    """
    yaw_t = torch.as_tensor(yaw).reshape(-1)
    if not yaw_t.is_floating_point():
        yaw_t = yaw_t.to(torch.get_default_dtype())
    pitch_t = torch.as_tensor(pitch, dtype=yaw_t.dtype, device=yaw_t.device).reshape(-1)
    yaw_t, pitch_t = torch.broadcast_tensors(yaw_t, pitch_t)
    eye = radius * torch.stack([torch.cos(pitch_t) * torch.cos(yaw_t), torch.cos(pitch_t) * torch.sin(yaw_t),
                                torch.sin(pitch_t)], dim=-1)
    return look_at(eye)


def _axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: [B, 3] unit axes, [B] angles -> [B, 3, 3] rotation matrices (column-vector convention)."""
    kx, ky, kz = axis.unbind(-1)
    zero = torch.zeros_like(kx)
    k = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(k)
    s, c = torch.sin(angle)[:, None, None], torch.cos(angle)[:, None, None]
    return eye + s * k + (1 - c) * (k @ k)


def orbit_offset(cam2world: torch.Tensor, yaw: torch.Tensor | float, pitch: torch.Tensor | float) -> torch.Tensor:
    """Orbit an estimated camera by extra yaw / pitch around the origin (novel views of the input pose).

    First a pitch about the horizontal axis perpendicular to the camera's azimuth (raising or lowering the camera
    toward world +z), then a yaw about world +z. The whole frame is rotated, so the camera keeps looking at the
    origin and keeps its roll; yaw and pitch of the centre simply add (while the pitch stays inside +-pi/2):
    ``yaw_pitch_from_cam2world(orbit_offset(c, dy, dp)) == yaw_pitch_from_cam2world(c) + (dy, dp)``.

    Args:
        cam2world: [B, 4, 4] camera-to-world (e.g. :func:`front_matrix` of the Deep3D angles).
        yaw: [B] (or scalar) extra azimuth in radians.
        pitch: [B] (or scalar) extra elevation in radians.

    Returns:
        [B, 4, 4] camera-to-world.
    """
    _check_cam2world(cam2world)
    b, dtype, device = cam2world.shape[0], cam2world.dtype, cam2world.device
    yaw_t = torch.as_tensor(yaw, dtype=dtype, device=device).reshape(-1).expand(b)
    pitch_t = torch.as_tensor(pitch, dtype=dtype, device=device).reshape(-1).expand(b)
    azimuth, _ = yaw_pitch_from_cam2world(cam2world)
    # Right-hand rotation about (sin u, -cos u, 0) by +pitch moves the centre toward +z.
    pitch_axis = torch.stack([torch.sin(azimuth), -torch.cos(azimuth), torch.zeros_like(azimuth)], dim=-1)
    z_axis = cam2world.new_tensor([0.0, 0.0, 1.0]).expand(b, 3)
    turn = _axis_angle(z_axis, yaw_t) @ _axis_angle(pitch_axis, pitch_t)       # [B, 3, 3]
    return _homogeneous(turn @ cam2world[:, :3, :3], (turn @ cam2world[:, :3, 3:]).squeeze(-1))


def yaw_pitch_from_cam2world(cam2world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orbit angles of the camera centre (inverse of :func:`orbit_camera` for any radius).

    Args:
        cam2world: [B, 4, 4] camera-to-world.

    Returns:
        yaw [B] = ``atan2(c_y, c_x)`` and pitch [B] = ``atan2(c_z, hypot(c_x, c_y))``, radians.
    """
    _check_cam2world(cam2world)
    c = cam2world[:, :3, 3]
    yaw = torch.atan2(c[:, 1], c[:, 0])
    pitch = torch.atan2(c[:, 2], torch.hypot(c[:, 0], c[:, 1]))
    return yaw, pitch
