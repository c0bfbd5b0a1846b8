"""Benchmark of the 3DMM stage on one photo: Deep3D regression, landmark fitting and the photometric fit
(issue: face/3DMM).

No official weight is available offline, so both stand-ins are labelled in the result:

* Deep3D: the real ResNet-50 + heads architecture with random weights (speed does not depend on values).
* Fitting: a synthetic face model with the official vertex count (35 709, a smooth dome mesh with random
  bases) fitted to the real dlib landmarks of the photo; the iteration counts and losses are the real ones,
  so the time per iteration is representative, the fitted coefficients are not.
* Photometric fit: the same stand-in rendered by :class:`~nerffs.face3d.render.MeshRenderer` at 224 x 224 and
  compared with the aligned photo (spec-pipeline.md 4: 1000 rigid + 500 rendered non-rigid iterations).
"""
from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import numpy as np
import torch

from nerffs.examples import example_photo
from nerffs.face3d.bfm import ParametricFaceModel
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.fit import FitConfig, fit_landmarks, fit_photometric
from nerffs.face3d.recon import Deep3DRegressor, preprocess_rgb_image
from nerffs.face3d.render import MeshRenderer
from nerffs.face3d.synthetic import synthetic_face_model
from nerffs.preprocess.align import AlignConfig, align_face
from nerffs.preprocess.image import ImageSource, load_image
from nerffs.preprocess.landmarks import DlibLandmarks

log = logging.getLogger(__name__)

def _median_s(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _render_ms(model: ParametricFaceModel, repeats: int) -> tuple[float, float]:
    """Median ms of one 224 x 224 render of the model at rest, without and with the backward pass."""
    init = FaceCoeffs.from_vector(torch.zeros(1, 257))
    renderer = MeshRenderer()
    with torch.no_grad():
        geo = model(init, with_color=True)
    verts, colors = geo.verts_cam.requires_grad_(True), geo.color.requires_grad_(True)

    def forward_backward() -> None:
        rgb, _ = renderer(verts, model.tri, colors)
        rgb.sum().backward()

    with torch.no_grad():
        forward_s = _median_s(lambda: renderer(verts, model.tri, colors), repeats)
    return 1e3 * forward_s, 1e3 * _median_s(forward_backward, repeats)


def run(image: ImageSource | None = None, repeats: int = 3, fit_preset: str = "official") -> dict[str, Any]:
    """Time Deep3D regression (random weights), the landmark fit and the photometric fit (synthetic model) on
    one photo.

    Args:
        image: the photo; None uses the scikit-image astronaut.
        repeats: timed repetitions of the regression (median reported; renders: at least 10); the fits run once.
        fit_preset: ``FitConfig`` preset ('official': 1000 + 500 iterations, 'fast': 200 + 150).

    Returns:
        dict with ``deep3d_s`` (one 224x224 forward pass), ``fit_s``, ``fit_iters``, ``render_ms`` /
        ``render_backward_ms`` (one 224 x 224 render of the 35 709-vertex model, without / with backward),
        ``photo_fit_s`` / ``photo_fit_iters`` (the fit with the photometric stage, same preset and start),
        ``photo_loss_start_end`` (photometric loss at the first and after the last non-rigid iteration),
        ``torch_threads`` and ``weights`` / ``face_model`` labels saying what stood in for the official files.
    """
    rgb = load_image(example_photo() if image is None else image)
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
    render_ms, render_backward_ms = _render_ms(model, max(repeats, 10))
    photo = torch.from_numpy(aligned.image.copy()).permute(2, 0, 1)[None].float() / 255.0  # [1, 3, 224, 224]
    t0 = time.perf_counter()
    photo_fit = fit_photometric(model, init, target, photo, cfg)
    photo_fit_s = time.perf_counter() - t0
    out = {"deep3d_s": round(deep3d_s, 4), "fit_s": round(fit_s, 3),
           "fit_iters": cfg.rigid_iters + cfg.nonrigid_iters, "fit_ms_per_iter": round(1e3 * fit_s / (
               cfg.rigid_iters + cfg.nonrigid_iters), 3),
           "render_ms": round(render_ms, 1), "render_backward_ms": round(render_backward_ms, 1),
           "photo_fit_s": round(photo_fit_s, 2), "photo_fit_iters": cfg.rigid_iters + cfg.nonrigid_iters,
           "photo_loss_start_end": [round(photo_fit.history["nonrigid"]["photo"][0], 4),
                                    round(photo_fit.losses["photo"], 4)],
           "torch_threads": torch.get_num_threads(),
           "weights": "random Deep3D weights (stand-in)",
           "face_model": f"synthetic dome, {model.num_vertices} vertices (stand-in for BFM_model_front.mat)"}
    log.info("face3d benchmark: %s", out)
    return out
