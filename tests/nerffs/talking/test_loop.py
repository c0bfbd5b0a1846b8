"""The two-pass frame loop against a naive three-pass reference, and its invariants (paper 4.3-4.5)."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from nerffs.deform.rays import ControlPointDeformer
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.models import smoke_models
from nerffs.talking.blend import TemporalMaskSmoother, blend_features
from nerffs.talking.controls import ControlPoints
from nerffs.talking.loop import FrameRenderer, LoopConfig, prepare_reference, render_frames
from nerffs.preprocess.image import from_tensor
from stylenerf.camera import camera_from_angles, frontal_camera


@pytest.fixture(scope="module")
def setup():
    models = smoke_models(seed=1, resolution=64, num_vertices=600)
    g = models.talking.generator
    gen = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        ws = g.mapping(torch.randn(1, g.z_dim, generator=gen), truncation_psi=0.7)
    bg = torch.randn(1, g.cfg.nerf.z_dim_bg, generator=gen)
    cfg = LoopConfig(blend_size=64, batch_size=3, mask_window=3)
    ref = prepare_reference(models.talking, ws, bg, cfg)
    exp = torch.randn(7, 64, generator=gen) * 2.0
    cams = camera_from_angles(torch.linspace(-0.2, 0.2, 7), torch.full((7,), math.pi / 2 - 0.05))
    return models, ref, cfg, exp, cams


def naive_three_pass(models, ref, cfg, exp, cams):
    """The official per-frame order: A (deformed, discarded), B (LipaintNet), C (deformed + blended),
    every pass a full generator call on one frame, background recomputed each time."""
    g, t = models.talking.generator, models.talking
    smoother, frames = TemporalMaskSmoother(cfg.mask_window), []
    renderer = FrameRenderer(t, ref, cfg)  # used only for the driven control points of one frame
    with torch.inference_mode():
        for i in range(exp.shape[0]):
            e, c = exp[i:i + 1], cams[i:i + 1]
            deformer = ControlPointDeformer(ref.controls.ref, renderer.driven_controls(e))
            kw = dict(bg_latent=ref.bg_latent, freeze_bg=True, depths=ref.depths)
            g.synthesis(ref.ws, c, deform=deformer, **kw)                              # A: wasted
            lip = g.synthesis(t.lipaint.mouth_styles(ref.ws, e, g.synthesis.num_nerf_ws), c, **kw)  # B
            keep = 1 - smoother(t.parser.mouth_mask(lip.img, size=t.parser.config.input_size))
            out = g.synthesis(ref.ws, c, deform=deformer, feature_hook=lambda f: blend_features(
                f, lip.nerf.feat, keep, cfg.blend_size, cfg.blend_mode), **kw)           # C
            frames.append(from_tensor(out.img)[0])
    return frames


def test_two_pass_equals_naive_three_pass(setup):
    models, ref, cfg, exp, cams = setup
    ours = list(render_frames(models.talking, ref, exp, cams, cfg, show_progress=False))
    naive = naive_three_pass(models, ref, cfg, exp, cams)
    assert len(ours) == len(naive) == 7
    for a, b in zip(ours, naive):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # float reordering may flip one uint8 level


def test_resume_matches_uninterrupted(setup):
    models, ref, cfg, exp, cams = setup
    full = list(render_frames(models.talking, ref, exp, cams, cfg, show_progress=False))
    tail = list(render_frames(models.talking, ref, exp, cams, cfg, show_progress=False, start=4))
    assert len(tail) == 3
    for a, b in zip(full[4:], tail):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_zero_displacement_and_closed_mask_give_the_plain_render(setup):
    models, ref, cfg, _, _ = setup
    g = models.talking.generator
    renderer = FrameRenderer(models.talking, ref, cfg)
    cam = frontal_camera(1)
    with torch.inference_mode():
        exp0 = ref.coeffs.exp  # the reference expression: driven control points equal the reference
        torch.testing.assert_close(renderer.driven_controls(exp0), ref.controls.ref)
        lip = renderer.lipaint_pass(exp0, cam)
        keep = torch.ones(1, 1, 64, 64)
        out = renderer.final_pass(exp0, cam, lip.nerf.feat, keep)
        plain = g.synthesis(ref.ws, cam, bg_latent=ref.bg_latent, freeze_bg=True, depths=ref.depths).img
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=0)


def test_static_points_never_move(setup):
    models, ref, cfg, exp, _ = setup
    proj = models.talking.face_model(ref.coeffs).proj
    static = torch.tensor([[0.05, -0.09], [-0.05, -0.09], [0.0, -0.1]])  # torso-like points below the face
    ref = dataclasses.replace(ref, controls=ControlPoints.build(proj, static, cfg.vertex_stride))
    driven = FrameRenderer(models.talking, ref, cfg).driven_controls(exp)
    n = ref.controls.n_face
    assert ref.controls.ref.shape[1] == n + 3
    torch.testing.assert_close(driven[:, n:], ref.controls.ref[:, n:].expand(exp.shape[0], -1, -1))
    assert (driven[:, :n] - ref.controls.ref[:, :n]).abs().max() > 0  # the face does move


def test_known_displacement_equals_translated_camera(setup):
    """A constant control-point displacement d (y, z) samples the field at p + d: the same features as a
    camera translated by +d (same rays, same depths, frozen cached background)."""
    models, ref, _, _, _ = setup
    g = models.talking.generator
    d = torch.tensor([0.01, -0.006])
    refs = ref.controls.ref
    deformer = ControlPointDeformer(refs, refs - d)  # delta = ref - pred = d everywhere
    cam = frontal_camera(1)
    moved = cam.clone()
    moved[:, 1:3, 3] += d
    kw = dict(bg_latent=ref.bg_latent, freeze_bg=True, depths=ref.depths, bg_feat=ref.bg_feat)
    with torch.inference_mode():
        a = g.synthesis.render_nerf(ref.ws, cam, deform=deformer, **kw)
        b = g.synthesis.render_nerf(ref.ws, moved, **kw)
        c = g.synthesis.render_nerf(ref.ws, cam, **kw)
    torch.testing.assert_close(a.feat, b.feat, atol=1e-5, rtol=1e-4)
    assert (a.feat - c.feat).abs().max() > 1e-4


def test_official_deform_mode_runs_and_matches_world_mode_on_frontal_camera(setup):
    models, ref, cfg, exp, _ = setup
    off_cfg = dataclasses.replace(cfg, deform_mode="official")
    ref_off = prepare_reference(models.talking, ref.ws, ref.bg_latent, off_cfg)
    cams = frontal_camera(2)
    a = list(render_frames(models.talking, ref, exp[:2], cams, cfg, show_progress=False))
    b = list(render_frames(models.talking, ref_off, exp[:2], cams, off_cfg, show_progress=False))
    for x, y in zip(a, b):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 1


def test_mismatched_lengths_error(setup):
    models, ref, cfg, exp, cams = setup
    with pytest.raises(ValueError, match="expressions"):
        list(render_frames(models.talking, ref, exp[:3], cams, cfg, show_progress=False))


def test_auto_batch_size_scales_with_model_and_stays_in_range(setup):
    from nerffs.talking.loop import auto_batch_size, estimate_frame_bytes
    from stylenerf import Generator, get_preset

    models = setup[0]
    with torch.device("meta"):
        big = Generator(get_preset("ffhq1024"))
    assert estimate_frame_bytes(big) > 50 * estimate_frame_bytes(models.talking.generator)
    assert 1 <= auto_batch_size(models.talking.generator) <= 16
    assert auto_batch_size(Generator(get_preset("ffhq256"))) == 1  # CPU: full-size models render one at a time
    assert auto_batch_size(models.talking.generator, fraction=1e-12) == 1
