"""A synthetic morphable model with the BFM09 field layout (for the smoke preset and benchmarks).

Not a face: a smooth dome mesh on a regular grid with small random identity/expression bases. It has every
field of ``BFM_model_front.mat`` with the right shapes, so all code paths (projection, landmarks, fitting,
control points) run without the licensed file. Anything produced with it is smoke output.
"""
from __future__ import annotations

import numpy as np

from nerffs.face3d.bfm import BFMData, ParametricFaceModel, point_buffer

OFFICIAL_NUM_VERTICES = 35709


def synthetic_face_model(num_vertices: int = OFFICIAL_NUM_VERTICES, seed: int = 0) -> ParametricFaceModel:
    """A dome-shaped stand-in with the BFM09 layout (not a face).

    Vertices lie on a regular grid (the first ``num_vertices`` of a square grid) lifted onto a dome about
    1 dm deep; the identity/expression/texture bases are small random values.
    """
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(num_vertices)))
    ys, xs = np.divmod(np.arange(side * side), side)
    xy = np.stack([xs, ys], -1).astype(np.float32) / (side - 1) * 1.8 - 0.9  # decimetres
    z = np.sqrt(np.clip(1.0 - (xy ** 2).sum(-1) / 1.7, 0.0, None))
    verts = np.concatenate([xy, z[:, None]], -1)[:num_vertices].astype(np.float32)
    tri = _grid_triangles(side, num_vertices)
    point_buf = point_buffer(tri, num_vertices)
    centre = np.argsort(np.abs(verts[:, :2]).sum(-1))[:2000]
    data = BFMData(
        mean_shape=verts, id_base=rng.normal(0, 1e-3, (3 * num_vertices, 80)).astype(np.float32),
        exp_base=rng.normal(0, 1e-3, (3 * num_vertices, 64)).astype(np.float32),
        mean_tex=np.full((num_vertices, 3), 128, np.float32),
        tex_base=rng.normal(0, 1.0, (3 * num_vertices, 80)).astype(np.float32),
        tri=tri, point_buf=point_buf, keypoints=rng.choice(centre, 68, replace=False).astype(np.int64))
    return ParametricFaceModel(data)


def _grid_triangles(side: int, num_vertices: int) -> np.ndarray:
    r, c = np.divmod(np.arange((side - 1) * (side - 1)), side - 1)
    a = r * side + c
    tri = np.concatenate([np.stack([a, a + side, a + 1], -1), np.stack([a + 1, a + side, a + side + 1], -1)])
    return tri[(tri < num_vertices).all(-1)].astype(np.int64)
