"""Synthetic BFM09 model files for tests (spec-pipeline.md 3.3 field names and shapes, tiny vertex count).

The official BFM files cannot be redistributed, so tests write a small stand-in with the same fields:
a curved grid "face" of ``rows x cols`` vertices, random bases, 68 keypoint vertices, 1-based indices and a
``point_buf`` padded with ``F + 1``. Two layouts are written: ``'deep3d'`` (``BFM_model_front.mat``) and
``'fitting'`` (``BFM09_model_info.mat``). Per spec 4 both files hold the same fields and shapes; the variants differ
only in storage dtypes (float32 / int32 vs MATLAB-style float64 everywhere) so the loader's casting is exercised.

Usage from a test in this folder: ``from synthetic_bfm import write_synthetic_bfm``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

LAYOUTS = ("deep3d", "fitting")


def grid_mesh(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """A curved grid and its triangles, counter-clockwise seen from +z (normals point toward the camera).

    Returns:
        verts [rows*cols, 3] (x right, y up, z toward the viewer, decimetres) and tri [F, 3] 0-based.
    """
    xs = np.linspace(-0.8, 0.8, cols)
    ys = np.linspace(-0.9, 0.9, rows)
    gx, gy = np.meshgrid(xs, ys)                                  # row r has y = ys[r]
    gz = 1.0 - 0.7 * (gx ** 2 + gy ** 2)
    verts = np.stack([gx, gy, gz], -1).reshape(-1, 3)
    tri = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b, d, e = r * cols + c, r * cols + c + 1, (r + 1) * cols + c, (r + 1) * cols + c + 1
            tri += [(a, b, e), (a, e, d)]                        # x then y: counter-clockwise from +z
    return verts, np.asarray(tri, dtype=np.int64)


def point_buffer(tri: np.ndarray, num_vertices: int, width: int = 8) -> np.ndarray:
    """[V, width] 1-based triangle indices around each vertex, padded with ``F + 1`` (spec 3.3)."""
    buf = np.full((num_vertices, width), tri.shape[0] + 1, dtype=np.int64)
    count = np.zeros(num_vertices, dtype=np.int64)
    for f, face in enumerate(tri):
        for v in face:
            if count[v] < width:
                buf[v, count[v]] = f + 1
                count[v] += 1
    return buf


def smooth_basis(verts: np.ndarray, num: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """[3V, num] smooth deformation modes (like PCA shape modes): Gaussian bumps of random centre, width and
    direction, amplitude ``scale`` decaying with the mode index, rows interleaved x, y, z."""
    centres = rng.uniform(-0.8, 0.8, size=(num, 2))
    widths = rng.uniform(0.25, 0.5, size=num)
    dirs = rng.normal(size=(num, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    amp = scale / (1.0 + np.arange(num) / 20.0)
    d2 = ((verts[:, None, :2] - centres[None]) ** 2).sum(-1)                 # [V, num]
    bump = np.exp(-d2 / (2 * widths ** 2)) * amp                              # [V, num]
    return (bump[:, None, :] * dirs.T[None]).reshape(-1, num)                # [3V, num]


def make_synthetic_bfm(rows: int = 18, cols: int = 18, seed: int = 0, id_scale: float = 0.05,
                       exp_scale: float = 0.05, offset: tuple[float, float, float] = (0.05, 0.1, 0.2)) -> dict:
    """The fields of a BFM front model with ``rows * cols`` vertices, shaped as in spec-pipeline.md 3.3.

    Args:
        rows, cols: grid size (V = rows * cols, at least 68 interior vertices needed).
        seed: numpy seed for bases, texture and keypoints.
        id_scale, exp_scale: std of basis entries in decimetres per unit coefficient.
        offset: added to the mean shape so recentering has something to remove.

    Returns:
        dict field name -> numpy array (1-based indices, float64 values).
    """
    rng = np.random.default_rng(seed)
    verts, tri = grid_mesh(rows, cols)
    nv = verts.shape[0]
    interior = np.asarray([r * cols + c for r in range(1, rows - 1) for c in range(1, cols - 1)])
    if interior.size < 68:
        raise ValueError(f"grid {rows}x{cols} has only {interior.size} interior vertices; need 68 keypoints")
    keypoints = rng.choice(interior, size=68, replace=False)
    meanshape = (verts + np.asarray(offset)).reshape(1, -1)
    meantex = rng.uniform(80, 200, size=(nv, 3)).reshape(1, -1)
    return {
        "meanshape": meanshape,
        "idBase": smooth_basis(verts, 80, id_scale, rng),
        "exBase": smooth_basis(verts, 64, exp_scale, rng),
        "meantex": meantex,
        "texBase": rng.normal(0.0, 5.0, size=(3 * nv, 80)),
        "tri": tri + 1,
        "point_buf": point_buffer(tri, nv),
        "keypoints": (keypoints + 1).reshape(1, 68),
        "frontmask2_idx": (np.arange(nv) + 1).reshape(-1, 1),
        "tri_mask2": tri + 1,
        "skinmask": (rng.uniform(size=(1, nv)) > 0.3).astype(np.float64),
    }


def write_synthetic_bfm(path: str | Path, layout: str = "deep3d", drop: tuple[str, ...] = (),
                        fields: dict | None = None, **overrides: np.ndarray) -> dict:
    """Write a synthetic model file and return the fields written.

    Args:
        path: destination ``.mat``.
        layout: ``'deep3d'`` (float32 values, int32 indices) or ``'fitting'`` (float64 everywhere).
        drop: field names to leave out (error-path tests).
        fields: start from these fields instead of :func:`make_synthetic_bfm` defaults.
        **overrides: replace single fields (e.g. a misshaped ``idBase``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    data = dict(fields if fields is not None else make_synthetic_bfm())
    data.update(overrides)
    for name in drop:
        data.pop(name, None)
    index_fields = {"tri", "point_buf", "keypoints", "frontmask2_idx", "tri_mask2"}
    out = {}
    for name, value in data.items():
        arr = np.asarray(value)
        if layout == "fitting":
            out[name] = arr.astype(np.float64)
        else:
            out[name] = arr.astype(np.int32 if name in index_fields else np.float32)
    savemat(str(path), out)
    return out
