"""The numpy rasterisation helpers behind the offline field's per-photo images."""
from __future__ import annotations

import numpy as np

from nerffs.offline.raster import extend_outside, fill_hole, polygon_mask, rasterize


def test_rasterize_interpolates_linear_values_exactly_and_covers_the_area():
    pts = np.array([[2.0, 2.0], [30.0, 4.0], [8.0, 28.0]])
    values = np.column_stack([pts[:, 0] * 2 + pts[:, 1], np.ones(3)])  # a linear function and a constant
    img, covered = rasterize(pts, np.array([[0, 1, 2]]), values, np.zeros(3), (32, 32))
    ys, xs = np.nonzero(covered)
    assert np.allclose(img[ys, xs, 0], 2 * (xs + 0.5) + (ys + 0.5))
    assert np.allclose(img[ys, xs, 1], 1.0) and np.all(img[~covered] == 0)
    (ax, ay), (bx, by) = pts[1] - pts[0], pts[2] - pts[0]
    area = 0.5 * abs(ax * by - ay * bx)
    assert abs(covered.sum() - area) < 0.08 * area


def test_rasterize_keeps_the_nearest_surface():
    square = np.array([[0.0, 0.0], [16.0, 0.0], [16.0, 16.0], [0.0, 16.0]])
    pts = np.concatenate([square, square])
    tri = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    values = np.array([[1.0]] * 4 + [[2.0]] * 4)
    for near, expected in ((0.0, 1.0), (1.0, 2.0)):
        depth = np.array([0.5] * 4 + [near] * 4)
        img, covered = rasterize(pts, tri, values, depth, (16, 16))
        assert covered.all() and np.all(img[..., 0] == expected)


def test_fill_hole_interpolates_between_the_chains_and_leaves_the_rest():
    img, covered = np.zeros((20, 20, 1)), np.zeros((20, 20), bool)
    upper = np.array([[2.0, 5.0], [18.0, 5.0]])
    lower = np.array([[2.0, 15.0], [18.0, 15.0]])
    filled = fill_hole(img, covered, upper, lower, np.array([[0.0], [0.0]]), np.array([[10.0], [10.0]]))
    assert filled[5:15, 2:18].all() and not filled[:4].any() and not filled[16:].any()
    rows = np.arange(5, 15) + 0.5
    assert np.allclose(img[5:15, 10, 0], (rows - 5) / 10 * 10)
    assert covered[filled].all()


def test_extend_outside_fades_to_zero_at_the_margin():
    img = np.zeros((1, 40, 1))
    img[0, :10, 0] = 3.0
    covered = np.zeros((1, 40), bool)
    covered[0, :10] = True
    out = extend_outside(img, covered, margin=10.0)
    assert np.all(out[0, :10, 0] == 3.0)
    assert 0 < out[0, 12, 0] < 3.0 and np.all(out[0, 20:, 0] == 0)
    assert np.all(np.diff(out[0, 9:21, 0]) <= 1e-12)  # monotone fade


def test_polygon_mask_area_and_even_odd_rule():
    square = np.array([[4.0, 4.0], [12.0, 4.0], [12.0, 12.0], [4.0, 12.0]])
    assert polygon_mask(square, (16, 16)).sum() == 64
    bowtie_inside = polygon_mask(np.array([[0.0, 0.0], [16.0, 16.0], [16.0, 0.0], [0.0, 16.0]]), (16, 16))
    assert bowtie_inside[8, 2] and not bowtie_inside[2, 8]
