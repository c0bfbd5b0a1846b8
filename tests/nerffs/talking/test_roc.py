"""The region of change equals the full final pass (fixed camera), for every architecture it serves."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nerffs.models import smoke_models
from nerffs.talking.loop import FrameRenderer, LoopConfig, prepare_reference
from stylenerf import Generator, get_preset
from stylenerf.camera import camera_from_angles, frontal_camera
from stylenerf.config import tiny_config


def _reference(models, cfg, seed=0):
    g = models.talking.generator
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        ws = g.mapping(torch.randn(1, g.z_dim, generator=gen), truncation_psi=0.7)
    return prepare_reference(models.talking, ws, torch.randn(1, g.cfg.nerf.z_dim_bg, generator=gen), cfg)


def _both_paths(models, ref, cfg, exp, cams, pose=None):
    """Images of the same frames with the full pass and with the region of change."""
    out = []
    for roc in (False, True):
        # The mouth window is approximate by design (tested apart); the region of change alone is exact.
        renderer = FrameRenderer(models.talking, ref, dataclasses.replace(cfg, region_of_change=roc,
                                                                          mouth_window=False))
        with torch.inference_mode():
            out.append(torch.cat([renderer.render(exp[i:i + 1], cams[i:i + 1],
                                                  None if pose is None else pose[i:i + 1])
                                  for i in range(exp.shape[0])]))
        if roc:
            assert renderer.view is not None  # the fixed camera really took the incremental path
    return out


@pytest.mark.parametrize("resolution", [64, 128])
def test_fixed_camera_frames_equal_the_full_pass(resolution):
    models = smoke_models(seed=2, resolution=resolution, num_vertices=900)
    cfg = LoopConfig(blend_size=resolution, batch_size=1, mask_window=3)
    ref = _reference(models, cfg)
    exp = torch.randn(5, 64, generator=torch.Generator().manual_seed(1)) * 2.0
    exp[2] = ref.coeffs.exp[0]                                  # a frame with nothing moving
    cams = frontal_camera(5)
    full, roc = _both_paths(models, ref, cfg, exp, cams)
    assert float((full - roc).abs().max()) <= 1e-4
    assert float((full[1] - full[0]).abs().max()) > 1e-3        # frames differ: the test sees real changes


def test_moving_cameras_take_the_full_path():
    models = smoke_models(seed=2, resolution=64, num_vertices=900)
    cfg = LoopConfig(blend_size=64, batch_size=1, mask_window=3)
    ref = _reference(models, cfg)
    renderer = FrameRenderer(models.talking, ref, cfg)
    cams = camera_from_angles(torch.linspace(-0.2, 0.2, 3), math.pi / 2)
    with torch.inference_mode():
        for i in range(3):
            renderer.render(torch.zeros(1, 64), cams[i:i + 1])
    assert renderer.view is None


@pytest.mark.parametrize("mode,kernel", [("pixelshuffle", 1), ("nn_cat", 1), ("pixelshuffle_noblur", 3),
                                         ("nn_cat", 3)])
def test_upsampled_crops_equal_the_full_upsampler(mode, kernel):
    """Changed cells anywhere (including at the border): crop, upsample, paste = the full upsampler."""
    from nerffs.talking.roc import FixedView

    cfg = tiny_config(128)
    cfg = dataclasses.replace(cfg, upsampler=dataclasses.replace(cfg.upsampler, upsample_mode=mode,
                                                                 kernel_size=kernel))
    torch.manual_seed(0)
    syn = Generator(cfg).eval().requires_grad_(False).synthesis
    rv, f = cfg.resolution_vol, cfg.nerf.rgb_out_dim
    ws = torch.randn(1, syn.num_ws, cfg.w_dim)
    base_x, base_rgb = torch.randn(1, f, rv, rv), torch.randn(1, 3, rv, rv)
    view = FixedView.__new__(FixedView)  # only the upsampling part is exercised here
    view.synthesis, view.ws = syn, ws
    with torch.inference_mode():
        view.img0 = syn.upsample(base_x, base_rgb, ws)
        for box in ((5, 8, 6, 9), (0, 3, 12, 16), (14, 16, 0, 16)):
            x = base_x.clone()
            x[..., box[0]:box[1], box[2]:box[3]] += torch.randn(1, f, box[1] - box[0], box[3] - box[2])
            changed = (x != base_x).any(dim=1)[0]
            got = view._upsample_changed(x, base_rgb, changed)
            assert float((got - syn.upsample(x, base_rgb, ws)).abs().max()) <= 1e-4  # conv algorithms per size


@pytest.mark.slow
def test_ffhq512_architecture_frames_equal_the_full_pass():
    models = smoke_models(seed=0)
    torch.manual_seed(0)
    g = Generator(get_preset("ffhq512")).eval().requires_grad_(False)
    from nerffs.lipaint.model import LipaintNet

    models.talking.generator = g
    models.talking.lipaint = LipaintNet(w_dim=g.w_dim, hidden=g.w_dim).eval().requires_grad_(False)
    cfg = LoopConfig(batch_size=1, mask_window=3)
    ref = _reference(models, cfg)
    exp = torch.randn(3, 64, generator=torch.Generator().manual_seed(3)) * 2.0
    full, roc = _both_paths(models, ref, cfg, exp, frontal_camera(3))
    assert float((full - roc).abs().max()) <= 1e-4


def test_mouth_window_upsamples_exactly_and_tracks_the_masks():
    from nerffs.talking.mouthpass import MouthWindow, touches_inner_edge, upsample_window

    cfg = tiny_config(128)
    torch.manual_seed(0)
    syn = Generator(cfg).eval().requires_grad_(False).synthesis
    rv = cfg.resolution_vol
    x, rgb, ws = torch.randn(1, cfg.nerf.rgb_out_dim, rv, rv), torch.randn(1, 3, rv, rv), torch.randn(1, syn.num_ws, 32)
    with torch.inference_mode():
        full = syn.upsample(x, rgb, ws)
        for window in ((4, 9, 5, 12), (0, 3, 0, 16)):
            y0, y1, x0, x1 = window
            part = upsample_window(syn, x, rgb, ws, window)
            assert float((part - full[..., y0 * 8:y1 * 8, x0 * 8:x1 * 8]).abs().max()) <= 1e-4
    win = MouthWindow(frames=2, margin=1)
    mask = torch.zeros(1, 1, 64, 64)
    assert win.cells(64, 16) is None                                # nothing seen yet
    mask[..., 20:28, 24:40] = 1
    win.update(mask)
    assert win.cells(64, 16) == (4, 8, 5, 11)                      # cells 5..7 x 6..10, widened by one
    win.update(torch.zeros(1, 1, 64, 64))
    assert win.cells(64, 16) is None                                # an empty recent mask: back to full passes
    assert touches_inner_edge(torch.ones(1, 1, 4, 4), (2, 6, 3, 7), 16)
    assert not touches_inner_edge(torch.nn.functional.pad(torch.ones(1, 1, 2, 2), (1, 1, 1, 1)), (2, 6, 3, 7), 16)
    assert not touches_inner_edge(torch.nn.functional.pad(torch.ones(1, 1, 3, 3), (1, 0, 1, 0)), (0, 4, 0, 4), 4)


@pytest.mark.slow
def test_mouth_window_frames_stay_close_to_the_full_pass():
    """At the ffhq512 architecture (random networks, BiSeNet at 512) the loop with the mouth window takes it
    for most frames, and the frames stay close to the full loop's (the masks are parsed on crops)."""
    models = smoke_models(seed=0)
    torch.manual_seed(0)
    g = Generator(get_preset("ffhq256")).eval().requires_grad_(False)
    from nerffs.face3d.parsing import BiSeNet, ParsingConfig
    from nerffs.lipaint.model import LipaintNet

    models.talking.generator = g
    models.talking.lipaint = LipaintNet(w_dim=g.w_dim, hidden=g.w_dim).eval().requires_grad_(False)
    models.talking.parser = BiSeNet(ParsingConfig.barbershop16(input_size=256)).eval().requires_grad_(False)
    cfg = LoopConfig(batch_size=1, mask_window=3, blend_size=256)
    ref = _reference(models, cfg)
    exp = torch.randn(6, 64, generator=torch.Generator().manual_seed(3))
    cams = frontal_camera(6)
    out = {}
    for window in (False, True):
        renderer = FrameRenderer(models.talking, ref, dataclasses.replace(cfg, mouth_window=window))
        with torch.inference_mode():
            out[window] = torch.cat([renderer.render(exp[i:i + 1], cams[i:i + 1]) for i in range(6)])
    assert renderer.mouth_window_frames >= 1
    assert float((out[True] - out[False]).abs().mean()) < 0.02
