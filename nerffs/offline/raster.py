"""Small numpy rasterisation helpers for building per-photo images of the offline field (done once per face).

Grid convention: an ``[H, W]`` image whose pixel ``(row, col)`` has its centre at continuous coordinates
``(col + 0.5, row + 0.5)``; point coordinates are continuous ``(x, y)`` with y down, the convention of
mediapipe points scaled to the grid and of ``grid_sample(align_corners=False)``.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def rasterize(points: np.ndarray, triangles: np.ndarray, values: np.ndarray, depth: np.ndarray,
              size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric interpolation of per-vertex values over triangles, nearest surface wins (z-buffer).

    Args:
        points: [V, 2] continuous (x, y) grid coordinates.
        triangles: [F, 3] vertex indices.
        values: [V, C] per-vertex values.
        depth: [V] per-vertex depth, larger = closer to the viewer.
        size: (H, W).

    Returns:
        image [H, W, C] float64 (0 where uncovered) and coverage [H, W] bool.
    """
    h, w = size
    vals = np.asarray(values, dtype=np.float64).reshape(len(points), -1)
    out = np.zeros((h, w, vals.shape[1]))
    zbuf = np.full((h, w), -np.inf)
    p = np.asarray(points, dtype=np.float64)
    for a, b, c in np.asarray(triangles):
        pa, pb, pc = p[a], p[b], p[c]
        x0, x1 = int(np.floor(min(pa[0], pb[0], pc[0]) - 0.5)), int(np.ceil(max(pa[0], pb[0], pc[0]) - 0.5))
        y0, y1 = int(np.floor(min(pa[1], pb[1], pc[1]) - 0.5)), int(np.ceil(max(pa[1], pb[1], pc[1]) - 0.5))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x0 > x1 or y0 > y1:
            continue
        det = (pb[1] - pc[1]) * (pa[0] - pc[0]) + (pc[0] - pb[0]) * (pa[1] - pc[1])
        if abs(det) < 1e-12:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1] + 0.5
        l0 = ((pb[1] - pc[1]) * (xs - pc[0]) + (pc[0] - pb[0]) * (ys - pc[1])) / det
        l1 = ((pc[1] - pa[1]) * (xs - pc[0]) + (pa[0] - pc[0]) * (ys - pc[1])) / det
        l2 = 1.0 - l0 - l1
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        if not inside.any():
            continue
        z = l0 * depth[a] + l1 * depth[b] + l2 * depth[c]
        win = inside & (z > zbuf[y0:y1 + 1, x0:x1 + 1])
        if not win.any():
            continue
        zbuf[y0:y1 + 1, x0:x1 + 1][win] = z[win]
        interp = l0[..., None] * vals[a] + l1[..., None] * vals[b] + l2[..., None] * vals[c]
        out[y0:y1 + 1, x0:x1 + 1][win] = interp[win]
    return out, np.isfinite(zbuf)


def _chain_at(x: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """Linear interpolation of a left-to-right chain's rows (or values) at columns ``x`` (clamped at the ends).
    chain: [n, 1 + C] rows of (x, v...). Returns [len(x), C]."""
    order = np.argsort(chain[:, 0], kind="stable")
    xs = chain[order, 0]
    return np.stack([np.interp(x, xs, chain[order, k]) for k in range(1, chain.shape[1])], axis=-1)


def fill_hole(image: np.ndarray, covered: np.ndarray, upper: np.ndarray, lower: np.ndarray,
              upper_values: np.ndarray, lower_values: np.ndarray) -> np.ndarray:
    """Fill the pixels between two chains (a mesh hole: mouth or eye opening) by vertical interpolation.

    Args:
        image: [H, W, C] written in place where the hole is and ``covered`` is False.
        covered: [H, W] bool, updated in place.
        upper, lower: [n, 2] / [m, 2] continuous (x, y) points of the upper and lower boundary chains.
        upper_values, lower_values: [n, C] / [m, C] values on the chains.

    Returns:
        [H, W] bool mask of the filled pixels.
    """
    h, w = covered.shape
    filled = np.zeros_like(covered)
    x_lo, x_hi = max(upper[:, 0].min(), lower[:, 0].min()), min(upper[:, 0].max(), lower[:, 0].max())
    cols = np.arange(max(0, int(np.floor(x_lo))), min(w, int(np.ceil(x_hi)) + 1))
    if cols.size == 0:
        return filled
    xc = cols + 0.5
    top = _chain_at(xc, np.column_stack([upper[:, 0], upper[:, 1], upper_values]))
    bottom = _chain_at(xc, np.column_stack([lower[:, 0], lower[:, 1], lower_values]))
    rows = np.arange(h)[:, None] + 0.5
    span = bottom[:, 0] - top[:, 0]
    t = (rows - top[:, 0]) / np.where(span > 1e-9, span, 1.0)
    inside = (t >= 0) & (t <= 1) & (span > 1e-9) & ~covered[:, cols]
    t = np.clip(t, 0.0, 1.0)[..., None]
    vals = (1 - t) * top[None, :, 1:] + t * bottom[None, :, 1:]
    sub = image[:, cols]
    sub[inside] = vals[inside]
    image[:, cols] = sub
    filled[:, cols] = inside
    covered |= filled
    return filled


def extend_outside(image: np.ndarray, covered: np.ndarray, margin: float) -> np.ndarray:
    """Continue covered values outward, fading to 0 at ``margin`` grid pixels (smoothstep).

    Returns a new [H, W, C] image: covered pixels unchanged; others take their nearest covered pixel's value
    times ``1 - smoothstep(distance / margin)``.
    """
    if covered.all():
        return image.copy()
    dist, (ri, ci) = ndimage.distance_transform_edt(~covered, return_indices=True)
    t = np.clip(dist / max(margin, 1e-9), 0.0, 1.0)
    fade = 1.0 - t * t * (3.0 - 2.0 * t)
    out = image[ri, ci] * fade[..., None]
    out[covered] = image[covered]
    return out


def polygon_mask(polygon: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] bool: pixel centres inside a closed polygon ([n, 2] continuous (x, y)), even-odd rule."""
    h, w = size
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.zeros((h, w), dtype=bool)
    px, py = polygon[:, 0], polygon[:, 1]
    qx, qy = np.roll(px, 1), np.roll(py, 1)
    for x1, y1, x2, y2 in zip(px, py, qx, qy):
        crosses = (y1 > ys) != (y2 > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (ys - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (xs < x_at)
    return inside
