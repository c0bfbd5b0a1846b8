"""Fitting the offline model set to one photo: everything the explicit radiance field and the face model need.

``fit_portrait(aligned_rgb)``:

1. mediapipe face mesh (468 points) and person mask of the aligned photo;
2. the world mesh and its expression basis (:mod:`nerffs.offline.geometry`);
3. on a G x G grid over the frontal view: the depth of the visible surface (face mesh, holes filled, a bevelled
   person layer from the mask, a background plane) and, per expression channel, the dense displacement field
   of the frontal image (mesh displacement interpolated over the triangles, mouth and eye holes filled between
   their lids/lips, continued outside the face and faded out over ``motion_margin``);
4. the inner-lip contours (NDC) and their displacement per channel (the field's mouth-interior model), the
   teeth colour, and the photo itself as the texture.

The result, :class:`Portrait`, is plain arrays: it is cached per face (safetensors + JSON, see
:mod:`nerffs.offline.models`) and turned into torch modules by :mod:`nerffs.offline.field`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields

import numpy as np
from PIL import Image
from scipy import ndimage

from nerffs.errors import NoFaceError
from nerffs.offline.geometry import EXP_CHANNELS, GeometryConfig, PortraitMesh, build_mesh, world_to_ndc
from nerffs.offline.mesh import MediaPipeFace, mesh_topology
from nerffs.offline.raster import extend_outside, fill_hole, polygon_mask, rasterize

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class PortraitConfig:
    """Settings of the per-photo fit (all lengths in world units unless stated)."""

    grid: int = 128
    """Side of the depth and displacement grids over the frontal view."""
    background_depth: float = -0.07
    """World x of the background plane."""
    person_depth: float = -0.01
    """World x of the person layer (hair, neck, clothes) relative to the face outline's mean depth."""
    bevel: float = 0.3
    """Width (in face widths) over which the person layer rounds off toward the background."""
    motion_margin: float = 0.15
    """Face widths beyond the face outline over which expression motion fades out (pinned beyond)."""
    geometry: GeometryConfig = field(default_factory=GeometryConfig)


