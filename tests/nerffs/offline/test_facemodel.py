"""The offline face model (Deep3D conventions over the photo's mesh) and the landmark regressor."""
from __future__ import annotations

import math

import numpy as np
import torch

from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.recon import preprocess_generator_image
from nerffs.offline.facemodel import portrait_face_model, subdivide
from nerffs.offline.geometry import EXP_CHANNELS, world_to_ndc
from nerffs.render.cameras import front_matrix
from stylenerf.camera import camera_from_angles


def test_subdivide_counts_and_midpoints():
    tri = np.array([[0, 1, 2], [0, 2, 3]])
    values = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
    new_tri, new_values = subdivide(tri, values)
    assert new_tri.shape == (8, 3) and new_values.shape == (4 + 5, 2)  # 5 distinct edges
    assert np.array_equal(new_values[:4], values)
    for a, b in ((0, 1), (1, 2), (0, 2), (2, 3), (0, 3)):
        assert any(np.allclose(v, (values[a] + values[b]) / 2) for v in new_values[4:])
    area = lambda t, v: sum(abs(np.cross(np.append(v[b] - v[a], 0), np.append(v[c] - v[a], 0))[2]) / 2  # noqa: E731
                            for a, b, c in t)
    assert math.isclose(area(new_tri, new_values), area(tri, values))


def test_projection_at_the_photo_expression_is_the_mesh(portrait, aligned):
    model = portrait_face_model(portrait, aligned.points)
    coeffs = FaceCoeffs.zeros(1).replace(exp=torch.zeros(1, 64).index_put(
        (torch.tensor([0]), torch.arange(len(EXP_CHANNELS))), torch.tensor(portrait.e0, dtype=torch.float32)))
    proj = model(coeffs).proj[0, :len(portrait.mesh_world)].double().numpy()
    expected = (world_to_ndc(portrait.mesh_world) + 1) * 112        # u right, v up in the 224 frame
    assert np.abs(proj - expected).max() < 1e-3
    assert model.num_vertices > 6000                                 # two subdivisions: dense control points


def test_keypoints_sit_on_the_matching_lip_contours(portrait, aligned):
    kp = portrait_face_model(portrait, aligned.points, subdivisions=0).keypoints.numpy()
    assert set(kp[61:64]) <= set(portrait.lips_upper) and set(kp[65:68]) <= set(portrait.lips_lower)
    assert set(kp[49:54]) <= set(portrait.outer_upper) and set(kp[55:60]) <= set(portrait.outer_lower)
    err = np.linalg.norm(portrait.mesh_points[kp, :2] - (aligned.points + 0.5), axis=1)
    assert np.median(err) < 6.0                                      # pixels at 512


def test_regressor_recovers_a_known_pose(personal):
    """Render the fitted field from known cameras; the landmark regressor's Deep3D angles give the cameras back
    (relative to its estimate for the frontal view, within 0.06 rad)."""
    g = personal.generator
    ws, bg = g.mapping(torch.zeros(1, g.z_dim)), torch.zeros(1, g.cfg.nerf.z_dim_bg)
    eyes = []
    for yaw, pitch in ((0.0, 0.0), (0.2, 0.0), (-0.2, 0.0), (0.0, 0.12)):
        cam = camera_from_angles(torch.tensor([yaw]), math.pi / 2 + pitch)
        with torch.inference_mode():
            img = g.synthesis(ws, cam, bg_latent=bg, freeze_bg=True).img
        angles = personal.deep3d.predict(preprocess_generator_image(img)).angle
        eyes.append((front_matrix(angles)[0, :3, 3], cam[0, :3, 3]))
    base = eyes[0][0] - eyes[0][1]
    for found, true in eyes[1:]:
        assert float((found - base - true).norm()) < 0.06


def test_driving_frames_are_read_with_the_landmark_regressor(personal):
    """Video-driven mode with the offline models: poses of frames rendered at yaw -0.2 / 0 / +0.2 come back
    in that order (estimate_driving works with a regressor that has no parameters)."""
    from nerffs.driving import estimate_driving
    from nerffs.preprocess.image import from_tensor
    from nerffs.preprocess.landmarks import DlibLandmarks

    g = personal.generator
    cams = camera_from_angles(torch.tensor([-0.2, 0.0, 0.2]), math.pi / 2)
    with torch.inference_mode():
        imgs = g.synthesis(g.mapping(torch.zeros(3, g.z_dim)), cams, bg_latent=torch.zeros(3, 4), freeze_bg=True).img
    seq = estimate_driving(list(from_tensor(imgs)), DlibLandmarks(), personal.deep3d, show_progress=False)
    yaw = seq.angles[:, 1]  # Deep3D yaw is minus the camera's azimuth
    assert float(yaw[0]) > float(yaw[1]) + 0.1 and float(yaw[1]) > float(yaw[2]) + 0.1
