"""The pure-PyTorch mesh rasteriser (nerffs.face3d.render) against analytic cases and finite differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nerffs.face3d.fit import FaceRenderer
from nerffs.face3d.render import MeshRenderer, MeshRendererConfig, interpolate, rasterize, screen_coords


def _to_cam(xy: list[list[float]], z: list[float], cfg: MeshRendererConfig,
            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[1, V, 3] camera-space vertices that land at continuous image coordinates ``xy`` (x right, y down) of the
    rendered image at depths ``z``: the inverse of the Deep3D projection in the module docstring."""
    s = cfg.image_size / (2 * cfg.center)
    p = torch.tensor(xy, dtype=dtype)
    depth = torch.tensor(z, dtype=dtype)
    u, v = p[:, 0] / s, 2 * cfg.center - p[:, 1] / s
    x, y = (u - cfg.center) * depth / cfg.focal, (v - cfg.center) * depth / cfg.focal
    return torch.stack([x, y, depth], -1)[None]


def _inside_reference(tri: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Literal loop: [H, W] bool of the pixel centres inside a 2D triangle, and their (l_a, l_b, l_c) from a
    2 x 2 linear solve (independent of the renderer's edge functions)."""
    a, b, c = tri
    m = np.stack([b - a, c - a], 1)                                                # p = a + m @ (l_b, l_c)
    inside = np.zeros((size, size), bool)
    lam = np.zeros((size, size, 3))
    for row in range(size):
        for col in range(size):
            lb, lc = np.linalg.solve(m, np.array([col + 0.5, row + 0.5]) - a)
            lam[row, col] = (1 - lb - lc, lb, lc)
            inside[row, col] = min(lam[row, col]) >= 0
    return inside, lam


def test_single_triangle_coverage_and_colours():
    cfg = MeshRendererConfig(image_size=24)
    corners = np.array([[2.2, 1.3], [21.7, 5.1], [6.4, 22.6]])
    verts = _to_cam(corners.tolist(), [10.0, 10.0, 10.0], cfg)                      # equal depth: affine colours
    colors = torch.eye(3, dtype=torch.float64)[None]                                 # red, green, blue corners
    rgb, mask = MeshRenderer(cfg)(verts, torch.tensor([[0, 1, 2]]), colors)
    inside, lam = _inside_reference(corners, 24)
    np.testing.assert_array_equal(mask[0, 0].numpy() > 0, inside)
    (ux, uy), (wx, wy) = corners[1] - corners[0], corners[2] - corners[0]
    area = 0.5 * abs(ux * wy - uy * wx)
    perimeter = sum(np.linalg.norm(corners[i] - corners[i - 1]) for i in range(3))
    assert abs(inside.sum() - area) < perimeter / 2                                # covered centres ~ the area
    np.testing.assert_allclose(rgb[0].permute(1, 2, 0).numpy()[inside], lam[inside], atol=1e-9)
    assert rgb[0][:, ~torch.from_numpy(inside)].abs().max() == 0                    # black background


def test_interpolation_is_perspective_correct():
    """Interpolating the camera-space position must give a point on each pixel's viewing ray."""
    cfg = MeshRendererConfig(image_size=32)
    verts = _to_cam([[1.0, 2.0], [30.0, 4.0], [12.0, 31.0]], [8.0, 12.0, 10.0], cfg)
    faces = torch.tensor([[0, 1, 2]])
    xy, inv_z = screen_coords(verts, cfg)
    face_id = rasterize(xy, inv_z, faces, 32, 32)
    point = interpolate(verts, xy, inv_z, faces, face_id)[0]                        # [H, W, 3]
    rows, cols = (face_id[0] >= 0).nonzero(as_tuple=True)
    assert rows.numel() > 100
    p = point[rows, cols]
    s = cfg.image_size / (2 * cfg.center)
    u = cfg.focal * p[:, 0] / p[:, 2] + cfg.center
    v = cfg.focal * p[:, 1] / p[:, 2] + cfg.center
    torch.testing.assert_close(s * u, cols.double() + 0.5, rtol=0, atol=1e-9)
    torch.testing.assert_close(s * (2 * cfg.center - v), rows.double() + 0.5, rtol=0, atol=1e-9)
    # screen-affine interpolation would miss the ray by a visible amount with these depths
    affine = interpolate(verts, xy, torch.ones_like(inv_z), faces, face_id)[0][rows, cols]
    assert (cfg.focal * affine[:, 0] / affine[:, 2] + cfg.center - u).abs().max() * s > 0.1


@pytest.mark.parametrize("near_first", [True, False])
def test_zbuffer_keeps_the_nearer_triangle(near_first):
    cfg = MeshRendererConfig(image_size=16)
    square = [[1.2, 1.1], [15.3, 1.4], [1.1, 14.7]]
    shifted = [[4.1, 3.2], [15.6, 3.3], [4.2, 15.7]]
    near = _to_cam(square, [9.0] * 3, cfg)
    far = _to_cam(shifted, [11.0] * 3, cfg)
    red, green = torch.tensor([1.0, 0, 0]).double(), torch.tensor([0, 1.0, 0]).double()
    parts = [(near, red), (far, green)] if near_first else [(far, green), (near, red)]
    verts = torch.cat([p[0] for p in parts], 1)
    colors = torch.cat([p[1].expand(1, 3, 3) for p in parts], 1)
    rgb, _ = MeshRenderer(cfg)(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), colors)
    in_near, _ = _inside_reference(np.array(square), 16)
    in_far, _ = _inside_reference(np.array(shifted), 16)
    assert (in_near & in_far).sum() > 20 and (in_far & ~in_near).sum() > 5
    img = rgb[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(img[in_near], np.broadcast_to([1.0, 0, 0], img[in_near].shape), atol=1e-12)
    only_far = in_far & ~in_near
    np.testing.assert_allclose(img[only_far], np.broadcast_to([0, 1.0, 0], img[only_far].shape), atol=1e-12)


def test_zbuffer_resolves_intersecting_triangles_per_pixel():
    """A tilted triangle pierces a flat one: each pixel shows whichever surface is nearer at its centre."""
    cfg = MeshRendererConfig(image_size=16)
    big = [[-8.0, -8.0], [40.0, -8.0], [-8.0, 40.0]]
    flat = _to_cam(big, [10.0, 10.0, 10.0], cfg)
    tilted = _to_cam(big, [9.0, 14.0, 9.0], cfg)                                     # depth grows with x
    verts = torch.cat([flat, tilted], 1)
    colors = torch.cat([torch.zeros(1, 3, 3), torch.ones(1, 3, 3)], 1).double()
    rgb, mask = MeshRenderer(cfg)(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), colors)
    assert mask.all()
    # on the tilted plane 1/z is affine in screen x: 1/z = 1/9 + (1/14 - 1/9) (x + 8) / 48; nearer where z < 10
    x = torch.arange(16).double() + 0.5
    tilted_nearer = 1 / 9 + (1 / 14 - 1 / 9) * (x + 8) / 48 > 1 / 10
    assert 3 < int(tilted_nearer.sum()) < 13
    torch.testing.assert_close(rgb[0, 0], tilted_nearer.double().expand(16, 16), rtol=0, atol=1e-12)


def test_rasterize_matches_a_literal_loop_on_random_triangles():
    g = torch.Generator().manual_seed(3)
    size, num = 20, 12
    xy = torch.rand(1, 3 * num, 2, generator=g, dtype=torch.float64) * 26 - 3
    inv_z = 1 / (9 + 2 * torch.rand(1, 3 * num, generator=g, dtype=torch.float64))
    faces = torch.arange(3 * num).view(num, 3)
    face_id = rasterize(xy, inv_z, faces, size, size, max_tests=64)                 # many small chunks
    best = np.full((size, size), -np.inf)
    expected = np.full((size, size), -1)
    for f in range(num):
        inside, lam = _inside_reference(xy[0, faces[f]].numpy(), size)
        depth = lam @ inv_z[0, faces[f]].numpy()
        win = inside & (depth > best)
        best[win], expected[win] = depth[win], f
    np.testing.assert_array_equal(face_id[0].numpy(), expected)


def test_no_pixel_falls_through_a_shared_edge():
    """Two triangles share an edge through a pixel centre (rounded coordinates, arbitrary direction): the centre
    must be covered by one of them. With edge functions evaluated per triangle about 3% of such centres were
    missed by both."""
    g = torch.Generator().manual_seed(0)
    n, size = 1000, 16
    centre = torch.randint(5, size - 5, (n, 2), generator=g, dtype=torch.float64) + 0.5
    angle = torch.rand(n, generator=g, dtype=torch.float64) * torch.pi
    along = torch.stack([angle.cos(), angle.sin()], -1)
    across = torch.stack([-along[:, 1], along[:, 0]], -1)
    a = centre - along * (1 + 2 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    b = centre + along * (1 + 2 * torch.rand(n, 1, generator=g, dtype=torch.float64))
    xy = torch.stack([a, b, centre + 2.5 * across, centre - 2.5 * across], 1).float()  # float32, as in a fit
    face_id = rasterize(xy, torch.ones(n, 4), torch.tensor([[0, 1, 2], [1, 0, 3]]), size, size)
    hit = face_id[torch.arange(n), centre[:, 1].long(), centre[:, 0].long()]
    assert (hit >= 0).all()


@pytest.mark.parametrize("size,u,v,z", [(224, 150.5, 163.5, 9.5), (224, 40.3, 30.2, 10.4), (112, 151.0, 163.0, 9.5),
                                         (112, 40.6, 30.2, 10.4)])
def test_projection_convention(size, u, v, z):
    """A vertex at camera (x, y, z) with u = 1015 x / z + 112, v = 1015 y / z + 112 lands in column floor(s u) and
    row floor(s (224 - v)), s = size / 224: a 0.2 px triangle around it covers that pixel's centre when the vertex
    is within 0.1 px of it, and no centre otherwise."""
    cfg = MeshRendererConfig(image_size=size)
    s = size / 224
    x, y = (u - 112) * z / 1015, (v - 112) * z / 1015
    offsets = torch.tensor([[0, 0.2, 0], [-0.17, -0.1, 0], [0.17, -0.1, 0]], dtype=torch.float64) * z / 1015 / s
    verts = torch.tensor([[x, y, z]], dtype=torch.float64) + offsets
    xy, _ = screen_coords(verts[None], cfg)
    expected_xy = torch.tensor([s * u, s * (224 - v)], dtype=torch.float64)
    torch.testing.assert_close(xy[0].mean(0), expected_xy, rtol=0, atol=1e-9)
    col, row = int(np.floor(s * u)), int(np.floor(s * (224 - v)))
    near_centre = abs(s * u - col - 0.5) < 0.1 and abs(s * (224 - v) - row - 0.5) < 0.1
    _, mask = MeshRenderer(cfg)(verts[None], torch.tensor([[0, 1, 2]]), torch.ones(1, 3, 3, dtype=torch.float64))
    assert mask[0, 0].nonzero().tolist() == ([[row, col]] if near_centre else [])


def test_batches_render_independently():
    cfg = MeshRendererConfig(image_size=16)
    a = _to_cam([[1.0, 2.0], [14.0, 3.0], [5.0, 15.0]], [9.0, 10.0, 11.0], cfg)
    b = _to_cam([[15.0, 1.0], [2.0, 8.0], [12.0, 14.0]], [10.0, 10.0, 9.0], cfg)
    ca, cb = torch.rand(1, 3, 3).double(), torch.rand(1, 3, 3).double()
    faces = torch.tensor([[0, 1, 2]])
    renderer = MeshRenderer(cfg)
    rgb, mask = renderer(torch.cat([a, b]), faces, torch.cat([ca, cb]))
    for i, (v, c) in enumerate([(a, ca), (b, cb)]):
        one_rgb, one_mask = renderer(v, faces, c)
        torch.testing.assert_close(rgb[i:i + 1], one_rgb, rtol=0, atol=0)
        torch.testing.assert_close(mask[i:i + 1], one_mask, rtol=0, atol=0)


def _tiny_mesh(cfg: MeshRendererConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two triangles sharing an edge plus one in front, with no pixel centre within 1e-3 px of an edge."""
    xy = [[1.3, 2.2], [13.6, 1.7], [2.1, 14.4], [14.7, 12.9], [6.3, 4.4], [11.8, 6.1], [8.2, 11.3]]
    verts = _to_cam(xy, [9.5, 10.2, 10.6, 9.8, 9.0, 9.1, 9.3], cfg)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2], [4, 5, 6]])
    colors = 0.2 + 0.6 * torch.rand(1, 7, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return verts, faces, colors


@pytest.mark.parametrize("antialias", [False, True])
def test_gradients_match_finite_differences(antialias):
    cfg = MeshRendererConfig(image_size=16, antialias=antialias)
    verts, faces, colors = _tiny_mesh(cfg)
    weight = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    renderer = MeshRenderer(cfg)

    def loss(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return (renderer(v, faces, c)[0] * weight).sum()

    # the pixel coverage must not change within the finite-difference step, else the check is meaningless
    xy, inv_z = screen_coords(verts, cfg)
    face_id = rasterize(xy, inv_z, faces, 16, 16)
    for delta in (1e-6, -1e-6):
        moved = screen_coords(verts + delta, cfg)
        assert torch.equal(rasterize(*moved, faces, 16, 16), face_id)
    assert torch.autograd.gradcheck(loss, (verts.clone().requires_grad_(True), colors.clone().requires_grad_(True)),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def test_silhouette_gradient_needs_antialiasing():
    """A flat-coloured triangle: only the antialiased edge tells the loss where the silhouette is."""
    def edge_grad(antialias: bool) -> torch.Tensor:
        cfg = MeshRendererConfig(image_size=16, antialias=antialias)
        verts, faces, _ = _tiny_mesh(cfg)
        verts.requires_grad_(True)
        rgb, _ = MeshRenderer(cfg)(verts, faces, torch.full((1, 7, 3), 0.5, dtype=torch.float64))
        rgb.sum().backward()
        return verts.grad

    assert edge_grad(False).abs().max() < 1e-9
    assert edge_grad(True)[0, :4, :2].abs().min() > 1.0                             # outer corners move coverage


@pytest.mark.parametrize("edge_x", [5.3, 4.8])
def test_antialiasing_gives_the_covered_fraction_at_a_straight_edge(edge_x):
    """A vertical silhouette edge at x = edge_x: the pixel column it cuts shows its covered fraction."""
    cfg = MeshRendererConfig(image_size=16, antialias=True)
    verts = _to_cam([[edge_x, -20.0], [edge_x, 40.0], [-30.0, 10.0]], [10.0] * 3, cfg)
    rgb, mask = MeshRenderer(cfg)(verts, torch.tensor([[0, 1, 2]]), torch.full((1, 3, 3), 0.8, dtype=torch.float64))
    expected = torch.zeros(16, dtype=torch.float64)
    expected[:int(edge_x)] = 0.8
    expected[int(edge_x)] = 0.8 * (edge_x - int(edge_x))
    torch.testing.assert_close(rgb[0, 1], expected.expand(16, 16), rtol=0, atol=1e-9)
    assert int(mask.sum()) == 16 * round(edge_x)                                    # the mask stays hard


def test_antialiasing_with_triangles_smaller_than_a_pixel():
    """The same straight edge at x = 5.3 drawn by a 0.3 px grid mesh: the triangles owning the boundary are seen at
    no pixel centre, yet the cut column still shows its covered fraction."""
    cfg = MeshRendererConfig(image_size=16, antialias=True)
    xs, ys = torch.linspace(-1.0, 5.3, 22, dtype=torch.float64), torch.linspace(-1.0, 17.0, 61, dtype=torch.float64)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    verts = _to_cam(torch.stack([gx, gy], -1).reshape(-1, 2).tolist(), [10.0] * gx.numel(), cfg)
    r, c = torch.meshgrid(torch.arange(60), torch.arange(21), indexing="ij")
    a = (r * 22 + c).reshape(-1)
    faces = torch.cat([torch.stack([a, a + 1, a + 23], -1), torch.stack([a, a + 23, a + 22], -1)])
    rgb, _ = MeshRenderer(cfg)(verts, faces, torch.full((1, gx.numel(), 3), 0.8, dtype=torch.float64))
    expected = torch.zeros(16, dtype=torch.float64)
    expected[:5], expected[5] = 0.8, 0.8 * 0.3
    torch.testing.assert_close(rgb[0, 1], expected.expand(16, 16), rtol=0, atol=1e-9)


def test_antialiasing_blends_over_a_farther_surface_and_skips_hidden_edges():
    """A shaded triangle (edge x = 5.3) in front of a green one whose own edge (x = 2.7) is hidden behind it: only
    column 5 changes, to 0.3 of its left neighbour over 0.7 green."""
    near = [[5.3, -20.0], [5.3, 40.0], [-30.0, 10.0]]
    far = [[2.7, -20.0], [2.7, 40.0], [40.0, 10.0]]
    colors = torch.tensor([[[1.0, 0, 0], [1.0, 0, 0], [0, 0, 1.0]] + [[0, 1.0, 0]] * 3], dtype=torch.float64)
    images = []
    for antialias in (False, True):
        cfg = MeshRendererConfig(image_size=16, antialias=antialias)
        verts = torch.cat([_to_cam(near, [9.0] * 3, cfg), _to_cam(far, [11.0] * 3, cfg)], 1)
        images.append(MeshRenderer(cfg)(verts, torch.tensor([[0, 1, 2], [3, 4, 5]]), colors)[0][0])
    hard, soft = images
    assert (hard[:, :, 4] - hard[:, :, 3]).abs().max() > 0.01                      # neighbours differ in colour
    torch.testing.assert_close(soft[:, :, 5], 0.3 * hard[:, :, 4] + 0.7 * hard[:, :, 5], rtol=0, atol=1e-9)
    others = torch.arange(16) != 5
    torch.testing.assert_close(soft[:, :, others], hard[:, :, others], rtol=0, atol=1e-12)


def test_protocol_shapes_and_errors():
    renderer = MeshRenderer(MeshRendererConfig(image_size=8))
    assert isinstance(renderer, FaceRenderer)
    verts = _to_cam([[1.0, 1.0], [7.0, 1.0], [1.0, 7.0]], [10.0] * 3, renderer.cfg).float()
    rgb, mask = renderer(verts.expand(2, -1, -1), torch.tensor([[0, 1, 2]]), torch.full((2, 3, 3), 2.0))
    assert rgb.shape == (2, 3, 8, 8) and mask.shape == (2, 1, 8, 8) and rgb.dtype == torch.float32
    assert rgb.max() == 1.0                                                         # clamped like the official
    behind = verts.clone()
    behind[0, 0, 2] = -1.0                                                          # a vertex behind the camera
    assert renderer(behind, torch.tensor([[0, 1, 2]]), torch.ones(1, 3, 3))[1].sum() == 0
    with pytest.raises(ValueError, match="faces must be a long tensor"):
        renderer(verts, torch.tensor([[0, 1, 2]], dtype=torch.int32), torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="colors must have shape"):
        renderer(verts, torch.tensor([[0, 1, 2]]), torch.ones(1, 4, 3))
