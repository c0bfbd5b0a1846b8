"""Per-photo face geometry of the offline model set: the mediapipe mesh lifted to the StyleNeRF world, and a
small expression basis (blendshapes) built on it by rules (no learned weights).

World frame (spec-stylenerf.md 3.2): the frontal camera sits at (1, 0, 0) looking at the origin, +y is image
right, +z up, +x toward the camera; ``TAN6 = tan(6 deg)`` is the half-width of the frontal view at distance 1.
A world point p projects into the frontal image at normalised device coordinates
``ndc = (p_y, p_z) / ((1 - p_x) TAN6)`` (so ``ndc_y`` = 2 x / R - 1 for the pixel x of an R-pixel image).
Mesh vertices are placed so that the frontal camera sees each exactly where mediapipe found it; their depth
is mediapipe's relative depth (in the pixel scale of x) around ``face_depth``.

Expression channels (the first entries of the 64 expression coefficients; the rest are unused):

====  ===========  =========================================================================================
0     jaw_open     jaw rotation about a pivot behind the face (chin and lower lip down and back)
1     lip_part     inner lips apart without the jaw (lens-shaped: zero at the corners)
2     lip_round    corners toward the mouth centre, lips forward (oo, w)
3     lip_spread   corners outward and a little up (ee)
4     lip_press    lips pressed into each other (p, b, m)
5     lip_tuck     lower lip up and back under the upper teeth (f, v)
6     blink        upper eyelids down onto the lower ones
====  ===========  =========================================================================================

The basis is linear and relative to the photo: the photo's own mouth opening is expressed as a reference
expression ``e0`` (jaw_open, lip_part), so expression 0 is a closed, relaxed mouth and ``e0`` is the photo.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nerffs.offline.mesh import Chain, MeshTopology

TAN6 = math.tan(math.radians(6.0))
EXP_CHANNELS = ("jaw_open", "lip_part", "lip_round", "lip_spread", "lip_press", "lip_tuck", "blink")
NUM_CHANNELS = len(EXP_CHANNELS)


@dataclass(frozen=True)
class GeometryConfig:
    """Placement of the mesh in the world and the amplitudes of the expression basis (unit coefficient)."""

    face_depth: float = -0.02
    """World x of the mean depth of the face outline."""
    depth_scale: float = 1.0
    """Multiplies mediapipe's relative depth."""
    jaw_radians: float = 0.2
    """Jaw rotation of ``jaw_open = 1``."""
    jaw_pivot_behind: float = 0.6
    """The jaw pivot lies this many face widths behind the nose tip (at the height between eyes and mouth)."""
    lip_part: float = 0.1
    """Each inner lip moves this many mouth widths away from the other at ``lip_part = 1``."""
    lip_round: float = 0.3
    """Horizontal contraction toward the mouth centre (fraction of the distance) at ``lip_round = 1``."""
    lip_spread: float = 0.2
    """Horizontal stretch away from the mouth centre at ``lip_spread = 1``."""
    lip_press: float = 0.04
    """Mouth widths each lip is pushed into the other at ``lip_press = 1``."""
    lip_tuck: float = 0.08
    """Mouth widths the lower lip moves up (and 0.75 of that back) at ``lip_tuck = 1``."""
    blink: float = 0.95
    """Fraction of the eye opening closed at ``blink = 1``."""
    closed_gap: float = 0.02
    """An inner-lip gap below this many mouth widths counts as a closed mouth (``e0 = 0``)."""


@dataclass
class PortraitMesh:
    """The mesh of one photo in world units with its expression basis.

    Attributes:
        size: side R of the aligned photo the points came from.
        points: [V, 3] mediapipe points in photo pixels (x, y down, z).
        world: [V, 3] world positions.
        basis: [K, V, 3] world displacement of a unit coefficient of each channel (``EXP_CHANNELS``).
        e0: [K] the photo's own expression (jaw_open and lip_part from its lip gap).
        topology: triangles and named contours.
    """

    size: int
    points: np.ndarray
    world: np.ndarray
    basis: np.ndarray
    e0: np.ndarray
    topology: MeshTopology

    def ndc(self, world: np.ndarray | None = None) -> np.ndarray:
        """[..., 2] frontal-view NDC (y right, z up) of world points (default: the photo's vertices)."""
        return world_to_ndc(self.world if world is None else world)

    def driven(self, exp: np.ndarray) -> np.ndarray:
        """World vertices for an expression ``exp`` [K] (absolute; ``e0`` gives the photo)."""
        return self.world + np.tensordot(np.asarray(exp, np.float64) - self.e0, self.basis, axes=1)


