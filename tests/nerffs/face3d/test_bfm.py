"""BFM09 loaders and face-model conventions (spec-pipeline.md 3.3, 3.4) on synthetic model files."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic_bfm import grid_mesh, make_synthetic_bfm, write_synthetic_bfm

from nerffs.errors import CheckpointError, WeightsMissingError
from nerffs.face3d.bfm import (BFMData, ParametricFaceModel, compute_rotation, load_bfm09_model_info,
                               load_bfm_front, to_image_rows)
from nerffs.face3d.coeffs import FaceCoeffs


@pytest.fixture(scope="module")
def fields() -> dict:
    return make_synthetic_bfm()


@pytest.fixture(scope="module")
def model(tmp_path_factory, fields) -> ParametricFaceModel:
    path = tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat"
    write_synthetic_bfm(path, "deep3d", fields=fields)
    return ParametricFaceModel.from_mat(path).double()


def _rx(a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)


def _ry(a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)


def _rz(a: float) -> torch.Tensor:
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64)


def _model_with_mean_shape(tmp_path, fields: dict, verts: np.ndarray) -> ParametricFaceModel:
    path = tmp_path / "custom.mat"
    write_synthetic_bfm(path, "fitting", fields=fields, meanshape=verts.reshape(1, -1))
    return ParametricFaceModel.from_mat(path).double()


# ------------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("layout,loader", [("deep3d", load_bfm_front), ("fitting", load_bfm09_model_info)])
def test_loaders_convert_to_zero_based(tmp_path, fields, layout, loader):
    path = tmp_path / "model.mat"
    write_synthetic_bfm(path, layout, fields=fields)
    data = loader(path)
    nv = fields["meanshape"].shape[1] // 3
    assert isinstance(data, BFMData) and data.num_vertices == nv
    assert data.mean_shape.shape == (nv, 3) and data.id_base.shape == (3 * nv, 80)
    assert data.exp_base.shape == (3 * nv, 64) and data.tex_base.shape == (3 * nv, 80)
    np.testing.assert_array_equal(data.keypoints, fields["keypoints"].reshape(-1) - 1)
    np.testing.assert_array_equal(data.tri, fields["tri"] - 1)
    assert data.point_buf.max() == data.tri.shape[0]          # padding F+1 (1-based) -> F
    np.testing.assert_allclose(data.mean_shape, fields["meanshape"].reshape(-1, 3), rtol=1e-6)
    assert data.skinmask is not None and data.skinmask.shape == (nv,)


def test_both_layouts_give_the_same_model(tmp_path, fields):
    write_synthetic_bfm(tmp_path / "a.mat", "deep3d", fields=fields)
    write_synthetic_bfm(tmp_path / "b.mat", "fitting", fields=fields)
    a, b = ParametricFaceModel.from_mat(tmp_path / "a.mat"), ParametricFaceModel.from_mat(tmp_path / "b.mat")
    coeffs = FaceCoeffs.from_vector(0.3 * torch.randn(2, 257))
    torch.testing.assert_close(a(coeffs).proj, b(coeffs).proj)


def test_missing_file_is_weights_missing(tmp_path):
    with pytest.raises(WeightsMissingError, match="BFM_model_front.mat not found"):
        load_bfm_front(tmp_path / "nope.mat")


def test_corrupt_file_is_checkpoint_error(tmp_path):
    path = tmp_path / "BFM09_model_info.mat"
    path.write_bytes(b"this is not a MATLAB file" * 10)
    with pytest.raises(CheckpointError, match="not a readable MATLAB"):
        load_bfm09_model_info(path)


@pytest.mark.parametrize("missing", ["meanshape", "idBase", "exBase", "tri", "point_buf", "keypoints"])
def test_missing_field_is_named(tmp_path, fields, missing):
    path = tmp_path / "m.mat"
    write_synthetic_bfm(path, "deep3d", fields=fields, drop=(missing,))
    with pytest.raises(CheckpointError, match=f"no field '{missing}'"):
        load_bfm_front(path)


def test_misshaped_or_out_of_range_fields_are_named(tmp_path, fields):
    path = tmp_path / "m.mat"
    write_synthetic_bfm(path, "deep3d", fields=fields, idBase=fields["idBase"][:, :40])
    with pytest.raises(CheckpointError, match="'idBase' has shape"):
        load_bfm_front(path)
    bad_kp = fields["keypoints"].copy()
    bad_kp[0, 0] = 10 ** 6
    write_synthetic_bfm(path, "deep3d", fields=fields, keypoints=bad_kp)
    with pytest.raises(CheckpointError, match="'keypoints' has indices outside"):
        load_bfm_front(path)


# --------------------------------------------------------------------------------------------- face model


def test_recentering_and_shape_formula(model, fields):
    mean_file = torch.from_numpy(fields["meanshape"].reshape(-1, 3))
    torch.testing.assert_close(model.mean_shape, mean_file - mean_file.mean(0), rtol=0, atol=1e-6)
    zero = FaceCoeffs.zeros(1, dtype=torch.float64)
    assert model.compute_shape(zero.id, zero.exp).mean(1).abs().max() < 1e-6
    ident, exp = torch.randn(2, 80, dtype=torch.float64), torch.randn(2, 64, dtype=torch.float64)
    expected = (model.mean_shape.reshape(-1) + ident @ torch.from_numpy(fields["idBase"]).T
                + exp @ torch.from_numpy(fields["exBase"]).T).view(2, -1, 3)
    shape = model.compute_shape(ident, exp)
    torch.testing.assert_close(shape, expected, rtol=1e-5, atol=1e-5)
    sub = model.compute_shape(ident, exp, index=model.keypoints)
    torch.testing.assert_close(sub, shape[:, model.keypoints])


def test_rotation_is_transposed_rz_ry_rx():
    x, y, z = 0.3, -0.5, 0.7
    rot = compute_rotation(torch.tensor([[x, y, z]], dtype=torch.float64))[0]
    torch.testing.assert_close(rot, (_rz(z) @ _ry(y) @ _rx(x)).T)
    assert not torch.allclose(rot, (_rx(x) @ _ry(y) @ _rz(z)).T, atol=1e-3)      # the order matters
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=torch.float64))


def test_known_point_rotated_and_projected(model):
    # 90 degrees of yaw maps the column vector (0.1, 0.2, 0.3) to (0.3, 0.2, -0.1); + t = (0.35, 0.1, 0.4);
    # z_cam = 10 - 0.4 = 9.6; u = 1015 * 0.35 / 9.6 + 112, v = 1015 * 0.1 / 9.6 + 112 (v up).
    point = torch.tensor([[[0.1, 0.2, 0.3]]], dtype=torch.float64)
    rot = model.compute_rotation(torch.tensor([[0.0, math.pi / 2, 0.0]], dtype=torch.float64))
    world = model.transform(point, rot, torch.tensor([[0.05, -0.1, 0.5]], dtype=torch.float64))
    torch.testing.assert_close(world, torch.tensor([[[0.35, 0.1, 0.4]]], dtype=torch.float64))
    cam = model.to_camera(world)
    torch.testing.assert_close(cam, torch.tensor([[[0.35, 0.1, 9.6]]], dtype=torch.float64))
    proj = model.project(cam)
    torch.testing.assert_close(proj, torch.tensor([[[149.0052083333, 122.5729166667]]], dtype=torch.float64))


def test_origin_projects_to_centre(model):
    origin = model.to_camera(torch.zeros(1, 1, 3, dtype=torch.float64))
    torch.testing.assert_close(model.project(origin), torch.full((1, 1, 2), 112.0, dtype=torch.float64))


def test_forward_landmarks_are_keypoint_projections(model):
    coeffs = FaceCoeffs.from_vector(0.2 * torch.randn(3, 257, dtype=torch.float64))
    geo = model(coeffs, with_color=True)
    nv = model.num_vertices
    assert geo.verts_cam.shape == (3, nv, 3) and geo.proj.shape == (3, nv, 2) and geo.landmarks.shape == (3, 68, 2)
    torch.testing.assert_close(geo.landmarks, geo.proj[:, model.keypoints])
    torch.testing.assert_close(geo.verts_cam[..., 2], 10.0 - geo.verts_world[..., 2])
    assert geo.color.shape == (3, nv, 3) and geo.normals.shape == (3, nv, 3)
    torch.testing.assert_close(geo.normals.norm(dim=-1), torch.ones(3, nv, dtype=torch.float64))


def test_higher_vertices_project_higher_v(model):
    """v points up: moving a point toward +y increases v, and image rows decrease."""
    pts = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]], dtype=torch.float64)
    proj = model.project(model.to_camera(pts))
    assert proj[0, 1, 1] > proj[0, 0, 1]
    rows = to_image_rows(proj)
    assert rows[0, 1, 1] < rows[0, 0, 1]
    torch.testing.assert_close(to_image_rows(rows), proj)


def test_normals_of_flat_and_tilted_patches(tmp_path, fields):
    verts, _ = grid_mesh(18, 18)
    flat = verts.copy()
    flat[:, 2] = 0.3
    normals = _model_with_mean_shape(tmp_path, fields, flat).compute_normals(torch.from_numpy(flat)[None])
    torch.testing.assert_close(normals[0], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(normals[0]))
    tilted = verts.copy()
    tilted[:, 2] = 0.5 * tilted[:, 0]                                   # plane z = 0.5 x
    normals = _model_with_mean_shape(tmp_path, fields, tilted).compute_normals(torch.from_numpy(tilted)[None])
    expected = torch.tensor([-0.5, 0.0, 1.0], dtype=torch.float64) / math.sqrt(1.25)
    torch.testing.assert_close(normals[0], expected.expand_as(normals[0]))


def test_sh_lighting_of_constant_normal(model):
    nv = model.num_vertices
    normals = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1, nv, 3)
    texture = torch.tensor([0.5, 0.25, 1.0], dtype=torch.float64).expand(1, nv, 3)
    gamma = torch.zeros(1, 3, 9, dtype=torch.float64)
    gamma[0, :, 0] = torch.tensor([0.1, -0.2, 0.3])      # band 0 (constant), per colour
    gamma[0, :, 2] = torch.tensor([0.5, 0.4, -0.1])      # band 2 (~ n_z)
    gamma[0, :, 6] = torch.tensor([0.2, 0.0, 0.1])       # band 6 (~ 3 n_z^2 - 1)
    gamma[0, :, 1] = 7.0                                 # band 1 (~ n_y) is zero for this normal
    color = model.compute_color(texture, normals, gamma.reshape(1, 27))
    y0 = math.pi / math.sqrt(4 * math.pi)
    y2 = (2 * math.pi / math.sqrt(3)) * math.sqrt(3) / math.sqrt(4 * math.pi)
    y6 = (2 * math.pi / math.sqrt(8)) * (3 * math.sqrt(5) / math.sqrt(12 * math.pi)) * (0.5 / math.sqrt(3)) * 2
    expected = [(y0 * (0.8 + 0.1) + y2 * 0.5 + y6 * 0.2) * 0.5,
                (y0 * (0.8 - 0.2) + y2 * 0.4 + y6 * 0.0) * 0.25,
                (y0 * (0.8 + 0.3) + y2 * -0.1 + y6 * 0.1) * 1.0]
    torch.testing.assert_close(color[0], torch.tensor(expected, dtype=torch.float64).expand(nv, 3))


def test_texture_formula(model, fields):
    tex = torch.randn(2, 80, dtype=torch.float64)
    expected = (tex @ torch.from_numpy(fields["texBase"]).T + torch.from_numpy(fields["meantex"])) / 255.0
    torch.testing.assert_close(model.compute_texture(tex), expected.view(2, -1, 3))


def test_gamma_shape_checked(model):
    with pytest.raises(ValueError, match=r"gamma must have shape \[B, 27\]"):
        model.compute_color(torch.zeros(1, 4, 3), torch.zeros(1, 4, 3), torch.zeros(1, 9))
