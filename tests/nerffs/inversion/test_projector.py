"""W projection (spec-pipeline 6): schedules, start point, loss decrease, background latent, determinism."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerffs.inversion.common import area_downsample, render
from nerffs.inversion.config import ProjectionConfig
from nerffs.inversion.projector import learning_rate, noise_strength, project, w_statistics


def test_learning_rate_schedule_matches_the_spec():
    cfg = ProjectionConfig()
    assert learning_rate(cfg, 0.0) == 0.0  # ramp-up starts at zero
    assert learning_rate(cfg, 0.025) == pytest.approx(0.005)
    assert learning_rate(cfg, 0.05) == pytest.approx(0.01)
    assert learning_rate(cfg, 0.5) == pytest.approx(0.01)
    assert learning_rate(cfg, 0.875) == pytest.approx(0.005)  # half way down the cosine
    assert learning_rate(cfg, 0.999) < 1e-6


def test_noise_schedule_matches_the_spec():
    cfg = ProjectionConfig()
    assert noise_strength(cfg, 2.0, 0.0) == pytest.approx(2.0 * 0.05)
    assert noise_strength(cfg, 2.0, 0.375) == pytest.approx(2.0 * 0.05 * 0.25)
    assert noise_strength(cfg, 2.0, 0.75) == 0.0 and noise_strength(cfg, 2.0, 0.9) == 0.0


def test_w_statistics_use_seeded_numpy_samples(generator):
    w_avg, w_std = w_statistics(generator, 50, 123)
    z = torch.from_numpy(np.random.RandomState(123).randn(50, generator.z_dim).astype(np.float32))
    with torch.no_grad():
        w = generator.mapping(z)[:, 0]
    torch.testing.assert_close(w_avg.view(-1), w.mean(0))
    assert w_std == pytest.approx(math.sqrt((w - w.mean(0)).square().sum().item() / 50), rel=1e-5)
    assert w_avg.shape == (1, 1, generator.w_dim)


def _loss(generator, metric, ws, bg, camera, target):
    with torch.no_grad():
        img = render(generator, ws, camera, bg, True)
        return metric(area_downsample(img, 256), area_downsample(target, 256)).item()


def test_projection_lowers_the_loss_and_leaves_the_generator_alone(generator, camera, target, metrics):
    # LPIPS-alex keeps this test fast on CPU; the VGG path is exercised by the next tests.
    cfg = ProjectionConfig(num_steps=30, w_avg_samples=64, initial_learning_rate=0.05, lpips_net="alex")
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    flags = [p.requires_grad for p in generator.parameters()]
    rng = torch.Generator().manual_seed(0)
    w_avg, _ = w_statistics(generator, cfg.w_avg_samples, cfg.w_avg_seed)
    bg0 = torch.randn(1, 8, generator=torch.Generator().manual_seed(0))  # the start the projector draws
    res = project(generator, target, camera, cfg, metrics["alex"], rng=rng, show_progress=False)
    start = _loss(generator, metrics["alex"], w_avg.repeat(1, generator.num_ws, 1), bg0, camera, target)
    end = _loss(generator, metrics["alex"], res.ws, res.bg_latent, camera, target)
    assert end < 0.8 * start
    assert res.ws.shape == (1, generator.num_ws, generator.w_dim) and res.bg_latent.shape == (1, 8)
    assert torch.equal(res.ws, res.ws[:, :1].expand_as(res.ws))  # one w repeated (W, not W+)
    assert not torch.equal(res.bg_latent, bg0)  # background latent optimised jointly
    assert len(res.losses["lpips"]) == 30
    assert all(torch.equal(before[k], v) for k, v in generator.state_dict().items())
    assert [p.requires_grad for p in generator.parameters()] == flags


def test_projection_is_deterministic_and_can_keep_the_background(generator, camera, target, metrics):
    cfg = ProjectionConfig(num_steps=3, w_avg_samples=16, optimize_bg=False, lpips_resolution=32)
    runs = [project(generator, target, camera, cfg, metrics["vgg"], rng=torch.Generator().manual_seed(s),
                    show_progress=False) for s in (7, 7, 8)]
    assert torch.equal(runs[0].ws, runs[1].ws) and torch.equal(runs[0].bg_latent, runs[1].bg_latent)
    assert not torch.equal(runs[0].bg_latent, runs[2].bg_latent)
    torch.testing.assert_close(runs[0].bg_latent, torch.randn(1, 8, generator=torch.Generator().manual_seed(7)))


def test_projection_uses_the_camera(generator, target, metrics):
    cfg = ProjectionConfig(num_steps=2, w_avg_samples=16, lpips_net="alex")
    from stylenerf.camera import camera_from_angles

    a = project(generator, target, camera_from_angles(0.0, 1.57), cfg, metrics["alex"], show_progress=False)
    b = project(generator, target, camera_from_angles(0.3, 1.57), cfg, metrics["alex"], show_progress=False)
    assert a.losses["lpips"] != b.losses["lpips"]
