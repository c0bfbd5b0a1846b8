"""The method's cameras: Deep3D head pose -> StyleNeRF camera, orbits around it, and per-frame camera paths.

The backbone owns the ray camera (``stylenerf.camera``: ``look_at``, the frontal camera, rays); this module holds
what the method adds on top of it, in one place:

* Deep3D conversions (spec-stylenerf.md 3.5, NFS ``get_front_matrix``): a Deep3D rotation ``(Rz Ry Rx)^T``
  becomes the camera rotation ``O @ (Rz Ry Rx)^T`` with ``O = [[0, 0, 1], [1, 0, 0], [0, 1, 0]]`` (Deep3D axes
  x right, y up, z toward the viewer -> world +y, +z, +x) and the camera centre is its third column (unit
  distance, looking at the origin): :func:`front_matrix`. The same axis map turns head rotations into world
  rotations (:func:`world_rotation`) and head motion into cameras (:func:`pose_cameras`).
* Orbit angles of the camera centre ``c`` (spec 3.2 world frame: +z up, +x the frontal viewing axis, +y image
  right of the frontal view): ``yaw = atan2(c_y, c_x)`` is StyleNeRF's azimuth ``u`` (positive moves the camera
  toward world +y); ``pitch = atan2(c_z, hypot(c_x, c_y))`` is the elevation, ``pi/2 - v`` with StyleNeRF's
  polar angle ``v`` (positive moves the camera up). :func:`yaw_pitch_from_cam2world` reads them and
  :func:`orbit_offset` adds to them by rotating the whole camera frame about the origin, so the camera keeps
  looking at the head and keeps its roll. A Deep3D yaw ``beta`` gives camera yaw ``-beta`` and a Deep3D pitch
  ``alpha`` camera pitch ``+alpha`` (spec 3.5 examples); Deep3D roll spins the camera about its viewing axis.
  A camera at given orbit angles is ``stylenerf.camera.camera_from_angles(yaw, pi/2 - pitch)``.
* Camera paths (:func:`camera_path`) for a :class:`~nerffs.render.camera_spec.CameraSpec`: every path is built
  around a *base* camera, ``front_matrix`` of the input photo's Deep3D angles (NFS renders every audio-driven
  frame from it, spec-pipeline.md 3.6 item 1), as per-frame (yaw, pitch) offsets applied with
  :func:`orbit_offset`; ``orbit`` is an ellipse, ``keyframes`` a cubic Hermite spline whose inner tangents are
  centred differences (Catmull-Rom for unevenly spaced keys) and whose end tangents are zero (C1, easing in and
  out of the held end keys), and ``driving`` is ``front_matrix(angles[t])`` of the driving frames (the NFS
  pose-driven scripts, spec-stylenerf.md 7.6), optionally smoothed, the last pose held when the clip is shorter
  than the video (a loop would jump back to the first pose).
"""
from __future__ import annotations

import logging
import math

import torch

from nerffs.errors import InputError
from nerffs.face3d.bfm import compute_rotation
from nerffs.render.camera_spec import CameraSpec

log = logging.getLogger(__name__)

__all__ = ["CameraSpec", "camera_path", "driving_angles_at_frames", "front_matrix", "front_matrix_from_rotation",
           "interpolate_keyframes", "orbit_offset", "orbit_offsets", "pose_cameras", "smooth_angles",
           "world_rotation", "yaw_pitch_from_cam2world"]

# 3 standard deviations of StyleNeRF's FFHQ camera distribution (yaw ~ N(0, 0.3), polar ~ N(pi/2, 0.155),
# spec-stylenerf.md 3.2): beyond this the generator has seen almost no training views.
_TRAINING_RANGE = (0.9, 0.465)


# ---- Deep3D head pose <-> StyleNeRF camera ---------------------------------------------------------------------
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


def front_matrix(angles: torch.Tensor) -> torch.Tensor:
    """StyleNeRF camera for a Deep3D head pose (spec-stylenerf 3.5).

    Only the angles matter: the Deep3D translation coefficients are ignored, as in NFS. Zero angles give the
    frontal camera (``stylenerf.camera.frontal_camera``, up to its float rounding of ``cos(pi/2)``).

    Args:
        angles: [B, 3] Deep3D Euler angles (x pitch, y yaw, z roll; radians, coefficients 224:227).

    Returns:
        [B, 4, 4] camera-to-world, dtype and device of ``angles``.
    """
    return front_matrix_from_rotation(compute_rotation(angles))


def world_rotation(offsets: torch.Tensor) -> torch.Tensor:
    """[T, 3] Deep3D angle offsets -> [T, 3, 3] the same head rotation in world axes (column vectors)."""
    o = _frame_axes(offsets.dtype, offsets.device)
    return o @ compute_rotation(offsets).transpose(1, 2) @ o.T