@dataclass
class Portrait:
    """One photo fitted for the offline field and face model (numpy arrays; G = ``grid``, R = photo side).

    Attributes:
        texture: [R, R, 3] uint8 aligned photo.
        texture_closed: [R, R, 3] uint8 the photo with its mouth opening filled by the mirrored lips.
        depth: [G, G] float32 world x of the visible surface along each frontal grid ray.
        motion: [K, 3, G, G] float32 per channel: displacement (d ndc_y, d ndc_z, d world x) of a unit
            coefficient at each grid point of the photo.
        mesh_points: [V, 3] mediapipe points (photo pixels); mesh_world: [V, 3]; basis: [K, V, 3]; e0: [K].
        triangles: [F, 3]; lips_upper / lips_lower: inner-lip chains, left to right (vertex indices);
            outer_upper / outer_lower: outer lip chains; face_oval: [O] outline loop.
        teeth_rgb: [3] float32 in [0, 1]; face_width: outline width in NDC units.
    """

    texture: np.ndarray
    texture_closed: np.ndarray
    depth: np.ndarray
    motion: np.ndarray
    mesh_points: np.ndarray
    mesh_world: np.ndarray
    basis: np.ndarray
    e0: np.ndarray
    triangles: np.ndarray
    lips_upper: np.ndarray
    lips_lower: np.ndarray
    outer_upper: np.ndarray
    outer_lower: np.ndarray
    face_oval: np.ndarray
    teeth_rgb: np.ndarray
    face_width: float

    @property
    def size(self) -> int:
        return int(self.texture.shape[0])

    def ndc(self) -> np.ndarray:
        """[V, 2] frontal NDC of the photo's vertices."""
        return world_to_ndc(self.mesh_world)

    def chain_motion(self, chain: np.ndarray) -> np.ndarray:
        """[K, n, 2] NDC displacement of a unit coefficient at the vertices of ``chain``."""
        base = world_to_ndc(self.mesh_world[chain])
        return np.stack([world_to_ndc(self.mesh_world[chain] + b[chain]) - base for b in self.basis])

    def arrays(self) -> dict[str, np.ndarray]:
        """Every field as an array (for caching)."""
        out = {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}
        out["face_width"] = np.asarray([self.face_width], np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "Portrait":
        names = {f.name for f in fields(cls)}
        missing = names - set(arrays)
        if missing:
            raise ValueError(f"portrait entry lacks {sorted(missing)}")
        values = {k: np.asarray(arrays[k]) for k in names}
        values["face_width"] = float(np.asarray(arrays["face_width"]).reshape(-1)[0])
        return cls(**values)


def _grid_points(points_px: np.ndarray, size: int, grid: int) -> np.ndarray:
    return points_px[:, :2] * (grid / size)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _holes(mesh: PortraitMesh) -> list[tuple[np.ndarray, np.ndarray]]:
    topo = mesh.topology
    return [(c.upper, c.lower) for c in topo.holes]


def _raster_with_holes(mesh: PortraitMesh, gp: np.ndarray, values: np.ndarray, grid: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    img, covered = rasterize(gp, mesh.topology.triangles, values, mesh.world[:, 0], (grid, grid))
    for upper, lower in _holes(mesh):
        fill_hole(img, covered, gp[upper], gp[lower], values[upper], values[lower])
    return img, covered


def _depth_image(mesh: PortraitMesh, gp: np.ndarray, person: np.ndarray, cfg: PortraitConfig,
                 face_width_px: float) -> np.ndarray:
    g = cfg.grid
    face, covered = _raster_with_holes(mesh, gp, mesh.world[:, :1], g)
    face = extend_outside(face, covered, margin=1e9)[..., 0]  # nearest face depth everywhere (no fade)
    outline = float(mesh.world[mesh.topology.face_oval, 0].mean())
    plateau = outline + cfg.person_depth
    body = person | ndimage.binary_dilation(covered, iterations=2)
    dist = ndimage.distance_transform_edt(body)
    bevel = np.clip(dist / max(cfg.bevel * face_width_px, 1e-6), 0.0, 1.0)
    layer = cfg.background_depth + (plateau - cfg.background_depth) * np.sqrt(1.0 - (1.0 - bevel) ** 2)
    inside = ndimage.gaussian_filter(covered.astype(np.float64), 1.0)
    depth = inside * face + (1.0 - inside) * np.minimum(layer, face)
    return ndimage.gaussian_filter(depth, 0.6).astype(np.float32)


def _motion_images(mesh: PortraitMesh, gp: np.ndarray, cfg: PortraitConfig, face_width_px: float) -> np.ndarray:
    ndc = world_to_ndc(mesh.world)
    per_vertex = []
    for b in mesh.basis:
        d_ndc = world_to_ndc(mesh.world + b) - ndc
        per_vertex.append(np.concatenate([d_ndc, b[:, :1]], axis=1))
    values = np.concatenate(per_vertex, axis=1)                        # [V, 3K]
    img, covered = _raster_with_holes(mesh, gp, values, cfg.grid)
    img = extend_outside(img, covered, margin=cfg.motion_margin * face_width_px)
    k = len(mesh.basis)
    return img.reshape(cfg.grid, cfg.grid, k, 3).transpose(2, 3, 0, 1).astype(np.float32)


def _teeth_colour(image: np.ndarray, mesh: PortraitMesh) -> np.ndarray:
    """Mean of the brightest pixels inside the photo's mouth opening, or an off-white default."""
    topo = mesh.topology
    poly = np.concatenate([mesh.points[topo.lips_inner.upper, :2], mesh.points[topo.lips_inner.lower[::-1], :2]])
    inside = polygon_mask(poly, image.shape[:2])
    default = np.array([0.86, 0.83, 0.77], np.float32)
    if inside.sum() < 20:
        return default
    px = image[inside].astype(np.float32) / 255.0
    bright = px[px.mean(axis=1) >= np.quantile(px.mean(axis=1), 0.7)]
    return bright.mean(axis=0).astype(np.float32) if bright.mean() > 0.45 else default


def close_mouth(image: np.ndarray, mesh: PortraitMesh) -> np.ndarray:
    """The photo with the inner-lip opening filled: each column's upper half mirrors the upper lip, the lower
    half the lower lip, with a slightly darker seam where they meet."""
    topo = mesh.topology
    out = image.copy()
    upper, lower = mesh.points[topo.lips_inner.upper, :2], mesh.points[topo.lips_inner.lower, :2]
    h = image.shape[0]
    x0, x1 = int(np.floor(upper[:, 0].min())), int(np.ceil(upper[:, 0].max()))
    for x in range(max(x0, 0), min(x1 + 1, image.shape[1])):
        top = float(np.interp(x + 0.5, upper[:, 0], upper[:, 1])) - 1.0
        bottom = float(np.interp(x + 0.5, lower[:, 0], lower[:, 1])) + 1.0
        if bottom - top < 1.0:
            continue
        mid = 0.5 * (top + bottom)
        for y in range(max(int(np.floor(top)), 0), min(int(np.ceil(bottom)) + 1, h)):
            src = 2 * top - y if y + 0.5 <= mid else 2 * bottom - y
            px = image[int(np.clip(round(src), 0, h - 1)), x].astype(np.float32)
            shade = 0.8 + 0.2 * min(1.0, abs(y + 0.5 - mid))
            out[y, x] = np.clip(px * shade, 0, 255).astype(np.uint8)
    return out


def fit_portrait(image: np.ndarray, cfg: PortraitConfig | None = None, face: MediaPipeFace | None = None) -> Portrait:
    """Fit the offline model set to an aligned photo.

    Args:
        image: [R, R, 3] uint8 aligned photo (FFHQ crop, R = the generator resolution).
        cfg: fit settings.
        face: a mediapipe runner to reuse (one is created otherwise).

    Raises:
        NoFaceError: mediapipe finds no face in the aligned photo.
    """
    cfg = cfg or PortraitConfig()
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.dtype != np.uint8:
        raise ValueError(f"fit_portrait expects a square uint8 RGB image, got {image.dtype} {image.shape}")
    face = face or MediaPipeFace(static_image_mode=True)
    points = face.landmarks(image)
    if points is None:
        raise NoFaceError("the offline model set found no face mesh in the aligned photo; use a clearer, "
                          "roughly frontal portrait")
    size, g = image.shape[0], cfg.grid
    mesh = build_mesh(points, size, mesh_topology(points), cfg.geometry)
    gp = _grid_points(points, size, g)
    oval = gp[mesh.topology.face_oval]
    face_width_px = float(np.ptp(oval[:, 0]))
    person = np.asarray(Image.fromarray(face.person_mask(image)).resize((g, g), Image.Resampling.BILINEAR)) > 0.5
    topo = mesh.topology
    portrait = Portrait(
        texture=np.ascontiguousarray(image), texture_closed=close_mouth(image, mesh), depth=_depth_image(mesh, gp, person, cfg, face_width_px),
        motion=_motion_images(mesh, gp, cfg, face_width_px), mesh_points=points, mesh_world=mesh.world,
        basis=mesh.basis, e0=mesh.e0, triangles=topo.triangles, lips_upper=topo.lips_inner.upper,
        lips_lower=topo.lips_inner.lower, outer_upper=topo.lips_outer.upper, outer_lower=topo.lips_outer.lower,
        face_oval=topo.face_oval, teeth_rgb=_teeth_colour(image, mesh), face_width=2.0 * face_width_px / g)
    log.info("offline portrait: %d-point mesh, reference expression %s", len(points),
                ", ".join(f"{n}={v:.2f}" for n, v in zip(EXP_CHANNELS, mesh.e0) if v))
    return portrait