def world_to_ndc(p: np.ndarray) -> np.ndarray:
    """[..., 3] world -> [..., 2] frontal NDC."""
    scale = (1.0 - p[..., 0]) * TAN6
    return np.stack([p[..., 1] / scale, p[..., 2] / scale], axis=-1)


def pixels_to_world(points: np.ndarray, size: int, oval: np.ndarray, cfg: GeometryConfig) -> np.ndarray:
    """[V, 3] mediapipe pixels -> world, exact under the frontal camera."""
    ndc_y = 2.0 * points[:, 0] / size - 1.0
    ndc_z = 1.0 - 2.0 * points[:, 1] / size
    rel = (points[:, 2] - points[oval, 2].mean()) * (2.0 * TAN6 / size) * cfg.depth_scale
    x = cfg.face_depth - rel
    return np.stack([x, ndc_y * (1.0 - x) * TAN6, ndc_z * (1.0 - x) * TAN6], axis=-1)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _interp_chain(y: np.ndarray, world: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """World z of a left-to-right chain at world columns y (clamped beyond the corners)."""
    ys, zs = world[chain, 1], world[chain, 2]
    order = np.argsort(ys, kind="stable")
    return np.interp(y, ys[order], zs[order])


class _Mouth:
    """Measures of the mouth used by the lip rules."""

    def __init__(self, world: np.ndarray, topo: MeshTopology) -> None:
        outer, inner = topo.lips_outer, topo.lips_inner
        self.left, self.right = world[outer.upper[0]], world[outer.upper[-1]]
        self.width = float(abs(self.right[1] - self.left[1]))
        self.centre = world[np.concatenate([outer.upper, outer.lower])].mean(axis=0)
        y = world[:, 1]
        self.z_upper = _interp_chain(y, world, inner.upper)
        self.z_lower = _interp_chain(y, world, inner.lower)
        self.z_mid = 0.5 * (self.z_upper + self.z_lower)
        s = np.clip((y - self.left[1]) / max(self.right[1] - self.left[1], 1e-9), 0.0, 1.0)
        self.lens = np.sin(np.pi * s) ** 0.7
        upper_set = set(outer.upper[1:-1]) | set(inner.upper[1:-1])
        lower_set = set(outer.lower[1:-1]) | set(inner.lower[1:-1])
        self.upper = world[:, 2] > self.z_mid
        self.upper[list(upper_set)] = True
        self.upper[list(lower_set)] = False
        self.corners = np.array([outer.upper[0], outer.upper[-1], inner.upper[0], inner.upper[-1]])

    def near(self, world: np.ndarray, chain: np.ndarray, sigma: float) -> np.ndarray:
        """Gaussian falloff of the distance from each vertex to the nearest vertex of ``chain``."""
        d = np.linalg.norm(world[:, None, 1:] - world[None, chain, 1:], axis=-1).min(axis=1)
        return np.exp(-(d / (sigma * self.width)) ** 2)


def _jaw(world: np.ndarray, topo: MeshTopology, m: _Mouth, cfg: GeometryConfig) -> np.ndarray:
    oval = world[topo.face_oval]
    face_h = float(np.ptp(oval[:, 2]))
    eyes_z = np.mean([world[e.upper, 2].mean() for e in topo.eyes])
    nose = world[np.argmax(world[:, 0])]
    pivot = np.array([nose[0] - cfg.jaw_pivot_behind * float(np.ptp(oval[:, 1])), 0.0, 0.5 * (eyes_z + m.centre[2])])
    r = world - pivot
    below = _smoothstep((m.z_mid - world[:, 2]) / (0.15 * face_h))
    columns = 1.0 - _smoothstep((np.abs(world[:, 1] - m.centre[1]) - 0.45 * m.width) / (0.35 * m.width))
    w = np.where(m.upper, 0.0, np.maximum(below, columns * (world[:, 2] < m.z_mid + 1e-9)))
    w[m.corners] = 0.5
    return cfg.jaw_radians * w[:, None] * np.stack([r[:, 2], np.zeros(len(r)), -r[:, 0]], axis=-1)


def _lips(world: np.ndarray, topo: MeshTopology, m: _Mouth, cfg: GeometryConfig) -> dict[str, np.ndarray]:
    inner = topo.lips_inner
    near_up, near_low = m.near(world, inner.upper, 0.3), m.near(world, inner.lower, 0.3)
    side = np.where(m.upper, 1.0, -1.0)                       # +1 upper lip region, -1 lower
    near_own = np.where(m.upper, near_up, near_low)
    zeros = np.zeros(len(world))
    part = np.stack([zeros, zeros, side * cfg.lip_part * m.width * near_own * m.lens], axis=-1)
    press = np.stack([-0.5 * cfg.lip_press * m.width * near_own, zeros,
                      -side * cfg.lip_press * m.width * near_own], axis=-1)
    dy = world[:, 1] - m.centre[1]
    g = np.exp(-(np.linalg.norm(world[:, 1:] - m.centre[1:], axis=-1) / (0.8 * m.width)) ** 2)
    round_ = np.stack([0.15 * m.width * g, -cfg.lip_round * dy * g, zeros], axis=-1)
    spread = np.stack([-0.02 * m.width * g, cfg.lip_spread * dy * g,
                       0.04 * m.width * g * (dy / (0.5 * m.width)) ** 2], axis=-1)
    tuck_w = np.where(m.upper, 0.0, m.near(world, inner.lower, 0.25)) * m.lens
    tuck = np.stack([-0.75 * cfg.lip_tuck * m.width * tuck_w, zeros, cfg.lip_tuck * m.width * tuck_w], axis=-1)
    return {"lip_part": part, "lip_round": round_, "lip_spread": spread, "lip_press": press, "lip_tuck": tuck}


def _blink(world: np.ndarray, eyes: tuple[Chain, Chain], cfg: GeometryConfig) -> np.ndarray:
    out = np.zeros_like(world)
    for eye in eyes:
        y = world[:, 1]
        z_up, z_low = _interp_chain(y, world, eye.upper), _interp_chain(y, world, eye.lower)
        opening = np.clip(z_up - z_low, 0.0, None)
        lo, hi = world[eye.upper[0], 1], world[eye.upper[-1], 1]
        width = abs(hi - lo)
        inside_cols = 1.0 - _smoothstep((np.abs(y - 0.5 * (lo + hi)) - 0.4 * width) / (0.25 * width))
        height = float(opening.max()) if opening.size else 0.0
        above = world[:, 2] - z_up
        lid = np.exp(-(np.clip(above, 0.0, None) / max(0.5 * height, 1e-9)) ** 2) * (above > -1e-9)
        out[:, 2] -= cfg.blink * opening * lid * inside_cols
        out[eye.upper[[0, -1]], 2] = 0.0
    return out


def expression_basis(world: np.ndarray, topo: MeshTopology, cfg: GeometryConfig) -> np.ndarray:
    """[K, V, 3] world displacement per unit of each channel in ``EXP_CHANNELS`` order."""
    m = _Mouth(world, topo)
    lips = _lips(world, topo, m, cfg)
    parts = {"jaw_open": _jaw(world, topo, m, cfg), **lips, "blink": _blink(world, topo.eyes, cfg)}
    return np.stack([parts[name] for name in EXP_CHANNELS])


def reference_expression(world: np.ndarray, basis: np.ndarray, topo: MeshTopology,
                         cfg: GeometryConfig) -> np.ndarray:
    """``e0`` [K]: the photo's inner-lip gap, explained half by the jaw and half by parted lips."""
    m = _Mouth(world, topo)
    inner = topo.lips_inner
    ys = np.linspace(m.left[1] + 0.33 * m.width, m.left[1] + 0.67 * m.width, 9)
    gap = float(np.mean(_interp_chain(ys, world, inner.upper) - _interp_chain(ys, world, inner.lower)))
    e0 = np.zeros(len(EXP_CHANNELS))
    if gap <= cfg.closed_gap * m.width:
        return e0
    for k, name in enumerate(("jaw_open", "lip_part")):
        moved = world + basis[EXP_CHANNELS.index(name)]
        d = _interp_chain(ys, moved, inner.upper) - _interp_chain(ys, moved, inner.lower)
        per_unit = float(np.mean(d)) - gap
        if per_unit > 1e-9:
            e0[EXP_CHANNELS.index(name)] = 0.5 * gap / per_unit
    return e0


def build_mesh(points: np.ndarray, size: int, topo: MeshTopology, cfg: GeometryConfig | None = None) -> PortraitMesh:
    """The world mesh, expression basis and reference expression of one photo's mediapipe points."""
    cfg = cfg or GeometryConfig()
    world = pixels_to_world(np.asarray(points, np.float64), size, topo.face_oval, cfg)
    basis = expression_basis(world, topo, cfg)
    e0 = reference_expression(world, basis, topo, cfg)
    return PortraitMesh(size=size, points=np.asarray(points, np.float64), world=world, basis=basis, e0=e0,
                        topology=topo)