def pose_cameras(cams: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Head motion rendered by the camera: rotate every camera about the origin by the inverse head rotation.

    A head turned by R seen from a fixed camera looks like the unturned head seen from a camera turned by
    R^-1; this is ``front_matrix(a) @ front_matrix(0)^-1`` applied to each camera.

    Args:
        cams: [T, 4, 4] camera-to-world.
        offsets: [T, 3] Deep3D angle offsets (pitch, yaw, roll; radians).

    Returns:
        [T, 4, 4] camera-to-world.
    """
    if cams.shape[0] != offsets.shape[0]:
        raise InputError(f"{offsets.shape[0]} head poses for {cams.shape[0]} cameras")
    o = _frame_axes(cams.dtype, cams.device)
    turn = o @ compute_rotation(offsets.to(cams)) @ o.T            # R(a)^T in world axes
    out = cams.clone()
    out[:, :3, :3] = turn @ cams[:, :3, :3]
    out[:, :3, 3] = (turn @ cams[:, :3, 3:]).squeeze(-1)
    return out


# ---- orbit angles of a camera ----------------------------------------------------------------------------------
def yaw_pitch_from_cam2world(cam2world: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orbit angles of the camera centre (for any radius; ``camera_from_angles(yaw, pi/2 - pitch)`` inverts it).

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


# ---- camera paths -----------------------------------------------------------------------------------------------
def orbit_offsets(spec: CameraSpec, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The orbit ellipse: yaw = A sin(2 pi t / P), pitch = B cos(2 pi t / P).

    Args:
        spec: its ``orbit_yaw`` (A), ``orbit_pitch`` (B) and ``orbit_period`` (P, seconds) are used.
        times: [N] seconds (float64 keeps long videos exactly periodic).

    Returns:
        yaw [N], pitch [N] offsets in radians.
    """
    phase = times * (2 * math.pi / spec.orbit_period)
    return spec.orbit_yaw * torch.sin(phase), spec.orbit_pitch * torch.cos(phase)


def interpolate_keyframes(keyframes: tuple[tuple[float, float, float], ...],
                          times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """C1 cubic Hermite through the keys, clamped to the end keys outside their time span.

    Inner tangents are centred differences ``(p[k+1] - p[k-1]) / (t[k+1] - t[k-1])`` (Catmull-Rom for uneven
    key spacing); end tangents are zero, so the path eases into and out of the held end keys.

    Args:
        keyframes: sorted ``(time_s, yaw, pitch)`` keys with distinct times (at least one).
        times: [N] seconds.

    Returns:
        yaw [N], pitch [N] in radians.
    """
    keys = torch.tensor(keyframes, dtype=torch.float64, device=times.device)  # [K, 3]
    t_key, values = keys[:, 0].contiguous(), keys[:, 1:]
    t = times.to(torch.float64).clamp(t_key[0], t_key[-1])
    if len(keyframes) == 1:
        out = values.expand(t.shape[0], 2)
        return out[:, 0], out[:, 1]
    slopes = torch.zeros_like(values)
    slopes[1:-1] = (values[2:] - values[:-2]) / (t_key[2:] - t_key[:-2])[:, None]
    seg = torch.searchsorted(t_key, t, right=True).sub(1).clamp(0, len(keyframes) - 2)
    h = t_key[seg + 1] - t_key[seg]
    s = ((t - t_key[seg]) / h)[:, None]
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    out = (h00 * values[seg] + h10 * h[:, None] * slopes[seg]
           + h01 * values[seg + 1] + h11 * h[:, None] * slopes[seg + 1])
    return out[:, 0], out[:, 1]


def smooth_angles(angles: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average over time with edge replication (window 1 returns the input).

    Args:
        angles: [T, C].
        window: frames averaged (even windows reach one frame further back than forward).

    Returns:
        [T, C].
    """
    if window <= 1 or angles.shape[0] < 2:
        return angles
    before, after = window // 2, (window - 1) // 2
    padded = torch.cat([angles[:1].expand(before, -1), angles, angles[-1:].expand(after, -1)])
    return padded.unfold(0, window, 1).mean(dim=-1)


def _driving_cameras(spec: CameraSpec, driving_angles: torch.Tensor | None, num_frames: int, fps: float,
                     driving_fps: float | None) -> torch.Tensor:
    """``front_matrix`` of the (smoothed, re-timed, last-held) driving angles. [num_frames, 4, 4]"""
    if driving_angles is None:
        raise InputError("camera mode 'driving' needs the driving head angles (estimate them with "
                         "nerffs.driving.estimate_driving)")
    if driving_angles.ndim != 2 or driving_angles.shape[1] != 3 or driving_angles.shape[0] < 1:
        raise InputError(f"driving angles must be [T, 3] with T >= 1, got {tuple(driving_angles.shape)}")
    if not bool(torch.isfinite(driving_angles).all()):
        raise InputError("driving angles contain NaN or infinite values")
    return front_matrix(driving_angles_at_frames(smooth_angles(driving_angles, spec.smooth), num_frames, fps,
                                                 driving_fps))


def driving_angles_at_frames(angles: torch.Tensor, num_frames: int, fps: float,
                             driving_fps: float | None) -> torch.Tensor:
    """The driving pose shown at each output frame: [T_drive, 3] -> [num_frames, 3] (re-timed when
    ``driving_fps`` is given, else frame t = driving frame t; the last pose is held)."""
    frame = torch.arange(num_frames, dtype=torch.float64)
    if driving_fps is not None:  # frame t shows the driving frame on screen at time t / fps
        frame = torch.floor(frame * (driving_fps / fps) + 1e-9)
    index = frame.long().clamp(max=angles.shape[0] - 1).to(angles.device)  # hold the last pose
    if int(frame[-1]) >= angles.shape[0]:
        log.info("driving clip has %d poses for %d frames; holding its last pose", angles.shape[0], num_frames)
    return angles[index]


def _check_path_args(base_cam2world: torch.Tensor, num_frames: int, fps: float,
                     driving_fps: float | None) -> None:
    if base_cam2world.ndim != 3 or tuple(base_cam2world.shape) != (1, 4, 4):
        raise InputError(f"base_cam2world must be [1, 4, 4], got {tuple(base_cam2world.shape)}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"num_frames must be a whole number >= 1, got {num_frames!r}")
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if driving_fps is not None and (not math.isfinite(driving_fps) or driving_fps <= 0):
        raise InputError(f"driving_fps must be > 0, got {driving_fps}")


def camera_path(spec: CameraSpec, base_cam2world: torch.Tensor, num_frames: int, fps: float = 25.0,
                driving_angles: torch.Tensor | None = None, driving_fps: float | None = None) -> torch.Tensor:
    """Per-frame cameras for a video (frame t is at time t / fps seconds).

    Args:
        spec: the camera mode and its parameters.
        base_cam2world: [1, 4, 4] camera of the input photo (``front_matrix(input angles)``); unused by
            ``"driving"`` apart from its dtype and device.
        num_frames: frames in the video (N).
        fps: video frame rate.
        driving_angles: [T, 3] Deep3D Euler angles of the driving frames (``DrivingSequence.angles``), needed
            by ``"driving"``. With fewer poses than frames the last pose is held; extra poses are unused.
        driving_fps: frame rate of the driving clip; None pairs output frame t with driving frame t (as NFS
            does), a rate re-times the clip so it plays at its own speed.

    Returns:
        [N, 4, 4] camera-to-world, dtype and device of ``base_cam2world``.
    """
    _check_path_args(base_cam2world, num_frames, fps, driving_fps)
    times = torch.arange(num_frames, dtype=torch.float64) / fps
    if spec.mode == "driving":
        angles = None if driving_angles is None else driving_angles.to(base_cam2world)
        cams = _driving_cameras(spec, angles, num_frames, fps, driving_fps)
        yaw, pitch = torch.zeros(num_frames, dtype=torch.float64), torch.zeros(num_frames, dtype=torch.float64)
    else:
        cams = base_cam2world.expand(num_frames, 4, 4)
        yaw, pitch = _mode_offsets(spec, times)
    yaw, pitch = yaw + spec.yaw, pitch + spec.pitch
    if bool((yaw != 0).any() or (pitch != 0).any()):
        cams = orbit_offset(cams, yaw.to(cams), pitch.to(cams))
    else:
        cams = cams.clone()
    _warn_outside_training(cams)
    return cams


def _mode_offsets(spec: CameraSpec, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (yaw, pitch) offsets [N] of the modes that move around the base camera."""
    if spec.mode == "orbit":
        return orbit_offsets(spec, times)
    if spec.mode == "keyframes":
        return interpolate_keyframes(spec.keyframes, times)
    return torch.zeros_like(times), torch.zeros_like(times)  # input, fixed: only the view offset


def _warn_outside_training(cams: torch.Tensor) -> None:
    """Log once when a camera leaves the range StyleNeRF was trained on (results degrade there)."""
    yaw, pitch = yaw_pitch_from_cam2world(cams)
    worst_yaw, worst_pitch = float(yaw.abs().max()), float(pitch.abs().max())
    if worst_yaw > _TRAINING_RANGE[0] or worst_pitch > _TRAINING_RANGE[1]:
        log.warning("camera path reaches yaw %.2f / pitch %.2f rad, outside StyleNeRF's training views "
                       "(about +-%.2f / +-%.2f); expect artefacts", worst_yaw, worst_pitch, *_TRAINING_RANGE)
