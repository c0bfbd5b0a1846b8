"""Benchmark of the 3DMM stage on one photo: Deep3D regression and landmark fitting (issue: face/3DMM).

No official weight is available offline, so both stand-ins are labelled in the result:

* Deep3D: the real ResNet-50 + heads architecture with random weights (speed does not depend on values).
* Fitting: a synthetic face model with the official vertex count (35 709, a smooth dome mesh with random
  bases) fitted to the real dlib landmarks of the photo; the iteration counts and losses are the real ones,
  so the time per iteration is representative, the fitted coefficients are not.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from nerffs.face3d.bfm import BFMData, ParametricFaceModel
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.fit import FitConfig, fit_landmarks
from nerffs.face3d.recon import Deep3DRegressor, preprocess_rgb_image
from nerffs.preprocess.align import AlignConfig, align_face
from nerffs.preprocess.image import ImageSource, load_image
from nerffs.preprocess.landmarks import DlibLandmarks
from nerffs.utils.logging import get_logger

logger = get_logger(__name__)

OFFICIAL_NUM_VERTICES = 35709


def synthetic_face_model(num_vertices: int = OFFICIAL_NUM_VERTICES, seed: int = 0) -> ParametricFaceModel:
    """A dome-shaped stand-in with the BFM09 layout (timing only; not a face).

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
    point_buf = _point_buffer(tri, num_vertices)
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


def _point_buffer(tri: np.ndarray, num_vertices: int, width: int = 8) -> np.ndarray:
    buf = np.full((num_vertices, width), len(tri), np.int64)  # padding index = F (official convention)
    fill = np.zeros(num_vertices, np.int64)
    for f, corners in enumerate(tri):
        for v in corners:
            if fill[v] < width:
                buf[v, fill[v]] = f
                fill[v] += 1
    return buf


def _median_s(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(image: ImageSource | None = None, repeats: int = 3, fit_preset: str = "official") -> dict[str, Any]:
    """Time Deep3D regression (random weights) and the landmark fit (synthetic model) on one photo.

    Args:
        image: the photo; None uses the scikit-image astronaut.
        repeats: timed repetitions of the regression (median reported); the fit runs once.
        fit_preset: ``FitConfig`` preset ('official': 1000 + 500 iterations, 'fast': 200 + 150).

    Returns:
        dict with ``deep3d_s`` (one 224x224 forward pass), ``fit_s``, ``fit_iters``, ``torch_threads`` and
        ``weights`` / ``face_model`` labels saying what stood in for the official files.
    """
    from nerffs.bench.face_prep import astronaut_path

    rgb = load_image(astronaut_path() if image is None else image)
    face = DlibLandmarks().load().detect(rgb)
    aligned = align_face(rgb, face, AlignConfig(output_size=224, min_face_size=1.0))
    x = preprocess_rgb_image(torch.from_numpy(aligned.image.copy()).permute(2, 0, 1)[None])
    torch.manual_seed(0)
    net = Deep3DRegressor().eval()
    with torch.inference_mode():
        deep3d_s = _median_s(lambda: net(x), repeats)
        init = FaceCoeffs.from_vector(torch.zeros(1, 257))
    model = synthetic_face_model()
    cfg = FitConfig.preset(fit_preset)
    cfg.show_progress = False
    target = torch.from_numpy(aligned.points.astype(np.float32))[None]  # [1, 68, 2] pixels of the 224 image
    t0 = time.perf_counter()
    fit_landmarks(model, init, target, cfg)
    fit_s = time.perf_counter() - t0
    out = {"deep3d_s": round(deep3d_s, 4), "fit_s": round(fit_s, 3),
           "fit_iters": cfg.rigid_iters + cfg.nonrigid_iters, "fit_ms_per_iter": round(1e3 * fit_s / (
               cfg.rigid_iters + cfg.nonrigid_iters), 3), "torch_threads": torch.get_num_threads(),
           "weights": "random Deep3D weights (stand-in)",
           "face_model": f"synthetic dome, {model.num_vertices} vertices (stand-in for BFM_model_front.mat)"}
    logger.info("face3d benchmark: %s", out)
    return out
