"""Ray deformation invariants (paper Eq. 7)."""
import pytest
import torch

from nerffs.deform.rays import ControlPointDeformer, match_reference_samples
from stylenerf import Generator, get_preset
from stylenerf.camera import camera_from_angles, frontal_camera


def _control_points(seed=0, v=40):
    g = torch.Generator().manual_seed(seed)
    ref = (torch.rand(1, v, 2, generator=g) - 0.5) * 0.2
    pred = ref + 0.01 * torch.randn(1, v, 2, generator=g)
    return ref, pred


def test_zero_displacement_is_identity():
    ref, _ = _control_points()
    pts = torch.randn(2, 100, 3) * 0.1
    out = ControlPointDeformer(ref, ref.clone())(pts, "coarse")
    torch.testing.assert_close(out, pts, rtol=0, atol=0)


def test_displacement_is_that_of_the_nearest_control_point_and_x_is_kept():
    ref = torch.tensor([[[0.0, 0.0], [0.1, 0.1]]])
    pred = torch.tensor([[[0.01, -0.02], [0.1, 0.1]]])
    pts = torch.tensor([[[0.5, 0.01, 0.0], [-0.3, 0.09, 0.12]]])
    out = ControlPointDeformer(ref, pred)(pts, "fine")
    torch.testing.assert_close(out, torch.tensor([[[0.5, 0.0, 0.02], [-0.3, 0.09, 0.12]]]))
    torch.testing.assert_close(pts, torch.tensor([[[0.5, 0.01, 0.0], [-0.3, 0.09, 0.12]]]))  # not in place


def test_world_mode_same_point_same_displacement_from_any_camera():
    ref, pred = _control_points()
    deformer = ControlPointDeformer(ref, pred)
    point = torch.tensor([[[0.02, 0.03, -0.01]]])
    a = deformer(torch.cat([torch.randn(1, 5, 3) * 0.1, point], 1), "coarse")[:, -1]
    b = deformer(torch.cat([point, torch.randn(1, 9, 3) * 0.1], 1), "coarse")[:, 0]
    torch.testing.assert_close(a, b)


def test_official_mode_reuses_frontal_indices_and_differs_off_frontal():
    torch.manual_seed(0)
    g = Generator(get_preset("tiny")).eval()
    ws = g.mapping(torch.randn(1, g.z_dim)).detach()
    bg = torch.randn(1, g.cfg.nerf.z_dim_bg)
    ref, pred = _control_points(v=60)
    with torch.no_grad():
        front = g.synthesis.render_nerf(ws, frontal_camera(), bg_latent=bg)
        idx = match_reference_samples(ref, front.points_coarse,
                                      front.points_fine)
        official = ControlPointDeformer(ref, pred, mode="official", official_indices=idx)
        world = ControlPointDeformer(ref, pred)
        # Frontal camera: both modes agree exactly.
        torch.testing.assert_close(official(front.points_coarse, "coarse"), world(front.points_coarse, "coarse"))
        side = g.synthesis.render_nerf(ws, camera_from_angles(0.4, 1.5), bg_latent=bg)
        assert (official(side.points_coarse, "coarse") - world(side.points_coarse, "coarse")).abs().max() > 1e-4


def test_bad_configuration_errors():
    ref, pred = _control_points()
    with pytest.raises(ValueError, match="mode"):
        ControlPointDeformer(ref, pred, mode="nearest")
    with pytest.raises(ValueError, match="official_indices"):
        ControlPointDeformer(ref, pred, mode="official")
    with pytest.raises(ValueError, match=r"\[B, V, 2\]"):
        ControlPointDeformer(ref, pred[:, :5])


def test_one_reference_many_driven_sets_equals_per_item():
    ref, _ = _control_points()
    preds = torch.cat([_control_points(seed=s)[1] for s in (1, 2, 3)])
    pts = torch.randn(3, 50, 3) * 0.1
    batched = ControlPointDeformer(ref, preds)(pts, "coarse")
    for i in range(3):
        torch.testing.assert_close(batched[i:i + 1], ControlPointDeformer(ref, preds[i:i + 1])(pts[i:i + 1], "coarse"))


def test_index_cache_gives_identical_results_and_is_reused():
    ref, pred = _control_points()
    cache = {}
    pts = torch.randn(2, 60, 3) * 0.1
    cached = ControlPointDeformer(ref, pred.expand(2, -1, -1), index_cache=cache)
    plain = ControlPointDeformer(ref, pred.expand(2, -1, -1))
    torch.testing.assert_close(cached(pts, "coarse"), plain(pts, "coarse"))
    assert len(cache) == 2
    cached(pts, "coarse")
    assert len(cache) == 2  # same points: no new search
    cached(pts + 0.01, "coarse")
    assert len(cache) == 4
