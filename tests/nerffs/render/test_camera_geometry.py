"""The method's camera geometry: Deep3D head pose -> StyleNeRF camera, orbit angles (spec-stylenerf.md 3.2, 3.5)."""
from __future__ import annotations

import math

import pytest
import torch

from nerffs.face3d.bfm import compute_rotation
from nerffs.render.cameras import (front_matrix, front_matrix_from_rotation, orbit_offset, pose_cameras,
                                   world_rotation, yaw_pitch_from_cam2world)
from stylenerf.camera import camera_from_angles, frontal_camera, look_at

F64 = torch.float64


def _assert_proper_rigid(cam2world: torch.Tensor) -> None:
    rot = cam2world[:, :3, :3]
    eye = torch.eye(3, dtype=cam2world.dtype).expand_as(rot)
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rot), torch.ones(rot.shape[0], dtype=cam2world.dtype))
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=cam2world.dtype).expand(rot.shape[0], 4)
    torch.testing.assert_close(cam2world[:, 3], bottom)


def _at_orbit_angles(yaw: torch.Tensor, pitch: torch.Tensor | float) -> torch.Tensor:
    """The backbone's camera at orbit angles (elevation pitch = pi/2 - polar), float32."""
    return camera_from_angles(yaw, math.pi / 2 - torch.as_tensor(pitch, dtype=torch.float32))


def _roll(cam2world: torch.Tensor) -> torch.Tensor:
    """[B] angle of the camera x axis in the sphere's tangent frame (e_yaw, e_pitch) at the camera centre."""
    yaw, pitch = yaw_pitch_from_cam2world(cam2world)
    e_yaw = torch.stack([-torch.sin(yaw), torch.cos(yaw), torch.zeros_like(yaw)], -1)
    e_pitch = torch.stack([-torch.sin(pitch) * torch.cos(yaw), -torch.sin(pitch) * torch.sin(yaw),
                           torch.cos(pitch)], -1)
    x_axis = cam2world[:, :3, 0]
    return torch.atan2((x_axis * e_pitch).sum(-1), (x_axis * e_yaw).sum(-1))


def test_zero_pose_is_axis_map_and_the_frontal_camera():
    front = front_matrix(torch.zeros(2, 3, dtype=F64))
    expected_rot = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    assert torch.equal(front[:, :3, :3], expected_rot.expand(2, 3, 3))
    assert torch.equal(front[:, :3, 3], torch.tensor([[1.0, 0.0, 0.0]] * 2, dtype=F64))
    torch.testing.assert_close(front, look_at(torch.tensor([[1.0, 0.0, 0.0]] * 2, dtype=F64)))
    torch.testing.assert_close(front.float(), frontal_camera(2), atol=1e-7, rtol=0)


def test_spec_examples_yaw_and_pitch():
    yaw = front_matrix(torch.tensor([[0.0, 0.3, 0.0]], dtype=F64))
    torch.testing.assert_close(yaw[0, :3, 3], torch.tensor([0.955, -0.296, 0.0], dtype=F64), atol=1e-3, rtol=0)
    pitch = front_matrix(torch.tensor([[0.2, 0.0, 0.0]], dtype=F64))
    torch.testing.assert_close(pitch[0, :3, 3], torch.tensor([0.980, 0.0, 0.199], dtype=F64), atol=1e-3, rtol=0)


def test_rotation_block_is_axis_map_times_deep3d_rotation():
    angles = torch.tensor([[0.1, -0.4, 0.25], [-0.3, 0.2, 0.0]], dtype=F64)
    cam = front_matrix(angles)
    axis_map = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(cam[:, :3, :3], axis_map @ compute_rotation(angles))
    torch.testing.assert_close(cam[:, :3, 3], cam[:, :3, 2])
    torch.testing.assert_close(front_matrix_from_rotation(compute_rotation(angles)), cam)


def test_matrices_are_orthonormal_and_look_at_origin():
    angles = 0.6 * (torch.rand(16, 3, dtype=F64) - 0.5)
    for cam in (front_matrix(angles), orbit_offset(front_matrix(angles), 0.4, -0.2),
                pose_cameras(front_matrix(angles), angles.flip(0))):
        _assert_proper_rigid(cam)
        centre = cam[:, :3, 3]
        view_dir = -cam[:, :3, 2]                                      # the camera looks along its -z
        torch.testing.assert_close(view_dir, -centre / centre.norm(dim=-1, keepdim=True))


