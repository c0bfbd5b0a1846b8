"""Camera conventions (spec-stylenerf.md section 3)."""
import math

import pytest
import torch

from stylenerf.camera import camera_from_angles, frontal_camera, generate_rays, look_at, ndc_grid, sample_cameras
from stylenerf.config import CameraConfig


def test_frontal_camera_is_lookat_from_plus_x():
    m = frontal_camera()[0]
    expected = torch.tensor([[0.0, 0, 1, 1], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    torch.testing.assert_close(m, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("yaw,polar", [(0.3, math.pi / 2), (-0.5, 1.3), (1.2, 2.0)])
def test_pose_is_orthonormal_and_looks_at_origin(yaw, polar):
    m = camera_from_angles(yaw, polar)[0]
    r, t = m[:3, :3], m[:3, 3]
    torch.testing.assert_close(r.T @ r, torch.eye(3), atol=1e-6, rtol=0)
    assert torch.det(r) == pytest.approx(1.0, abs=1e-6)
    # The camera looks along -z: the origin is straight ahead.
    torch.testing.assert_close(-r[:, 2], -t / t.norm(), atol=1e-6, rtol=0)
    expected_eye = torch.tensor([math.sin(polar) * math.cos(yaw), math.sin(polar) * math.sin(yaw), math.cos(polar)])
    torch.testing.assert_close(t, expected_eye, atol=1e-6, rtol=0)


def test_lookat_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        look_at(torch.zeros(3))


def test_ndc_grid_unaligned_and_corner_aligned():
    x, y = ndc_grid(32, 512, align_corner=False)
    assert x[0].item() == pytest.approx(-0.96875) and x[-1].item() == pytest.approx(0.96875)
    assert y[0].item() == pytest.approx(0.96875)  # row 0 is the top
    x, y = ndc_grid(32, 512, align_corner=True)
    assert x[0].item() == pytest.approx(-1.0)
    assert x[31].item() == pytest.approx(-1 + 32 * 31 / 511, abs=1e-6)
    assert y[31].item() == pytest.approx(1 - 32 * 31 / 511, abs=1e-6)


def test_frontal_first_coarse_sample_matches_spec():
    """Spec 3.3: frontal camera, unaligned, t = 0.88: row0/col0 -> (0.12, -0.0896, 0.0896)."""
    rays = generate_rays(frontal_camera(), 32, 512, fov=12.0, align_corner=False)
    p = rays.at(torch.full((1, 1024, 1), 0.88))[0]
    tan6 = math.tan(math.radians(6))
    c = 0.88 * tan6 * 0.96875
    torch.testing.assert_close(p[0], torch.tensor([0.12, -c, c]), atol=1e-6, rtol=0)
    torch.testing.assert_close(p[31], torch.tensor([0.12, c, c]), atol=1e-6, rtol=0)
    assert c == pytest.approx(0.0896, abs=1e-4)
    # The camera-z component of every ray direction has unit length.
    cam_z = -(rays.directions[0] @ frontal_camera()[0, :3, 2])
    torch.testing.assert_close(cam_z, torch.ones(1024), atol=1e-6, rtol=0)


def test_sample_cameras_deterministic_and_in_distribution():
    cfg = CameraConfig()
    a = sample_cameras(cfg, 256, torch.Generator().manual_seed(1))
    b = sample_cameras(cfg, 256, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    eye = a[:, :3, 3]
    torch.testing.assert_close(eye.norm(dim=-1), torch.ones(256), atol=1e-5, rtol=0)
    yaw = torch.atan2(eye[:, 1], eye[:, 0])
    assert abs(yaw.mean().item()) < 0.1 and 0.2 < yaw.std().item() < 0.4  # N(0, 0.3)
