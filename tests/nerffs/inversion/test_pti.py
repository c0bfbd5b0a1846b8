"""Pivotal tuning (spec-pipeline 6): fitting a foreign image, early stop, in-place tuning, result application."""
from __future__ import annotations

import copy

import torch

from nerffs.inversion.config import TuningConfig
from nerffs.inversion.invert import InversionResult
from nerffs.inversion.projector import w_statistics
from nerffs.inversion.pti import tune


def _pivot(generator):
    w_avg, _ = w_statistics(generator, 32, 123)
    return w_avg.repeat(1, generator.num_ws, 1), torch.randn(1, 8, generator=torch.Generator().manual_seed(0))


def test_tuning_fits_an_image_from_a_different_generator(generator, camera, target, metrics):
    """A different random generator's image is reached to low MSE (lr raised from 3e-4 to keep the test short)."""
    work = copy.deepcopy(generator)
    ws, bg = _pivot(generator)
    cfg = TuningConfig(num_steps=60, learning_rate=3e-3, lpips_threshold=0.0)
    res = tune(work, target, ws, bg, camera, cfg, metrics["alex"], show_progress=False)
    mse = res.losses["mse"]
    assert res.steps == 60 and not res.early_stopped and len(mse) == 60
    assert mse[0] > 0.05  # the generators really differ
    with torch.no_grad():
        final = (work.synthesis(ws, camera, bg_latent=bg, freeze_bg=True).img - target).square().mean().item()
    assert final < 0.01 and final < 0.05 * mse[0]
    assert res.losses["lpips"][-1] < res.losses["lpips"][0]
    assert not any(p.requires_grad for p in work.parameters())
    changed = [n for n, p in work.named_parameters() if not torch.equal(p, generator.state_dict()[n])]
    assert any(n.startswith("synthesis.b") for n in changed) and any(n.startswith("synthesis.fg_nerf") for n in changed)


def test_early_stop_at_the_lpips_threshold(generator, camera, target, metrics):
    ws, bg = _pivot(generator)
    probe = tune(copy.deepcopy(generator), target, ws, bg, camera,
                 TuningConfig(num_steps=12, learning_rate=3e-3, lpips_threshold=0.0), metrics["alex"],
                 show_progress=False).losses["lpips"]
    assert probe[-1] < probe[0]
    threshold = (probe[0] + min(probe)) / 2  # reached somewhere inside the run
    calls = []
    res = tune(copy.deepcopy(generator), target, ws, bg, camera,
               TuningConfig(num_steps=12, learning_rate=3e-3, lpips_threshold=threshold), metrics["alex"],
               show_progress=False, callback=lambda stage, step, losses: calls.append(step))
    lp = res.losses["lpips"]
    assert res.early_stopped and res.steps < 12
    assert lp[-1] <= threshold and all(v > threshold for v in lp[:-1])
    assert len(lp) == res.steps + 1 and calls == list(range(1, res.steps + 1))  # no update on the stopping step
    assert lp == probe[: len(lp)]  # identical trajectory up to the stop


def test_threshold_already_met_means_no_update(generator, camera, target, metrics):
    work = copy.deepcopy(generator)
    ws, bg = _pivot(generator)
    res = tune(work, target, ws, bg, camera, TuningConfig(num_steps=5, lpips_threshold=10.0), metrics["alex"],
               show_progress=False)
    assert res.early_stopped and res.steps == 0
    assert all(torch.equal(v, generator.state_dict()[k]) for k, v in work.state_dict().items())


def test_result_apply_returns_a_tuned_copy(generator):
    state = {k: v + 0.5 if v.is_floating_point() and k.endswith("bias") else v.clone()
             for k, v in generator.state_dict().items()}
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    res = InversionResult(ws=torch.zeros(1, generator.num_ws, generator.w_dim), bg_latent=torch.zeros(1, 8),
                          generator_state=state)
    tuned = res.apply(generator)
    assert tuned is not generator and not tuned.training
    assert not any(p.requires_grad for p in tuned.parameters())
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in state.items())
    assert all(torch.equal(generator.state_dict()[k], v) for k, v in before.items())


def test_progress_bar_shows_the_losses(generator, camera, target, metrics, capsys):
    ws, bg = _pivot(generator)
    tune(copy.deepcopy(generator), target, ws, bg, camera, TuningConfig(num_steps=2, lpips_threshold=0.0),
         metrics["alex"], show_progress=True)
    err = capsys.readouterr().err
    assert "pivotal tuning" in err and "mse=" in err and "lpips=" in err
