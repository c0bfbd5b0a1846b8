"""3DMM fitting refinement (spec-pipeline.md 4) on a synthetic BFM file: landmark stage and photometric stage."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from synthetic_bfm import write_synthetic_bfm

from nerffs.errors import InputError
from nerffs.face3d.bfm import ParametricFaceModel, sh_basis, to_image_rows
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.fit import (FaceRenderer, FitConfig, fit_landmarks, fit_photometric, landmark_loss,
                               landmark_weights, photometric_loss, reflectance_loss)
from nerffs.face3d.render import MeshRenderer, MeshRendererConfig


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ParametricFaceModel:
    path = tmp_path_factory.mktemp("bfm") / "BFM09_model_info.mat"
    write_synthetic_bfm(path, "fitting")
    return ParametricFaceModel.from_mat(path)


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """The fit is a loop of tiny ops: single-threaded (see ``single_thread``)."""
    yield


def _truth() -> FaceCoeffs:
    g = torch.Generator().manual_seed(1)
    return FaceCoeffs.zeros(2).replace(
        id=0.1 * torch.randn(2, 80, generator=g), exp=0.1 * torch.randn(2, 64, generator=g),
        tex=torch.randn(2, 80, generator=g), gamma=0.1 * torch.randn(2, 27, generator=g),
        angle=torch.tensor([[0.1, -0.3, 0.05], [-0.15, 0.2, -0.1]]),
        trans=torch.tensor([[0.1, -0.05, 0.3], [0.0, 0.1, -0.2]]))


def _perturbed(truth: FaceCoeffs) -> FaceCoeffs:
    """A Deep3D-like init: pose off by ~6 degrees, translation off, shape and expression unknown (zero)."""
    return truth.replace(id=torch.zeros(2, 80), exp=torch.zeros(2, 64),
                         angle=truth.angle + torch.tensor([0.08, -0.1, 0.06]),
                         trans=truth.trans + torch.tensor([0.05, -0.05, 0.3]))


def _quiet(cfg: FitConfig, **changes) -> FitConfig:
    return dataclasses.replace(cfg, show_progress=False, **changes)


def test_fit_recovers_pose_and_landmarks(model):
    truth = _truth()
    target = to_image_rows(model(truth).landmarks)                     # detector-style: image rows, y down
    init = _perturbed(truth)
    init_error = (model(init).landmarks - to_image_rows(target)).norm(dim=-1).mean(-1)
    assert init_error.min() > 5.0

    result = fit_landmarks(model, init, target, _quiet(FitConfig.preset("fast")))

    pose_error_deg = (result.coeffs.angle - truth.angle).abs().max() * 180 / math.pi
    assert pose_error_deg < 1.0
    assert result.landmark_error.max() < 0.5
    independent = (to_image_rows(result.landmarks) - target).norm(dim=-1).mean(-1)
    torch.testing.assert_close(result.landmark_error, independent)
    # without a renderer texture and lighting are left exactly as initialised
    torch.testing.assert_close(result.coeffs.tex, init.tex, rtol=0, atol=0)
    torch.testing.assert_close(result.coeffs.gamma, init.gamma, rtol=0, atol=0)
    assert result.coeffs.to_vector().shape == (2, 257)
    assert result.proj.shape == (2, model.num_vertices, 2)
    torch.testing.assert_close(result.landmarks, result.proj[:, model.keypoints])
    assert {"lm", "id", "exp", "total"} <= set(result.losses)


def test_nonrigid_stage_fits_expression(model):
    truth = _truth()
    truth = truth.replace(exp=4 * truth.exp)                           # a pronounced expression
    target = to_image_rows(model(truth).landmarks)
    init = truth.replace(exp=torch.zeros(2, 64))                       # right pose and identity, wrong expression
    rigid_only = fit_landmarks(model, init, target, _quiet(FitConfig.preset("fast"), nonrigid_iters=0))
    # priors off: this checks that the non-rigid stage moves the expression, not where the priors balance it
    full = fit_landmarks(model, init, target,
                         _quiet(FitConfig.preset("fast"), rigid_iters=0, id_weight=0.0, exp_weight=0.0))
    assert rigid_only.landmark_error.min() > 0.6                      # pose alone cannot explain the expression
    torch.testing.assert_close(rigid_only.coeffs.exp, init.exp)
    assert full.landmark_error.max() < 0.3
    assert (full.landmark_error < 0.3 * rigid_only.landmark_error).all()
    assert full.coeffs.exp.abs().max() > 0.05


def test_presets():
    official = FitConfig.preset("official")
    assert (official.rigid_iters, official.nonrigid_iters) == (1000, 500)
    assert (official.rigid_lr, official.nonrigid_lr, official.lm_weight) == (1e-2, 1e-2, 100.0)
    assert (official.id_weight, official.exp_weight, official.tex_weight) == (1e-3, 0.8e-3, 1.7e-6)
    assert (official.reflectance_weight, official.photo_weight) == (1.0, 1.6)
    fast = FitConfig.preset("fast")
    assert fast.rigid_iters + fast.nonrigid_iters < (official.rigid_iters + official.nonrigid_iters) / 3
    with pytest.raises(ValueError, match="unknown FitConfig preset"):
        FitConfig.preset("turbo")


def test_landmark_weights_and_loss():
    w = landmark_weights()
    torch.testing.assert_close(w.sum(), torch.tensor(1.0))
    torch.testing.assert_close(w[0], torch.tensor(1 / 275))
    torch.testing.assert_close(w[29], torch.tensor(10 / 275))
    torch.testing.assert_close(w[48:].min(), torch.tensor(10 / 275))
    assert w[27] == w[31] == w[0]
    pred = torch.zeros(1, 68, 2)
    target = torch.zeros(1, 68, 2)
    target[0, 50] = torch.tensor([3.0, 4.0])                          # 5 px off on a mouth point
    torch.testing.assert_close(landmark_loss(pred, target, w, 224), torch.tensor(10 / 275 * 25 / 224 ** 2))


def test_photometric_and_reflectance_losses():
    render = torch.zeros(1, 3, 2, 2)
    image = torch.zeros(1, 3, 2, 2)
    image[0, :, 0, 0] = torch.tensor([0.3, 0.4, 0.0])                 # distance 0.5 at a covered pixel
    image[0, :, 1, 1] = 1.0                                          # uncovered pixel: ignored
    mask = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    torch.testing.assert_close(photometric_loss(render, image, mask), torch.tensor(0.25))
    uniform = torch.full((2, 5, 3), 0.4)
    assert reflectance_loss(uniform, torch.ones(5)) == 0
    tex = uniform.clone()
    tex[:, 0] = 0.9                                                  # an outlier outside the skin mask
    assert reflectance_loss(tex, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0])) == 0
    assert reflectance_loss(tex, torch.ones(5)) > 0


class _MeanColourRenderer:
    """Toy differentiable 'renderer': every pixel shows the mean vertex colour (enough to drive tex / gamma)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, verts_cam, faces, colors):
        self.calls += 1
        assert verts_cam.shape[-1] == 3 and faces.ndim == 2 and faces.shape[1] == 3
        rgb = colors.mean(dim=1)[:, :, None, None].expand(-1, 3, 4, 4)
        return rgb, torch.ones(colors.shape[0], 1, 4, 4)


