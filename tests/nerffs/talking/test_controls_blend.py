"""Control-point mapping, feature blending and the causal mask average (spec-stylenerf.md 7.3-7.4)."""
import pytest
import torch
import torch.nn.functional as F

from nerffs.errors import InputError
from nerffs.talking.blend import TemporalMaskSmoother, blend_features
from nerffs.talking.controls import ControlPoints, face_control_points, torso_control_points


def test_face_points_scale_and_stride():
    proj = torch.tensor([[[0.0, 0.0], [112.0, 112.0], [224.0, 224.0], [1.0, 2.0], [56.0, 168.0]]])
    out = face_control_points(proj, stride=2)
    torch.testing.assert_close(out, torch.tensor([[[-0.1, -0.1], [0.1, 0.1], [-0.05, 0.05]]]))


def test_torso_points_match_official_formula():
    mask = torch.zeros(512, 512, dtype=torch.bool)
    mask[500, 10] = mask[500, 20] = mask[511, 0] = True
    pts = torso_control_points(mask, stride=1)
    expected = torch.tensor([[10 / 2560 - 0.1, -(500 / 2560 - 0.1)], [20 / 2560 - 0.1, -(500 / 2560 - 0.1)],
                             [0 / 2560 - 0.1, -(511 / 2560 - 0.1)]])
    torch.testing.assert_close(pts, expected)
    assert torso_control_points(mask, stride=2).shape == (2, 2)


def test_control_points_driven_keeps_static_part():
    proj = torch.rand(1, 40, 2) * 224
    cp = ControlPoints.build(proj, torch.rand(5, 2), stride=4)
    driven = cp.driven(torch.rand(3, 40, 2) * 224)
    assert driven.shape == (3, 15, 2)
    torch.testing.assert_close(driven[:, 10:], cp.ref[:, 10:].expand(3, -1, -1))
    with pytest.raises(ValueError, match="face points"):
        cp.driven(torch.rand(1, 80, 2))


def test_all_ones_mask_is_no_blending_and_zeros_take_lipaint():
    x, lip = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(blend_features(x, lip, torch.ones(2, 1, 16, 16), size=32), x)
    full = blend_features(x, lip, torch.zeros(2, 1, 16, 16), size=32)
    # Closed mask everywhere: x + R(R(lip) - R(x)), a smoothed copy of the LipaintNet features.
    assert (full - lip).abs().mean() < (x - lip).abs().mean() * 0.5


def test_official_formula_matches_spec_expression():
    x, lip, keep = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8), torch.rand(1, 1, 16, 16)
    up = lambda t: F.interpolate(t, size=(32, 32), mode="bicubic", align_corners=False)  # noqa: E731
    m = up(keep)
    expected = F.interpolate(m * up(x) + (1 - m) * up(lip), size=(8, 8), mode="bicubic", align_corners=False)
    torch.testing.assert_close(blend_features(x, lip, keep, size=32, official=True), expected)


def test_blend_shape_errors():
    with pytest.raises(ValueError, match="blend shapes"):
        blend_features(torch.zeros(1, 3, 8, 8), torch.zeros(1, 4, 8, 8), torch.ones(1, 1, 8, 8))


@pytest.mark.parametrize("seed", range(6))
def test_cropped_blend_equals_full_computation(seed):
    g = torch.Generator().manual_seed(seed)
    x, lip = torch.randn(2, 5, 32, 32, generator=g, dtype=torch.float64), \
        torch.randn(2, 5, 32, 32, generator=g, dtype=torch.float64)
    keep = torch.ones(2, 1, 64, 64, dtype=torch.float64)
    y0, x0 = int(torch.randint(0, 50, (1,), generator=g)), int(torch.randint(0, 50, (1,), generator=g))
    keep[0, 0, y0:y0 + 12, x0:x0 + 9] = 0.0  # a mouth-like hole, anywhere (edges included)
    keep[1, 0, 60:, :3] = 0.3
    up = lambda t: F.interpolate(t, size=(512, 512), mode="bicubic", align_corners=False)  # noqa: E731
    m = up(keep).clamp(0, 1)
    full = x + F.interpolate((1 - m) * up(lip - x), size=(32, 32), mode="bicubic", align_corners=False)
    torch.testing.assert_close(blend_features(x, lip, keep, size=512), full, atol=1e-10, rtol=0)


def test_mask_open_only_where_no_tap_reads_leaves_the_features_alone():
    """A mouth mask open only on the outermost S-pixel column: no bicubic tap reads it, nothing is blended
    (it used to crash on an empty crop)."""
    x, x_lip = torch.randn(1, 4, 32, 32), torch.randn(1, 4, 32, 32)
    keep = torch.ones(1, 1, 512, 512)
    keep[..., :, 0] = 0.0
    out = blend_features(x, x_lip, keep, 512, "bicubic")
    assert torch.equal(out, x)
    full = x + torch.nn.functional.interpolate((1 - keep) * torch.nn.functional.interpolate(
        x_lip - x, size=(512, 512), mode="bicubic", align_corners=False), size=(32, 32), mode="bicubic",
        align_corners=False)
    assert torch.allclose(out, full, atol=1e-6)


def test_smoother_window_mean_and_causality():
    values = [float(v) for v in range(1, 11)]
    frames = [torch.full((1, 1, 2, 2), v) for v in values]
    smoother = TemporalMaskSmoother(n=7)
    outs = [smoother(f)[0, 0, 0, 0].item() for f in frames]
    expected = [sum(values[max(0, t - 6): t + 1]) / len(values[max(0, t - 6): t + 1]) for t in range(10)]
    assert outs == pytest.approx(expected)
    assert len(smoother) == 7
    # Causal: changing later frames never changes earlier outputs.
    other = TemporalMaskSmoother(n=7)
    outs2 = [other(f if t < 5 else -f)[0, 0, 0, 0].item() for t, f in enumerate(frames)]
    assert outs2[:5] == pytest.approx(outs[:5]) and outs2[5] != pytest.approx(outs[5])
    smoother.reset()
    assert len(smoother) == 0
    torch.testing.assert_close(smoother(frames[9]), frames[9])
    with pytest.raises(InputError, match="reset"):
        smoother(torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError):
        TemporalMaskSmoother(n=0)
