"""BFM09 parametric face model with the Deep3D / 3DMM-Fitting conventions.

Implements spec-pipeline.md:

* 3.3 -- the model file ``BFM_model_front.mat`` (Deep3DFaceRecon) and its twin ``BFM09_model_info.mat``
  (3DMM-Fitting-Pytorch, same fields and shapes, spec 4), read with ``scipy.io.loadmat``;
* 3.4 -- shape / texture from the 257-coefficient layout (``nerffs.face3d.coeffs``), rotation
  ``R = Rz @ Ry @ Rx`` applied to row vectors (``verts @ R^T``), camera ``z_cam = 10 - z``, pinhole projection with
  focal 1015 and centre 112 in a 224 image whose v axis points **up**, 68 landmarks picked from the keypoint vertices,
  vertex normals and second-order SH lighting;
* 3.5 -- ``face_proj`` (every vertex projected, y-up pixels) is what the rest of the pipeline consumes.

Units: model space is in "decimetres" (BFM millimetres / 1e5 scaled bases), texture is RGB in [0, 1].
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nerffs.errors import CheckpointError, WeightsMissingError
from nerffs.face3d.coeffs import FaceCoeffs

log = logging.getLogger(__name__)

NUM_KEYPOINTS = 68

# Fields every model file must hold (spec 3.3); the training-only masks are read when present.
_REQUIRED_FIELDS = ("meanshape", "idBase", "exBase", "meantex", "texBase", "tri", "point_buf", "keypoints")


@dataclass
class BFMData:
    """Contents of a BFM09 front-face model file, converted to 0-based numpy arrays (spec-pipeline.md 3.3).

    Attributes:
        mean_shape: [V, 3] float32 mean shape (not recentred), decimetres.
        id_base: [3V, 80] float32 identity basis (rows interleaved x, y, z per vertex).
        exp_base: [3V, 64] float32 expression basis.
        mean_tex: [V, 3] float32 mean albedo, RGB 0..255.
        tex_base: [3V, 80] float32 albedo basis, 0..255 units.
        tri: [F, 3] int64 triangle vertex indices, 0-based.
        point_buf: [V, 8] int64 triangle indices around each vertex, 0-based; the padding value is F.
        keypoints: [68] int64 vertex indices of the 68 landmarks, 0-based.
        skinmask: [V] float32 0/1 skin region (reflectance prior), or None when the file lacks it.
    """

    mean_shape: np.ndarray
    id_base: np.ndarray
    exp_base: np.ndarray
    mean_tex: np.ndarray
    tex_base: np.ndarray
    tri: np.ndarray
    point_buf: np.ndarray
    keypoints: np.ndarray
    skinmask: np.ndarray | None = None

    @property
    def num_vertices(self) -> int:
        return int(self.mean_shape.shape[0])


def load_bfm_front(path: str | os.PathLike) -> BFMData:
    """Load Deep3DFaceRecon's ``BFM/BFM_model_front.mat`` (spec-pipeline.md 3.3).

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: the file is not a readable .mat, lacks a field, or a field has the wrong shape.
    """
    hint = ("build it with Deep3DFaceRecon's util/load_mats.transferBFM09 from 01_MorphableModel.mat + Exp_Pca.bin "
            "(BFM09 licence required) and place it there")
    return _load_bfm_mat(path, "BFM_model_front.mat", hint)


def load_bfm09_model_info(path: str | os.PathLike) -> BFMData:
    """Load 3DMM-Fitting-Pytorch's ``BFM/BFM09_model_info.mat`` (spec-pipeline.md 4; same fields as 3.3).

    Raises:
        WeightsMissingError: the file does not exist.
        CheckpointError: the file is not a readable .mat, lacks a field, or a field has the wrong shape.
    """
    hint = ("build it with 3DMM-Fitting-Pytorch's convert_bfm09_data.py (BFM09 licence required) "
            "and place it there")
    return _load_bfm_mat(path, "BFM09_model_info.mat", hint)


def _load_bfm_mat(path: str | os.PathLike, what: str, hint: str) -> BFMData:
    p = Path(path)
    if not p.is_file():
        raise WeightsMissingError(f"{what} not found at {p}; {hint}")
    try:
        from scipy.io import loadmat

        mat = loadmat(str(p))
    except Exception as exc:  # truncated / not a .mat / HDF5 (v7.3) file
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise CheckpointError(f"{what} at {p} is not a readable MATLAB v5 file ({type(exc).__name__}: {first}); "
                              "re-create or re-download it") from exc
    for name in _REQUIRED_FIELDS:
        if name not in mat:
            raise CheckpointError(f"{what} at {p} has no field {name!r}; is it the right file? ({hint})")
    data = _bfm_from_fields(mat, f"{what} at {p}")
    log.info("loaded %s from %s: %d vertices, %d triangles", what, p, data.num_vertices, data.tri.shape[0])
    return data


def _as_index(values: np.ndarray, name: str, upper: int, where: str) -> np.ndarray:
    """1-based MATLAB indices (any numeric dtype) -> 0-based int64, checked against ``1..upper``."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.number) or arr.size == 0:
        raise CheckpointError(f"{where}: field {name!r} is not a numeric index array; re-create the file")
    idx = np.rint(arr.astype(np.float64)).astype(np.int64)
    if idx.min() < 1 or idx.max() > upper:
        raise CheckpointError(f"{where}: field {name!r} has indices outside 1..{upper}; the file is inconsistent")
    return idx - 1