def test_renderer_enables_photometric_term(model):
    truth = _truth()
    target = to_image_rows(model(truth).landmarks)
    renderer = _MeanColourRenderer()
    assert isinstance(renderer, FaceRenderer)
    image = torch.tensor([0.7, 0.3, 0.2]).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    cfg = _quiet(FitConfig.preset("fast"), rigid_iters=0, nonrigid_iters=60, photo_weight=50.0)
    geo = model(truth, with_color=True)
    before = photometric_loss(*renderer(geo.verts_cam, model.tri, geo.color)[:1], image, torch.ones(2, 1, 4, 4))
    result = fit_landmarks(model, truth, target, cfg, renderer=renderer, image=image)
    assert renderer.calls >= 60
    assert {"photo", "reflectance", "tex"} <= set(result.losses)
    assert result.losses["photo"] < 0.5 * float(before)
    assert not torch.equal(result.coeffs.gamma, truth.gamma)


def test_bad_inputs_raise_one_line_errors(model):
    init = FaceCoeffs.zeros(1)
    with pytest.raises(InputError, match=r"target_lmk has shape \(1, 5, 2\)"):
        fit_landmarks(model, init, torch.zeros(1, 5, 2))
    bad = torch.zeros(1, 68, 2)
    bad[0, 3, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        fit_landmarks(model, init, bad)
    with pytest.raises(InputError, match="renderer was given without an image"):
        fit_landmarks(model, init, torch.zeros(1, 68, 2), renderer=_MeanColourRenderer())
    with pytest.raises(InputError, match=r"init.exp has shape"):
        fit_landmarks(model, init.replace(exp=torch.zeros(1, 10)), torch.zeros(1, 68, 2))


def _identifiable_exp_directions(model: ParametricFaceModel, pose: FaceCoeffs, k: int) -> torch.Tensor:
    """[k, 64] orthonormal expression directions that move the 68 landmarks most once what a pose change can
    explain is removed (other directions are left to the priors by any fit, so no fit can recover them)."""
    def landmarks(angle, trans, exp):
        return model(pose.replace(angle=angle, trans=trans, exp=exp)).landmarks.reshape(-1)

    d_angle, d_trans, d_exp = torch.autograd.functional.jacobian(landmarks, (pose.angle, pose.trans, pose.exp))
    q, _ = torch.linalg.qr(torch.cat([d_angle.flatten(1), d_trans.flatten(1)], 1))   # [136, 6] pose span
    d_exp = d_exp.flatten(1)
    return torch.linalg.svd(d_exp - q @ (q.T @ d_exp), full_matrices=False)[2][:k]


def _observable_light_directions(model: ParametricFaceModel, pose: FaceCoeffs, k: int) -> torch.Tensor:
    """[k, 9] SH directions best determined by the mesh's normals (on a frontal dome the last of the 9 is nearly
    constant over the surface, so its coefficient is not observable)."""
    normals = model(pose, with_color=True).normals[0]
    return torch.linalg.svd(sh_basis(normals), full_matrices=False)[2][:k]


@pytest.fixture(scope="module")
def scene(model):
    """A 48 x 48 render of the stand-in with known pose, expression, texture and lighting, and its landmarks."""
    g = torch.Generator().manual_seed(2)
    pose = FaceCoeffs.zeros(1).replace(angle=torch.tensor([[0.1, -0.3, 0.05]]), trans=torch.tensor([[0.1, -0.05, 0.3]]))
    exp_dirs = _identifiable_exp_directions(model, pose, 6)
    light_dirs = _observable_light_directions(model, pose, 6)
    truth = pose.replace(exp=2.0 * torch.randn(1, 6, generator=g) @ exp_dirs, tex=torch.randn(1, 80, generator=g),
                         gamma=(0.1 * torch.randn(1, 3, 6, generator=g) @ light_dirs).reshape(1, 27))
    geo = model(truth, with_color=True)
    image, _ = MeshRenderer(MeshRendererConfig(image_size=48))(geo.verts_cam, model.tri, geo.color)
    return truth, image, to_image_rows(geo.landmarks), exp_dirs, light_dirs


def test_photometric_fit_recovers_expression_texture_and_lighting(model, scene):
    truth, image, target, exp_dirs, light_dirs = scene
    init = FaceCoeffs.zeros(1).replace(angle=truth.angle + 0.03, trans=truth.trans + 0.02)   # exp, tex, gamma 0
    # The identity is known (the mean face), so its prior is raised to hold it there. The texture priors pull the
    # albedo toward uniform by design, so they are off here: with them the optimum is not the truth.
    cfg = _quiet(FitConfig(), rigid_iters=50, nonrigid_iters=300, id_weight=1.0, tex_weight=0.0,
                 reflectance_weight=0.0)
    fitted = fit_photometric(model, init, target, image, cfg).coeffs

    assert (fitted.angle - truth.angle).abs().max() * 180 / math.pi < 0.5
    exp_err = ((fitted.exp - truth.exp) @ exp_dirs.T).norm() / (truth.exp @ exp_dirs.T).norm()
    assert exp_err < 0.05
    off_span = fitted.exp - (fitted.exp @ exp_dirs.T) @ exp_dirs                 # held small by the exp prior
    assert off_span.norm() < 0.25 * truth.exp.norm()
    assert (fitted.tex - truth.tex).norm() < 0.02 * truth.tex.norm()
    gamma_err = (fitted.gamma - truth.gamma).view(3, 9) @ light_dirs.T
    assert gamma_err.norm() < 0.03 * (truth.gamma.view(3, 9) @ light_dirs.T).norm()


def test_photometric_loss_decreases_over_the_second_stage(model, scene):
    truth, image, target, _, _ = scene
    init = truth.replace(exp=torch.zeros(1, 64), tex=torch.zeros(1, 80), gamma=torch.zeros(1, 27))
    result = fit_photometric(model, init, target, image, _quiet(FitConfig(), rigid_iters=0, nonrigid_iters=150))
    photo = torch.tensor(result.history["nonrigid"]["photo"])
    assert photo.numel() == 150 and result.history["rigid"] == {}
    assert (photo.view(5, 30).mean(1).diff() < 0).all()                           # steadily, not only at the end
    assert result.losses["photo"] < 0.3 * photo[0]
    total = torch.tensor(result.history["nonrigid"]["total"])
    assert total[-10:].mean() < 0.5 * total[0]
    assert {"lm", "photo", "reflectance", "tex", "id", "exp", "total"} <= set(result.losses)


def test_photometric_fit_checks_the_image_size(model, scene):
    truth, image, target, _, _ = scene
    with pytest.raises(InputError, match="expected a square"):
        fit_photometric(model, truth, target, image[..., :40])
    with pytest.raises(InputError, match="the renderer draws"):
        fit_photometric(model, truth, target, image, _quiet(FitConfig(), rigid_iters=0, nonrigid_iters=1),
                        renderer_cfg=MeshRendererConfig(image_size=32))
