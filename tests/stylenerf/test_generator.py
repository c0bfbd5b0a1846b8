"""Generator structure and behaviour on tiny random models (spec-stylenerf.md sections 1.4-1.5, 4)."""
import json
from pathlib import Path

import pytest
import torch

from stylenerf import Generator, SampleDepths, get_preset
from stylenerf.camera import camera_from_angles, frontal_camera
from stylenerf.config import GeneratorConfig, NeRFConfig, UpsamplerConfig

KEYS = json.loads((Path(__file__).parents[1] / "data" / "official_keys_stylenerf.json").read_text())


def _variant_config(name: str) -> GeneratorConfig:
    res, mode, feat = name.split("-")[:3]
    return GeneratorConfig(img_resolution=int(res[4:]), nerf=NeRFConfig(rgb_out_dim=int(feat[1:])),
                           upsampler=UpsamplerConfig(upsample_mode=mode,
                                                     channel_base=65536 if name.endswith("cb2") else 32768))


@pytest.mark.parametrize("variant", sorted(KEYS))
def test_state_dict_names_and_shapes_equal_official(variant):
    with torch.device("meta"):
        g = Generator(_variant_config(variant))
    ours = {k: list(v.shape) for k, v in g.state_dict().items()}
    assert ours == KEYS[variant]


@pytest.mark.parametrize("res,num_ws", [(256, 17), (512, 19), (1024, 21)])
def test_num_ws(res, num_ws):
    assert GeneratorConfig(img_resolution=res).num_ws == num_ws


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Generator(get_preset("tiny")).eval()


def _inputs(g, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, g.z_dim, generator=gen)
    ws = g.mapping(z)
    cams = camera_from_angles(torch.linspace(-0.3, 0.3, batch), 1.5)
    bg = torch.randn(batch, g.cfg.nerf.z_dim_bg, generator=gen)
    return ws, cams, bg


def test_output_shapes_and_determinism(tiny):
    ws, cams, bg = _inputs(tiny)
    with torch.no_grad():
        a = tiny.synthesis(ws, cams, bg_latent=bg)
        b = tiny.synthesis(ws, cams, bg_latent=bg)
    cfg, rv, s = tiny.cfg, tiny.cfg.resolution_vol, tiny.cfg.renderer.n_ray_samples
    assert a.img.shape == (2, 3, cfg.img_resolution, cfg.img_resolution)
    assert a.nerf.feat.shape == (2, cfg.nerf.rgb_out_dim, rv, rv)
    assert a.nerf.img_nerf.shape == (2, 3, rv, rv)
    assert a.nerf.points_coarse.shape == (2, rv * rv * s, 3)
    assert a.nerf.depths.fine.shape == (2, rv * rv, s)
    assert torch.isfinite(a.img).all()
    torch.testing.assert_close(a.img, b.img, rtol=0, atol=0)


def test_batched_equals_per_item(tiny):
    ws, cams, bg = _inputs(tiny, batch=3)
    with torch.no_grad():
        full = tiny.synthesis(ws, cams, bg_latent=bg).img
        single = torch.cat([tiny.synthesis(ws[i:i + 1], cams[i:i + 1], bg_latent=bg[i:i + 1]).img for i in range(3)])
    torch.testing.assert_close(full, single, atol=1e-5, rtol=1e-4)


def test_zero_foreground_density_gives_pure_background(tiny):
    g = Generator(get_preset("tiny")).eval()
    g.load_state_dict(tiny.state_dict())
    with torch.no_grad():
        g.synthesis.fg_nerf.sigma_out.weight.zero_()
        g.synthesis.fg_nerf.sigma_out.bias.fill_(-1.0)  # relu(-1) = 0 everywhere
        ws, cams, bg = _inputs(g, batch=1)
        out = g.synthesis.render_nerf(ws, cams, bg_latent=bg)
    torch.testing.assert_close(out.bg_lambda, torch.ones_like(out.bg_lambda), atol=1e-6, rtol=0)
    bg_map = out.bg_feat.transpose(1, 2).reshape_as(torch.cat([out.img_nerf, out.feat], 1))
    torch.testing.assert_close(torch.cat([out.img_nerf, out.feat], 1), bg_map, atol=1e-6, rtol=0)


def test_identity_hooks_change_nothing_and_real_hooks_do(tiny):
    ws, cams, bg = _inputs(tiny, batch=1)
    with torch.no_grad():
        ref = tiny.synthesis(ws, cams, bg_latent=bg)
        same = tiny.synthesis(ws, cams, bg_latent=bg, deform=lambda p, stage: p.clone(),
                              feature_hook=lambda f: f.clone(), depths=ref.nerf.depths, bg_feat=ref.nerf.bg_feat)
        moved = tiny.synthesis(ws, cams, bg_latent=bg, deform=lambda p, stage: p + 0.02)
        hooked = tiny.synthesis(ws, cams, bg_latent=bg, feature_hook=lambda f: f * 0)
    torch.testing.assert_close(same.img, ref.img, atol=1e-6, rtol=0)
    assert (moved.img - ref.img).abs().max() > 1e-3
    assert (hooked.img - ref.img).abs().max() > 1e-3
    # The deformation is applied to the MLP query only: reported points stay where the samples are.
    torch.testing.assert_close(moved.nerf.points_coarse, ref.nerf.points_coarse)


def test_deform_sees_both_stages_with_matching_shapes(tiny):
    ws, cams, bg = _inputs(tiny, batch=1)
    seen = []
    def deform(p, stage):
        seen.append((stage, tuple(p.shape)))
        return p
    with torch.no_grad():
        tiny.synthesis(ws, cams, bg_latent=bg, deform=deform)
    n = tiny.cfg.resolution_vol ** 2 * tiny.cfg.renderer.n_ray_samples
    assert seen == [("coarse", (1, n, 3)), ("fine", (1, n, 3))]


