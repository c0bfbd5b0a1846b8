"""The offline radiance field behind the StyleNeRF generator interface."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerffs.offline.field import CODE_FLAG, ExpressionCode, FieldConfig, portrait_generator
from nerffs.offline.geometry import EXP_CHANNELS
from nerffs.offline.portrait import Portrait
from nerffs.preprocess.image import from_tensor, to_tensor
from stylenerf.camera import camera_from_angles, frontal_camera

JAW, PART = EXP_CHANNELS.index("jaw_open"), EXP_CHANNELS.index("lip_part")


@pytest.fixture(scope="module")
def gen(portrait):
    return portrait_generator(portrait)


def _render(g, cams, ws=None):
    b = cams.shape[0]
    ws = g.mapping(torch.zeros(b, g.z_dim)) if ws is None else ws
    with torch.inference_mode():
        return g.synthesis(ws, cams, bg_latent=torch.zeros(b, g.cfg.nerf.z_dim_bg), freeze_bg=True)


def _edit_styles(g, exp_values):
    exp = torch.zeros(len(exp_values), 64)
    exp[:, :len(EXP_CHANNELS)] = torch.tensor(np.asarray(exp_values), dtype=torch.float32)
    return ExpressionCode(g.w_dim).mouth_styles(g.mapping(torch.zeros(1, g.z_dim)), exp, g.synthesis.num_nerf_ws)


def test_frontal_view_reproduces_the_photo_and_is_opaque(gen, aligned):
    out = _render(gen, frontal_camera(1))
    mse = float(((out.img - to_tensor(aligned.image)) ** 2).mean())
    assert 10 * math.log10(4 / mse) > 35.0               # PSNR of the [-1, 1] images
    assert float(out.nerf.bg_lambda.max()) < 1e-6         # every ray ends in the solid
    assert out.img.shape == (1, 3, 512, 512) and out.nerf.feat.shape == (1, 5, 128, 128)


def test_yaw_turns_real_geometry(gen, portrait):
    """Under a yaw the nose tip (mediapipe point 4) moves across the face relative to its outline, in opposite
    directions for opposite yaws: the render rotates a relief, not a flat picture."""
    from nerffs.offline.mesh import MediaPipeFace

    face, offsets = MediaPipeFace(), []
    for yaw in (-0.3, 0.0, 0.3):
        img = from_tensor(_render(gen, camera_from_angles(torch.tensor([yaw]), math.pi / 2)).img)[0]
        pts = face.landmarks(img)
        assert pts is not None, f"no face at yaw {yaw}"
        offsets.append(pts[4, 0] - pts[portrait.face_oval, 0].mean())
    assert offsets[0] - offsets[1] > 8 and offsets[1] - offsets[2] > 8  # pixels at 512


def test_expression_code_at_the_photo_expression_gives_the_photo(gen, portrait):
    plain = _render(gen, frontal_camera(1)).img
    edited = _render(gen, frontal_camera(1), _edit_styles(gen, [portrait.e0])).img
    assert float((plain - edited).abs().mean()) < 0.01


def test_open_expression_paints_a_mouth_interior_and_closed_hides_the_teeth(gen, portrait):
    open_, closed = portrait.e0.copy(), np.zeros_like(portrait.e0)
    open_[JAW] += 1.0
    open_[PART] += 1.0
    out = _render(gen, frontal_camera(2), _edit_styles(gen, [open_, closed]))
    dark, closed_w = out.nerf.feat[:, 2], out.nerf.feat[:, 4]
    assert float(dark[0].sum()) > 20 and float(dark[1].sum()) < 1e-3
    assert float(closed_w[1].min()) > 0.95  # shut mouth: every ray reads the closed-mouth copy of the photo


def test_identity_styles_never_apply_an_expression(gen):
    ws = gen.mapping(torch.zeros(3, gen.z_dim))
    assert ws.shape == (3, gen.num_ws, gen.w_dim) and float(ws[..., CODE_FLAG].abs().max()) == 0


def test_portrait_round_trips_through_arrays(portrait):
    again = Portrait.from_arrays(portrait.arrays())
    for name, value in portrait.arrays().items():
        assert np.array_equal(np.asarray(getattr(again, name) if name != "face_width" else [again.face_width]),
                              value), name


def test_field_config_checks_the_code_width():
    with pytest.raises(ValueError, match="w_dim"):
        FieldConfig(w_dim=4).generator_config()
