"""Analytic cases of the volume renderer (spec-stylenerf.md section 4)."""
import math

import pytest
import torch

from stylenerf import volume_renderer as vr
from stylenerf.camera import Rays


def test_weights_of_opaque_slab_concentrate_at_its_front():
    t = torch.linspace(0.88, 1.12, 14).expand(1, 1, 14)
    sigma = torch.where(t >= 1.0, torch.tensor(1e4), torch.tensor(0.0))
    w, bg_lambda = vr.volume_weights(sigma, t, torch.ones(1, 1))
    first = int((t[0, 0] >= 1.0).nonzero()[0])
    assert w[0, 0, first].item() == pytest.approx(1.0, abs=1e-5)
    assert w[0, 0].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert bg_lambda.item() < 1e-6


def test_weights_match_closed_form_for_constant_density():
    t = torch.linspace(0.0, 1.0, 5).expand(2, 3, 5)
    sigma = torch.full_like(t, 2.0)
    norm = torch.full((2, 3), 1.5)
    w, bg_lambda = vr.volume_weights(sigma, t, norm)
    delta = 0.25 * 1.5
    alpha = 1 - math.exp(-2.0 * delta)
    expected = [alpha * (1 - alpha) ** k for k in range(4)] + [0.0]  # last interval has zero length
    torch.testing.assert_close(w[0, 0], torch.tensor(expected), atol=1e-6, rtol=1e-5)
    assert bg_lambda[0, 0].item() == pytest.approx((1 - alpha) ** 4, rel=1e-5)


def test_zero_density_is_fully_transparent():
    t = torch.linspace(0.88, 1.12, 14).expand(1, 4, 14)
    w, bg_lambda = vr.volume_weights(torch.zeros_like(t) - 3.0, t, torch.ones(1, 4))
    assert w.abs().max().item() == 0.0
    torch.testing.assert_close(bg_lambda, torch.ones(1, 4))


def test_sample_pdf_uniform_weights_matches_spec_endpoints():
    di = torch.linspace(0, 1, 14).expand(1, 2, 14)
    fine = vr.sample_pdf(di, torch.ones_like(di), 14)
    assert fine[0, 0, 0].item() == pytest.approx(1 / 26, abs=1e-6)
    assert fine[0, 0, -1].item() == pytest.approx(25 / 26, abs=1e-5)
    assert torch.all(fine[..., 1:] >= fine[..., :-1])


def test_sample_pdf_concentrates_where_the_weight_is():
    di = torch.linspace(0, 1, 14).expand(1, 1, 14)
    weights = torch.zeros(1, 1, 14)
    weights[..., 6] = 1.0
    fine = vr.sample_pdf(di, weights, 14)
    inside = ((fine >= 5.5 / 13) & (fine <= 6.5 / 13)).float().mean().item()
    assert inside > 0.8


def test_background_points_from_the_origin_are_the_direction():
    dirs = torch.nn.functional.normalize(torch.randn(1, 5, 3), dim=-1)
    pts = vr.depth2pts_outside(torch.zeros(1, 5, 3), dirs, torch.tensor([0.5, 1 / 3, 1 / 6, 0.0]))
    torch.testing.assert_close(pts[..., :3], dirs.unsqueeze(2).expand(1, 5, 4, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(pts[0, 0, :, 3], torch.tensor([0.5, 1 / 3, 1 / 6, 0.0]))


def test_background_point_at_inverse_radius_one_is_the_sphere_exit():
    o = torch.tensor([[[0.3, -0.2, 0.1]]])
    d = torch.nn.functional.normalize(torch.tensor([[[1.0, 0.5, -0.2]]]), dim=-1)
    pts = vr.depth2pts_outside(o, d, torch.tensor([1.0]))[0, 0, 0, :3]
    # Exit point of the unit sphere along the ray, solved directly.
    b = (o * d).sum()
    c = (o * o).sum() - 1
    t = -b + torch.sqrt(b * b - c)
    torch.testing.assert_close(pts, (o + t * d)[0, 0], atol=1e-5, rtol=0)


def test_background_weights_sum_to_one():
    rays = Rays(origins=torch.tensor([[1.0, 0, 0]]), directions=torch.randn(1, 6, 3))
    def field(p):
        return torch.rand(p.shape[0], p.shape[1], 1) * 5, torch.ones(p.shape[0], p.shape[1], 2)
    feat = vr.render_background(field, rays, 4, 0.5)
    torch.testing.assert_close(feat, torch.ones(1, 6, 2), atol=1e-5, rtol=0)


def test_merge_samples_sorts_and_keeps_pairs():
    di_a, di_b = torch.tensor([[[0.1, 0.5]]]), torch.tensor([[[0.0, 0.3, 0.9]]])
    sig_a, sig_b = di_a * 10, di_b * 10
    out_a, out_b = di_a.unsqueeze(-1) * 100, di_b.unsqueeze(-1) * 100
    di, sig, out = vr.merge_samples(di_a, sig_a, out_a, di_b, sig_b, out_b)
    torch.testing.assert_close(di, torch.tensor([[[0.0, 0.1, 0.3, 0.5, 0.9]]]))
    torch.testing.assert_close(sig, di * 10)
    torch.testing.assert_close(out[..., 0], di * 100)