def _check_shape(arr: np.ndarray, name: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    if tuple(arr.shape) != shape:
        raise CheckpointError(f"{where}: field {name!r} has shape {tuple(arr.shape)}, expected {shape}; "
                              "re-create the file")
    return arr


def _bfm_from_fields(mat: dict, where: str) -> BFMData:
    """Validate the spec 3.3 shapes and convert a loaded .mat dict to :class:`BFMData`."""
    mean = np.asarray(mat["meanshape"], dtype=np.float32)
    if mean.ndim != 2 or mean.shape[0] != 1 or mean.shape[1] % 3 != 0:
        raise CheckpointError(f"{where}: field 'meanshape' has shape {mean.shape}, expected (1, 3V); "
                              "re-create the file")
    n3 = mean.shape[1]
    nv = n3 // 3
    id_base = _check_shape(np.asarray(mat["idBase"], dtype=np.float32), "idBase", (n3, 80), where)
    exp_base = _check_shape(np.asarray(mat["exBase"], dtype=np.float32), "exBase", (n3, 64), where)
    mean_tex = _check_shape(np.asarray(mat["meantex"], dtype=np.float32), "meantex", (1, n3), where)
    tex_base = _check_shape(np.asarray(mat["texBase"], dtype=np.float32), "texBase", (n3, 80), where)
    tri_raw = np.asarray(mat["tri"])
    if tri_raw.ndim != 2 or tri_raw.shape[1] != 3:
        raise CheckpointError(f"{where}: field 'tri' has shape {tri_raw.shape}, expected (F, 3); re-create the file")
    tri = _as_index(tri_raw, "tri", nv, where)
    num_tri = tri.shape[0]
    point_buf = _as_index(_check_shape(np.asarray(mat["point_buf"]), "point_buf", (nv, 8), where),
                          "point_buf", num_tri + 1, where)
    kp_raw = np.asarray(mat["keypoints"]).reshape(-1)
    if kp_raw.size != NUM_KEYPOINTS:
        raise CheckpointError(f"{where}: field 'keypoints' has {kp_raw.size} entries, expected {NUM_KEYPOINTS}; "
                              "re-create the file")
    keypoints = _as_index(kp_raw, "keypoints", nv, where)
    skin = None
    if "skinmask" in mat:
        skin = np.asarray(mat["skinmask"], dtype=np.float32).reshape(-1)
        if skin.size != nv:
            raise CheckpointError(f"{where}: field 'skinmask' has {skin.size} entries, expected {nv}; "
                                  "re-create the file")
    return BFMData(mean_shape=mean.reshape(nv, 3), id_base=id_base, exp_base=exp_base,
                   mean_tex=mean_tex.reshape(nv, 3), tex_base=tex_base, tri=tri, point_buf=point_buf,
                   keypoints=keypoints, skinmask=skin)


def point_buffer(tri: np.ndarray, num_vertices: int, width: int = 8) -> np.ndarray:
    """``point_buf`` of a triangle list: [V, width] indices of up to ``width`` triangles around each vertex,
    padded with the official padding value F (the number of triangles)."""
    buf = np.full((num_vertices, width), len(tri), np.int64)
    fill = np.zeros(num_vertices, np.int64)
    for f, corners in enumerate(tri):
        for v in corners:
            if fill[v] < width:
                buf[v, fill[v]] = f
                fill[v] += 1
    return buf


@dataclass
class FaceModelConfig:
    """Camera and lighting constants of the Deep3D face model (spec-pipeline.md 3.4 defaults)."""

    recenter: bool = True
    """Subtract the vertex centroid of the mean shape (bases untouched)."""
    camera_distance: float = 10.0
    """Camera on the +z axis at this distance, looking toward -z: ``z_cam = camera_distance - z``."""
    focal: float = 1015.0
    """Pinhole focal length in pixels of the 224 image."""
    center: float = 112.0
    """Principal point (u and v) in pixels."""
    init_lit: tuple[float, ...] = (0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    """Added to the 9 SH coefficients of every colour channel before shading."""


@dataclass
class FaceGeometry:
    """Everything :meth:`ParametricFaceModel.forward` computes for one set of coefficients.

    Attributes:
        shape: [B, V, 3] canonical (unposed) shape.
        rotation: [B, 3, 3] the transposed rotation ``(Rz Ry Rx)^T`` (Deep3D's ``compute_rotation`` output).
        verts_world: [B, V, 3] posed shape ``shape @ rotation + trans``.
        verts_cam: [B, V, 3] camera-space vertices (``z_cam = 10 - z``).
        proj: [B, V, 2] projected pixels (u right, v **up**) in the 224 image; Deep3D/NFS ``face_proj``.
        landmarks: [B, 68, 2] the keypoint rows of ``proj`` (y-up).
        texture: [B, V, 3] albedo in [0, 1], or None.
        normals: [B, V, 3] rotated unit vertex normals, or None.
        color: [B, V, 3] SH-lit vertex colour, or None.
    """

    shape: torch.Tensor
    rotation: torch.Tensor
    verts_world: torch.Tensor
    verts_cam: torch.Tensor
    proj: torch.Tensor
    landmarks: torch.Tensor
    texture: torch.Tensor | None = None
    normals: torch.Tensor | None = None
    color: torch.Tensor | None = None


def compute_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Euler angles -> the transposed rotation ``(Rz(z) @ Ry(y) @ Rx(x))^T`` (spec-pipeline.md 3.4).

    Points are row vectors, so ``verts @ compute_rotation(angle)`` rotates by X (pitch) first, then Y (yaw), then
    Z (roll).

    Args:
        angle: [B, 3] (x, y, z) angles in radians.

    Returns:
        [B, 3, 3] ``R^T``.
    """
    if angle.ndim != 2 or angle.shape[1] != 3:
        raise ValueError(f"angle must have shape [B, 3], got {tuple(angle.shape)}")
    one, zero = torch.ones_like(angle[:, 0]), torch.zeros_like(angle[:, 0])
    c, s = torch.cos(angle), torch.sin(angle)
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1).view(-1, 3, 3)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1).view(-1, 3, 3)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1).view(-1, 3, 3)
    return (rz @ ry @ rx).transpose(1, 2)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 scaled real SH basis values of Deep3D's lighting model (spec-pipeline.md 3.4).

    Args:
        normals: [..., 3] unit normals (nx, ny, nz).

    Returns:
        [..., 9] ``Y``; colour per channel is ``(Y . gamma_c) * albedo_c``.
    """
    a0, a1, a2 = math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0)
    c0 = 1 / math.sqrt(4 * math.pi)
    c1 = math.sqrt(3.0) / math.sqrt(4 * math.pi)
    c2 = 3 * math.sqrt(5.0) / math.sqrt(12 * math.pi)
    nx, ny, nz = normals.unbind(-1)
    return torch.stack([
        torch.full_like(nx, a0 * c0),
        -a1 * c1 * ny, a1 * c1 * nz, -a1 * c1 * nx,
        a2 * c2 * nx * ny, -a2 * c2 * ny * nz, a2 * c2 * (0.5 / math.sqrt(3.0)) * (3 * nz ** 2 - 1),
        -a2 * c2 * nx * nz, 0.5 * a2 * c2 * (nx ** 2 - ny ** 2),
    ], dim=-1)


def to_image_rows(points: torch.Tensor, row_offset: float = 224.0) -> torch.Tensor:
    """Flip y-up model pixels to image coordinates (x right, y down) and back (the map is its own inverse).

    ``row = row_offset - v``; 224 is the 3DMM-Fitting convention (spec 4), 223 Deep3D's loader (``H - 1 - y``).

    Args:
        points: [..., 2] (u, v) pixels.

    Returns:
        [..., 2] (u, row_offset - v).
    """
    return torch.stack([points[..., 0], row_offset - points[..., 1]], dim=-1)


class ParametricFaceModel(nn.Module):
    """BFM09 front-face model (35709 vertices in the official file) as an ``nn.Module`` of buffers.

    All arrays are registered as buffers, so ``.to(device)`` / ``.double()`` move them. Nothing here is trainable.

    Args:
        data: the loaded model file (:func:`load_bfm_front` / :func:`load_bfm09_model_info`).
        cfg: camera and lighting constants; defaults are the official ones.
    """

    def __init__(self, data: BFMData, cfg: FaceModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or FaceModelConfig()
        if len(self.cfg.init_lit) != 9:
            raise ValueError(f"init_lit needs 9 values (one per SH band), got {len(self.cfg.init_lit)}")
        mean = torch.from_numpy(np.ascontiguousarray(data.mean_shape, dtype=np.float32))
        if self.cfg.recenter:
            mean = mean - mean.mean(dim=0, keepdim=True)
        self.num_vertices = data.num_vertices
        skin = data.skinmask if data.skinmask is not None else np.ones(data.num_vertices, np.float32)
        self._buffer("mean_shape", mean)                                   # [V, 3]
        self._buffer("id_base", data.id_base)                              # [3V, 80]
        self._buffer("exp_base", data.exp_base)                            # [3V, 64]
        self._buffer("mean_tex", data.mean_tex)                            # [V, 3], 0..255
        self._buffer("tex_base", data.tex_base)                            # [3V, 80]
        self._buffer("tri", data.tri)                                      # [F, 3] long
        self._buffer("point_buf", data.point_buf)                          # [V, 8] long, padding F
        self._buffer("keypoints", data.keypoints)                          # [68] long
        self._buffer("skinmask", skin)                                     # [V]
        self._buffer("init_lit", np.asarray(self.cfg.init_lit, np.float32))
        intr = [[self.cfg.focal, 0.0, self.cfg.center], [0.0, self.cfg.focal, self.cfg.center], [0.0, 0.0, 1.0]]
        self._buffer("intrinsics", np.asarray(intr, np.float32))          # [3, 3] K

    def _buffer(self, name: str, array: np.ndarray | torch.Tensor) -> None:
        tensor = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(array))
        self.register_buffer(name, tensor, persistent=False)

    @classmethod
    def from_mat(cls, path: str | os.PathLike, cfg: FaceModelConfig | None = None) -> "ParametricFaceModel":
        """Build from ``BFM_model_front.mat`` or ``BFM09_model_info.mat`` (identical layout, spec 3.3 / 4)."""
        return cls(_load_bfm_mat(path, Path(path).name or "BFM model file",
                                 "expected Deep3D's BFM_model_front.mat or 3DMM-Fitting's BFM09_model_info.mat"), cfg)

    def compute_shape(self, id_coeff: torch.Tensor, exp_coeff: torch.Tensor,
                      index: torch.Tensor | None = None) -> torch.Tensor:
        """``S = mean + idBase . alpha + exBase . beta`` (spec 3.4).

        Args:
            id_coeff: [B, 80] identity coefficients.
            exp_coeff: [B, 64] expression coefficients.
            index: optional [K] vertex indices to evaluate only those vertices (cheap landmark-only fits).

        Returns:
            [B, V, 3] (or [B, K, 3]) canonical shape.
        """
        id_base, exp_base, mean = self.id_base, self.exp_base, self.mean_shape
        if index is not None:
            rows = (index[:, None] * 3 + torch.arange(3, device=index.device)).reshape(-1)
            id_base, exp_base, mean = id_base[rows], exp_base[rows], mean[index]
        offset = id_coeff @ id_base.T + exp_coeff @ exp_base.T                     # [B, 3V]
        return offset.view(id_coeff.shape[0], -1, 3) + mean

    def compute_texture(self, tex_coeff: torch.Tensor) -> torch.Tensor:
        """Albedo ``T = (texBase . delta + meantex) / 255`` (spec 3.4).

        Args:
            tex_coeff: [B, 80].

        Returns:
            [B, V, 3] RGB albedo, nominally in [0, 1].
        """
        tex = (tex_coeff @ self.tex_base.T).view(tex_coeff.shape[0], -1, 3) + self.mean_tex
        return tex / 255.0

    def compute_rotation(self, angle: torch.Tensor) -> torch.Tensor:
        """[B, 3] Euler angles -> [B, 3, 3] ``(Rz Ry Rx)^T``; see :func:`compute_rotation`."""
        return compute_rotation(angle)

    def transform(self, verts: torch.Tensor, rotation: torch.Tensor, trans: torch.Tensor) -> torch.Tensor:
        """Rigid transform of row-vector points ``verts @ rotation + trans``.

        Args:
            verts: [B, V, 3]; rotation: [B, 3, 3] (``R^T``); trans: [B, 3] model units.

        Returns:
            [B, V, 3] world-space vertices.
        """
        return verts @ rotation + trans[:, None, :]

    def to_camera(self, verts: torch.Tensor) -> torch.Tensor:
        """World -> camera: ``z_cam = camera_distance - z``, x and y unchanged. [B, V, 3] -> [B, V, 3]."""
        return torch.cat([verts[..., :2], self.cfg.camera_distance - verts[..., 2:]], dim=-1)

    def project(self, verts_cam: torch.Tensor) -> torch.Tensor:
        """Pinhole projection ``p = verts_cam @ K^T`` then divide by depth.

        Args:
            verts_cam: [B, V, 3] camera-space points with positive depth.

        Returns:
            [B, V, 2] (u, v) pixels of the 224 image, v pointing up.
        """
        p = verts_cam @ self.intrinsics.T
        return p[..., :2] / p[..., 2:]

    def landmarks(self, proj: torch.Tensor) -> torch.Tensor:
        """The 68 keypoint rows of a per-vertex array. [B, V, C] -> [B, 68, C]."""
        return proj[:, self.keypoints]

    def compute_normals(self, verts: torch.Tensor) -> torch.Tensor:
        """Unit vertex normals from the triangles around each vertex (spec 3.4).

        Face normal ``normalize(cross(v1 - v2, v2 - v3))``; a zero normal stands for the padding index F; the
        vertex normal is the normalised sum over its ``point_buf`` triangles.

        Args:
            verts: [B, V, 3].

        Returns:
            [B, V, 3] unit normals (in the frame of ``verts``).
        """
        v1, v2, v3 = (verts[:, self.tri[:, k]] for k in range(3))
        face_n = F.normalize(torch.cross(v1 - v2, v2 - v3, dim=-1), dim=-1)       # [B, F, 3]
        face_n = torch.cat([face_n, face_n.new_zeros(verts.shape[0], 1, 3)], dim=1)
        return F.normalize(face_n[:, self.point_buf].sum(dim=2), dim=-1)

    def compute_color(self, texture: torch.Tensor, normals: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """SH-lit vertex colour ``(Y(n) . gamma_c) * T_c`` with ``gamma`` reshaped [B, 3, 9] + init_lit (spec 3.4).

        Args:
            texture: [B, V, 3] albedo in [0, 1].
            normals: [B, V, 3] unit normals (rotated into the camera/world frame).
            gamma: [B, 27] SH coefficients, colour-major (R's 9, G's 9, B's 9).

        Returns:
            [B, V, 3] colour.
        """
        if gamma.ndim != 2 or gamma.shape[1] != 27:
            raise ValueError(f"gamma must have shape [B, 27], got {tuple(gamma.shape)}")
        light = (gamma.view(-1, 3, 9) + self.init_lit).transpose(1, 2)           # [B, 9, 3]
        return (sh_basis(normals) @ light) * texture

    def forward(self, coeffs: FaceCoeffs, with_color: bool = False) -> FaceGeometry:
        """Deep3D ``compute_for_render``: pose, project and optionally shade the face.

        Args:
            coeffs: split [B, 257] coefficients.
            with_color: also compute albedo, rotated normals and SH colour.

        Returns:
            :class:`FaceGeometry` (``proj`` and ``landmarks`` in y-up pixels).
        """
        shape = self.compute_shape(coeffs.id, coeffs.exp)
        rotation = self.compute_rotation(coeffs.angle)
        verts_world = self.transform(shape, rotation, coeffs.trans)
        verts_cam = self.to_camera(verts_world)
        proj = self.project(verts_cam)
        geo = FaceGeometry(shape=shape, rotation=rotation, verts_world=verts_world, verts_cam=verts_cam,
                           proj=proj, landmarks=self.landmarks(proj))
        if with_color:
            geo.texture = self.compute_texture(coeffs.tex)
            geo.normals = self.compute_normals(shape) @ rotation
            geo.color = self.compute_color(geo.texture, geo.normals, coeffs.gamma)
        return geo
