"""The offline set's face model (in place of BFM09) and landmark regressor (in place of Deep3D).

:func:`portrait_face_model` turns a fitted :class:`~nerffs.offline.portrait.Portrait` into a
:class:`~nerffs.face3d.bfm.ParametricFaceModel` with the Deep3D conventions the method uses everywhere
(model space, camera at distance 10, focal 1015, 224 frame with v up, 68 keypoints, 64 expression
coefficients). Its vertices are the photo's mediapipe mesh, subdivided twice (so every 4th vertex still gives
a dense set of control points), placed so that with zero pose the projection lands exactly where the frontal
view of the portrait field shows each point. Its expression basis is the portrait's (channels of
``nerffs.offline.geometry.EXP_CHANNELS``; the other coefficients have no effect); the mean shape is the closed,
relaxed mouth, so the photo itself is expression ``e0``. Identity and texture bases are zero: the model
describes this one face.

:class:`LandmarkRegressor` predicts that model's coefficients for an image from dlib's 68 landmarks (a
closed-form start for translation and scale, then a short landmark fit), which is what Deep3D provides for
the input pose, the reference fit and driving frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nerffs.errors import NoFaceError
from nerffs.face3d.bfm import (BFMData, FaceModelConfig, ParametricFaceModel, point_buffer, to_image_rows)
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.fit import FitConfig, fit_landmarks
from nerffs.offline.geometry import TAN6, world_to_ndc
from nerffs.offline.portrait import Portrait
from nerffs.preprocess.landmarks import DlibLandmarks, LandmarkDetector

log = logging.getLogger(__name__)

FOCAL, CENTRE, DISTANCE = 1015.0, 112.0, 10.0
MODEL_PER_WORLD = 2 * CENTRE * DISTANCE / (FOCAL * 2 * TAN6)
"""Model units per world unit near the face (the Deep3D frame spans the frontal view)."""
EXP_DIM, ID_DIM, TEX_DIM = 64, 80, 80


def subdivide(triangles: np.ndarray, *values: np.ndarray) -> tuple[np.ndarray, ...]:
    """Midpoint subdivision: each triangle becomes four; per-vertex ``values`` [V, ...] get the edge midpoints
    appended (linear interpolation). Returns (triangles [4F, 3], *values [V + E, ...]); orientation is kept."""
    tri = np.asarray(triangles, np.int64)
    num_v = values[0].shape[0]
    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = num_v + inverse.reshape(3, -1).T                       # [F, 3]: midpoints of ab, bc, ca
    a, b, c = tri.T
    ab, bc, ca = mid.T
    new_tri = np.concatenate([np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))])
    out = [new_tri]
    for v in values:
        out.append(np.concatenate([v, 0.5 * (v[unique[:, 0]] + v[unique[:, 1]])]))
    return tuple(out)


def to_model_space(world: np.ndarray, depth_origin: float) -> np.ndarray:
    """[..., 3] world -> Deep3D model space whose projection (camera at z = 10, focal 1015, centre 112, v up)
    is the frontal view of the world point."""
    ndc = world_to_ndc(world)
    z = MODEL_PER_WORLD * (world[..., 0] - depth_origin)
    scale = CENTRE * (DISTANCE - z) / FOCAL
    return np.stack([ndc[..., 0] * scale, ndc[..., 1] * scale, z], axis=-1)


def _keypoints(portrait: Portrait, landmarks: np.ndarray) -> np.ndarray:
    """Index of the mesh vertex matching each of dlib's 68 landmarks (aligned-photo pixels, centre
    convention); lip landmarks only match vertices of the same lip contour (closed mouths overlap)."""
    pts = portrait.mesh_points[:, :2]
    target = np.asarray(landmarks, np.float64) + 0.5
    corners_out = np.array([portrait.outer_upper[0], portrait.outer_upper[-1]])
    corners_in = np.array([portrait.lips_upper[0], portrait.lips_upper[-1]])
    allowed: dict[int, np.ndarray] = {48: corners_out, 54: corners_out, 60: corners_in, 64: corners_in}
    allowed.update({i: portrait.outer_upper[1:-1] for i in range(49, 54)})
    allowed.update({i: portrait.outer_lower[1:-1] for i in range(55, 60)})
    allowed.update({i: portrait.lips_upper[1:-1] for i in range(61, 64)})
    allowed.update({i: portrait.lips_lower[1:-1] for i in range(65, 68)})
    everything = np.arange(len(pts))
    out = np.empty(68, np.int64)
    for i in range(68):
        cand = allowed.get(i, everything)
        out[i] = cand[np.argmin(np.linalg.norm(pts[cand] - target[i], axis=1))]
    return out


def portrait_face_model(portrait: Portrait, landmarks: np.ndarray, subdivisions: int = 2) -> ParametricFaceModel:
    """The face model of one portrait (see the module docstring).

    Args:
        portrait: the fitted photo.
        landmarks: [68, 2] dlib landmarks of the aligned photo (pixels).
        subdivisions: midpoint subdivisions of the 468-point mesh (2 gives ~7k vertices).
    """
    world = portrait.mesh_world
    k = portrait.basis.shape[0]
    colours = portrait.texture[np.clip(portrait.mesh_points[:, 1].astype(int), 0, portrait.size - 1),
                               np.clip(portrait.mesh_points[:, 0].astype(int), 0, portrait.size - 1)]
    tri, w, basis, col = portrait.triangles, world, portrait.basis.transpose(1, 0, 2), colours.astype(np.float64)
    for _ in range(subdivisions):
        tri, w, basis, col = subdivide(tri, w, basis, col)
    origin = float(world[portrait.face_oval, 0].mean())
    base = to_model_space(w, origin)
    per_unit = np.stack([to_model_space(w + basis[:, j], origin) - base for j in range(k)], axis=-1)  # [V, 3, K]
    mean = base - per_unit @ portrait.e0
    nv = len(mean)
    exp_base = np.zeros((3 * nv, EXP_DIM), np.float32)
    exp_base[:, :k] = per_unit.reshape(3 * nv, k)
    v = mean[tri]
    facing = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 2] > 0
    tri = np.where(facing[:, None], tri, tri[:, [0, 2, 1]])
    data = BFMData(mean_shape=mean.astype(np.float32), id_base=np.zeros((3 * nv, ID_DIM), np.float32),
                   exp_base=exp_base, mean_tex=col.astype(np.float32),
                   tex_base=np.zeros((3 * nv, TEX_DIM), np.float32), tri=tri, point_buf=point_buffer(tri, nv),
                   keypoints=_keypoints(portrait, landmarks))
    return ParametricFaceModel(data, FaceModelConfig(recenter=False))


@dataclass(frozen=True)
class RegressorInput:
    """What the regressor is fed (the Deep3D contract: [B, 3, 224, 224] RGB in [0, 1])."""

    input_size: int = 224


class LandmarkRegressor(nn.Module):
    """Deep3D stand-in: ``predict(image [B, 3, 224, 224] in [0, 1]) -> FaceCoeffs`` of ``face_model``.

    An image without a detectable face gets zero coefficients (the photo's closed-mouth pose) and a warning.
    """

    def __init__(self, face_model: ParametricFaceModel, detector: LandmarkDetector | None = None,
                 fit: FitConfig | None = None) -> None:
        super().__init__()
        self.config = RegressorInput()
        self.face_model = face_model
        self.detector = detector or DlibLandmarks()
        self.fit = fit or FitConfig(rigid_iters=150, nonrigid_iters=100, show_progress=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.predict(image).to_vector()

    def predict(self, image: torch.Tensor) -> FaceCoeffs:
        rows = [self._one(img) for img in image]
        return FaceCoeffs.from_vector(torch.cat(rows).to(image.device))

    def _one(self, image: torch.Tensor) -> torch.Tensor:
        zeros = FaceCoeffs.zeros(1)
        rgb = (image.detach().permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
        try:
            points = self.detector.detect(rgb).points
        except NoFaceError:
            log.warning("landmark regressor: no face in a %dx%d image; using the rest pose", *rgb.shape[:2])
            return zeros.to_vector()
        device = self.face_model.mean_shape.device
        target = torch.as_tensor(points * (224.0 / rgb.shape[0]), dtype=torch.float32, device=device)[None]
        with torch.inference_mode(False), torch.enable_grad():
            init = FaceCoeffs.zeros(1, device=device).replace(trans=self._translation(target))
            return fit_landmarks(self.face_model, init, target, self.fit).coeffs.to_vector().cpu()

    def _translation(self, target: torch.Tensor) -> torch.Tensor:
        """Closed-form start: the model's keypoints moved and scaled (through depth) onto the target's."""
        model = self.face_model
        kp = model.mean_shape[model.keypoints]
        proj = model.project(model.to_camera(kp[None]))[0]
        goal = to_image_rows(target[0], 224.0)
        s = float(goal.std(0).norm() / proj.std(0).norm().clamp_min(1e-6))
        tz = DISTANCE - DISTANCE / max(s, 1e-3)
        shift = (goal.mean(0) - (proj.mean(0) - CENTRE) * s - CENTRE) * (DISTANCE - tz) / FOCAL
        return torch.tensor([[float(shift[0]), float(shift[1]), tz]], device=target.device)