def test_deep3d_yaw_and_pitch_map_to_camera_orbit_angles():
    beta, alpha = 0.35, -0.15
    yaw, pitch = yaw_pitch_from_cam2world(front_matrix(torch.tensor([[0.0, beta, 0.0]], dtype=F64)))
    torch.testing.assert_close((yaw.item(), pitch.item()), (-beta, 0.0))
    yaw, pitch = yaw_pitch_from_cam2world(front_matrix(torch.tensor([[alpha, 0.0, 0.0]], dtype=F64)))
    torch.testing.assert_close((yaw.item(), pitch.item()), (0.0, alpha))


def test_yaw_pitch_round_trip():
    yaw = torch.tensor([-1.2, -0.3, 0.0, 0.5, 2.0])
    pitch = torch.tensor([0.4, -0.7, 0.0, 1.2, -0.1])
    got_yaw, got_pitch = yaw_pitch_from_cam2world(_at_orbit_angles(yaw, pitch))
    torch.testing.assert_close(got_yaw, yaw, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_pitch, pitch, atol=1e-6, rtol=0)
    got_yaw, got_pitch = yaw_pitch_from_cam2world(camera_from_angles(yaw, math.pi / 2 - pitch, radius=2.7))
    torch.testing.assert_close(got_pitch, pitch, atol=1e-6, rtol=0)


def test_orbit_offset_composes_on_estimated_pose():
    angles = torch.tensor([[0.1, 0.3, 0.2], [-0.2, -0.1, -0.05]], dtype=F64)
    base = front_matrix(angles)
    base_yaw, base_pitch = yaw_pitch_from_cam2world(base)
    d_yaw, d_pitch = torch.tensor([0.4, -0.25], dtype=F64), torch.tensor([-0.2, 0.3], dtype=F64)
    moved = orbit_offset(base, d_yaw, d_pitch)
    yaw, pitch = yaw_pitch_from_cam2world(moved)
    torch.testing.assert_close(yaw, base_yaw + d_yaw)
    torch.testing.assert_close(pitch, base_pitch + d_pitch)
    torch.testing.assert_close(_roll(moved), _roll(base))                # the Deep3D roll is kept
    assert _roll(base).abs().min() > 0.01
    torch.testing.assert_close(orbit_offset(base, 0.0, 0.0), base)


def test_orbit_offset_of_frontal_equals_the_backbone_camera_at_those_angles():
    yaw, pitch = torch.tensor([0.3, -0.5, 1.0]), torch.tensor([0.2, 0.1, -0.4])
    torch.testing.assert_close(orbit_offset(frontal_camera(3), yaw, pitch), _at_orbit_angles(yaw, pitch),
                               atol=1e-6, rtol=0)


def test_pose_cameras_turn_by_the_inverse_head_rotation():
    offsets = torch.tensor([[0.1, -0.2, 0.05], [0.0, 0.3, 0.0]], dtype=F64)
    front = front_matrix(torch.zeros(2, 3, dtype=F64))
    turned = pose_cameras(front, offsets)
    torch.testing.assert_close(turned, front_matrix(offsets))            # front_matrix(a) @ front_matrix(0)^-1
    torch.testing.assert_close(turned[:, :3, :3], world_rotation(offsets).transpose(1, 2) @ front[:, :3, :3])


def test_bad_shapes_and_degenerate_look_at_raise():
    with pytest.raises(ValueError, match=r"cam2world must have shape \[B, 4, 4\]"):
        yaw_pitch_from_cam2world(torch.eye(4))
    with pytest.raises(ValueError, match=r"angle must have shape \[B, 3\]"):
        front_matrix(torch.zeros(3))
    with pytest.raises(ValueError, match="parallel to 'up'"):
        look_at(torch.tensor([[0.0, 0.0, 2.0]]))  # the backbone's look_at, the project's only one


def test_float32_default_and_gradients_flow():
    angles = torch.tensor([[0.1, 0.2, 0.3]], requires_grad=True)
    cam = orbit_offset(front_matrix(angles), 0.1, math.radians(5))
    assert cam.dtype == torch.float32 and cam.shape == (1, 4, 4)
    cam[:, :3, 3].sum().backward()
    assert angles.grad is not None and torch.isfinite(angles.grad).all()