def test_fixed_depths_are_used(tiny):
    ws, cams, bg = _inputs(tiny, batch=1)
    p = tiny.cfg.resolution_vol ** 2
    s = tiny.cfg.renderer.n_ray_samples
    fixed = SampleDepths(torch.linspace(0, 1, s).expand(1, p, s), torch.linspace(0.05, 0.95, s).expand(1, p, s))
    with torch.no_grad():
        out = tiny.synthesis(ws, cams, bg_latent=bg, depths=fixed)
    torch.testing.assert_close(out.nerf.depths.fine, fixed.fine)


def test_freeze_bg_makes_background_independent_of_camera(tiny):
    ws, _, bg = _inputs(tiny, batch=1)
    with torch.no_grad():
        a = tiny.synthesis.render_nerf(ws, camera_from_angles(0.2, 1.5), bg_latent=bg, freeze_bg=True)
        b = tiny.synthesis.render_nerf(ws, camera_from_angles(-0.2, 1.6), bg_latent=bg, freeze_bg=True)
        c = tiny.synthesis.render_nerf(ws, camera_from_angles(-0.2, 1.6), bg_latent=bg, freeze_bg=False)
    torch.testing.assert_close(a.bg_feat, b.bg_feat)
    assert (b.bg_feat - c.bg_feat).abs().max() > 1e-4


def test_stages_compose_to_forward(tiny):
    ws, cams, bg = _inputs(tiny, batch=1)
    with torch.no_grad():
        full = tiny.synthesis(ws, cams, bg_latent=bg)
        nerf = tiny.synthesis.render_nerf(ws, cams, bg_latent=bg)
        img = tiny.synthesis.upsample(nerf.feat, nerf.img_nerf, ws)
    torch.testing.assert_close(img, full.img)


def test_gradients_reach_ws_latents_and_parameters(tiny):
    g = Generator(get_preset("tiny"))
    ws, cams, bg = _inputs(g, batch=1)
    ws = ws.detach().requires_grad_(True)
    bg = bg.requires_grad_(True)
    out = g.synthesis(ws, cams, bg_latent=bg)
    out.img.square().mean().backward()
    assert ws.grad is not None and ws.grad[:, :10].abs().sum() > 0 and ws.grad[:, 10:].abs().sum() > 0
    assert bg.grad is not None and bg.grad.abs().sum() > 0
    for name in ["synthesis.fg_nerf.fc_in.weight", "synthesis.bg_nerf.fc_in.weight", "synthesis.b32.conv1.weight"]:
        assert dict(g.named_parameters())[name].grad.abs().sum() > 0, name


def test_no_graph_under_inference_mode(tiny):
    ws, cams, bg = _inputs(tiny, batch=1)
    with torch.inference_mode():
        out = tiny.synthesis(ws, cams, bg_latent=bg)
    assert not out.img.requires_grad


def test_truncation_psi_zero_gives_w_avg(tiny):
    with torch.no_grad():
        tiny.mapping.w_avg.copy_(torch.randn(tiny.w_dim))
        ws = tiny.mapping(torch.randn(3, tiny.z_dim), truncation_psi=0.0)
    torch.testing.assert_close(ws, tiny.mapping.w_avg.expand_as(ws))


def test_bad_inputs_are_rejected_clearly(tiny):
    ws, cams, _ = _inputs(tiny, batch=2)
    with pytest.raises(ValueError, match="cam2world"):
        tiny.synthesis(ws, frontal_camera(3))
    with pytest.raises(ValueError, match="ws must be"):
        tiny.synthesis(ws[:, :5], cams)
    with pytest.raises(ValueError, match="bg_latent"):
        tiny.synthesis(ws, cams, bg_latent=torch.zeros(2, 3))


@pytest.mark.parametrize("mode", ["pixelshuffle", "nn_cat", "pixelshuffle_noblur"])
def test_upsample_modes_run(mode):
    cfg = get_preset("tiny")
    cfg.upsampler = UpsamplerConfig(channel_base=1024, channel_max=32, upsample_mode=mode, kernel_size=3)
    g = Generator(cfg).eval()
    ws, cams, bg = _inputs(g, batch=1)
    with torch.no_grad():
        img = g.synthesis(ws, cams, bg_latent=bg).img
    assert img.shape == (1, 3, 64, 64) and torch.isfinite(img).all()


def test_broadcast_styles_take_the_shared_weight_path_and_match(tiny):
    ws, cams, bg = _inputs(tiny, batch=1)
    cams3 = camera_from_angles(torch.tensor([-0.2, 0.0, 0.25]), 1.5)
    with torch.no_grad():
        shared = tiny.synthesis(ws.expand(3, -1, -1), cams3, bg_latent=bg.expand(3, -1)).img
        copied = tiny.synthesis(ws.expand(3, -1, -1).contiguous(), cams3, bg_latent=bg.expand(3, -1)).img
    torch.testing.assert_close(shared, copied, atol=1e-5, rtol=1e-4)


def test_modulate_weight_computes_broadcast_styles_once():
    from stylenerf.layers import modulate_weight

    w, s = torch.randn(6, 4, 3, 3), torch.randn(1, 4)
    out = modulate_weight(w, s.expand(5, -1))
    assert out.shape == (5, 6, 4, 3, 3) and out.stride(0) == 0  # one copy, broadcast
    torch.testing.assert_close(out[3], modulate_weight(w, s)[0])
