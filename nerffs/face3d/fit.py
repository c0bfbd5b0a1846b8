"""3DMM fitting refinement: landmarks, then photometric (spec-pipeline.md 4, 3DMM-Fitting-Pytorch as used by NFS).

Two Adam stages on the BFM09 model of :mod:`nerffs.face3d.bfm` (same camera, rotation and SH conventions as Deep3D,
spec 4 "Conclusion"):

1. rigid: ``angle`` and ``trans`` only, loss ``lm_weight * L_lm``;
2. non-rigid: ``id``, ``exp``, ``angle``, ``trans`` (plus ``tex`` and ``gamma`` when a renderer is given), loss
   ``lm_weight * L_lm + w_id |id|^2 + w_exp |exp|^2`` and, with a renderer,
   ``+ w_tex |tex|^2 + w_refl L_refl + w_photo L_photo``.

``L_lm`` is the weighted squared landmark distance in units of the image size (weights 10 on the nose points
28:31 and the mouth 48:68, 1 elsewhere, normalised to sum 1). ``L_photo`` is the mean RGB distance between the
render and the image over the rendered (detached) mask, ``L_refl`` the variance of the skin albedo.
:func:`fit_photometric` runs both stages with the pure-PyTorch :class:`~nerffs.face3d.render.MeshRenderer` (the
official fit's pytorch3d render, spec 4); :func:`fit_landmarks` takes any :class:`FaceRenderer`, or none.

Unlike the official script, which starts every coefficient at zero, the fit starts from given (Deep3D)
coefficients (pass ``FaceCoeffs.zeros`` for the official start). Without a renderer the texture terms have no
data term, so ``tex`` and ``gamma`` are kept at their initial values instead of being shrunk by the priors.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from nerffs.errors import InputError
from nerffs.face3d.bfm import NUM_KEYPOINTS, ParametricFaceModel, to_image_rows
from nerffs.face3d.coeffs import LAYOUT, FaceCoeffs
from nerffs.face3d.render import MeshRenderer, MeshRendererConfig
from nerffs.utils.logging import progress
from torch_utils.registry import Registry

log = logging.getLogger(__name__)


@dataclass
class FitConfig:
    """Options of :func:`fit_landmarks`; defaults are the official values NFS passes (spec-pipeline.md 4).

    Presets (:meth:`preset`): ``'official'`` = the defaults (1000 rigid + 500 non-rigid iterations, the second
    stage rendered with the photometric, reflectance and texture terms); ``'fast'`` = 200 + 150 landmark-only
    iterations with the same learning rates and weights, enough when starting from Deep3D coefficients (already
    close) rather than from zero, many times quicker.
    """

    photometric: bool = True
    """Callers that have the image render the second stage (:func:`fit_photometric`); False fits landmarks only."""
    rigid_iters: int = 1000
    """Stage 1 Adam steps on angle + trans (``first_rf_iters``)."""
    nonrigid_iters: int = 500
    """Stage 2 Adam steps on all optimised coefficients (``first_nrf_iters``)."""
    rigid_lr: float = 1e-2
    """Stage 1 learning rate (``rf_lr``)."""
    nonrigid_lr: float = 1e-2
    """Stage 2 learning rate (``nrf_lr``)."""
    lm_weight: float = 100.0
    """Weight of the landmark loss (``lm_loss_w``)."""
    landmark_emphasis: float = 10.0
    """Relative weight of the nose points 28:31 and mouth points 48:68 (0-based slices)."""
    id_weight: float = 1e-3
    """Weight of ``sum(id^2)``."""
    exp_weight: float = 0.8e-3
    """Weight of ``sum(exp^2)``."""
    tex_weight: float = 1.7e-6
    """Weight of ``sum(tex^2)`` (renderer only)."""
    reflectance_weight: float = 1.0
    """Weight of the skin-albedo uniformity prior (renderer only)."""
    photo_weight: float = 1.6
    """Weight of the masked photometric loss (renderer only)."""
    image_size: int = 224
    """Landmark coordinates are divided by this before squaring (the fitting image is 224 x 224)."""
    row_offset: float = 224.0
    """Target rows map to model v by ``v = row_offset - row`` (3DMM-Fitting uses 224; Deep3D's loader 223)."""
    show_progress: bool = True
    """Show a progress bar over the iterations."""

    @classmethod
    def preset(cls, name: str) -> "FitConfig":
        """``'official'`` or ``'fast'`` (see the class docstring; ``FIT_PRESETS``)."""
        return FIT_PRESETS.get(name)


FIT_PRESETS: Registry[FitConfig] = Registry("FitConfig", {
    "official": FitConfig,
    "fast": lambda: FitConfig(rigid_iters=200, nonrigid_iters=150, photometric=False),
})


@runtime_checkable
class FaceRenderer(Protocol):
    """A differentiable mesh rasteriser for the optional photometric term (e.g. an nvdiffrast / pytorch3d adapter).

    It sees the Deep3D camera (spec-pipeline.md 3.4): ``verts_cam`` keeps the model's x (right) and y (up) and holds
    the positive depth ``z_cam = 10 - z``; a vertex lands at ``u = 1015 x / z_cam + 112``,
    ``v = 1015 y / z_cam + 112`` with v up, i.e. image row ``224 - v`` (row 0 at the top) of a 224 x 224 image
    (fov ``2 atan(112 / 1015)``).
    """

    def __call__(self, verts_cam: torch.Tensor, faces: torch.Tensor,
                 colors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Render per-vertex colours.

        Args:
            verts_cam: [B, V, 3] camera-space vertices.
            faces: [F, 3] long, 0-based triangle indices.
            colors: [B, V, 3] vertex colours in [0, 1].

        Returns:
            rgb [B, 3, H, W] in [0, 1] and coverage mask [B, 1, H, W] (1 where the face is drawn).
        """
        ...


@dataclass
class FitResult:
    """Output of :func:`fit_landmarks` (all tensors detached).

    Attributes:
        coeffs: fitted coefficients; ``coeffs.to_vector()`` is the Deep3D [B, 257] layout.
        proj: [B, V, 2] projection of every vertex, y-up pixels of the 224 image (NFS ``face_proj``).
        landmarks: [B, 68, 2] fitted landmarks, y-up like ``proj``
            (``bfm.to_image_rows(landmarks, cfg.row_offset)`` gives image coordinates like the target).
        landmark_error: [B] mean Euclidean landmark distance to the target in pixels.
        losses: final value of every loss term (``'lm'``, ``'id'``, ``'exp'``, ..., ``'total'``).
        history: per stage (``'rigid'``, ``'nonrigid'``), every loss term's value at each iteration, taken
            before that iteration's Adam step (an empty dict for a stage run with 0 iterations).
    """

    coeffs: FaceCoeffs
    proj: torch.Tensor
    landmarks: torch.Tensor
    landmark_error: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)
    history: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def landmark_weights(emphasis: float = 10.0, device: torch.device | str | None = None) -> torch.Tensor:
    """[68] landmark weights: ``emphasis`` on the nose 28:31 and mouth 48:68, 1 elsewhere, normalised to sum 1."""
    w = torch.ones(NUM_KEYPOINTS, device=device)
    w[28:31] = emphasis
    w[48:68] = emphasis
    return w / w.sum()


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, image_size: float) -> torch.Tensor:
    """Batch mean of ``sum_k w_k |p_k / size - g_k / size|^2``. pred, target: [B, 68, 2]; weights: [68]."""
    dist = ((pred - target) / image_size).square().sum(-1)                      # [B, 68]
    return (dist * weights).sum(-1).mean()


def photometric_loss(render: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean per-pixel RGB distance, batch-averaged. render, image: [B, 3, H, W] in [0, 1]; mask [B, 1, H, W]."""
    mask = mask.detach()
    dist = (render - image).norm(dim=1, keepdim=True)                             # [B, 1, H, W]
    per_image = (dist * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp_min(1.0)
    return per_image.mean()


def reflectance_loss(texture: torch.Tensor, skin: torch.Tensor) -> torch.Tensor:
    """Skin albedo uniformity ``sum(((T - mean_skin(T)) * skin)^2) / (B * sum(skin))``. texture [B, V, 3]; skin [V]."""
    skin = skin[None, :, None]
    mean = (texture * skin).sum(1, keepdim=True) / skin.sum()
    return ((texture - mean) * skin).square().sum() / (texture.shape[0] * skin.sum())


def _l2(x: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``sum(x^2)`` per sample (equals the official ``get_l2`` for B = 1)."""
    return x.square().sum() / x.shape[0]


def _keypoint_landmarks(model: ParametricFaceModel, c: FaceCoeffs) -> torch.Tensor:
    """[B, 68, 2] y-up landmarks computed from the keypoint vertices only (no full mesh)."""
    shape = model.compute_shape(c.id, c.exp, index=model.keypoints)
    verts = model.transform(shape, model.compute_rotation(c.angle), c.trans)
    return model.project(model.to_camera(verts))


def _check_fit_inputs(init: FaceCoeffs, target_lmk: torch.Tensor, renderer: FaceRenderer | None,
                      image: torch.Tensor | None) -> None:
    batch = init.id.shape[0]
    for name, (a, b) in LAYOUT.items():
        part = getattr(init, name)
        if part.ndim != 2 or part.shape != (batch, b - a):
            raise InputError(f"init.{name} has shape {tuple(part.shape)}, expected ({batch}, {b - a}); "
                             "build it with FaceCoeffs.from_vector([B, 257])")
    if target_lmk.shape != (batch, NUM_KEYPOINTS, 2):
        raise InputError(f"target_lmk has shape {tuple(target_lmk.shape)}, expected ({batch}, 68, 2); "
                         "pass the 68-point detector output in pixels of the 224 image")
    if not bool(torch.isfinite(target_lmk).all()):
        raise InputError("target_lmk contains NaN/inf; re-run landmark detection on the 224 image")
    if renderer is not None and image is None:
        raise InputError("a renderer was given without an image; pass image=[B, 3, H, W] in [0, 1] for the "
                         "photometric term, or drop the renderer")
    if image is not None and (image.ndim != 4 or image.shape[:2] != (batch, 3)):
        raise InputError(f"image has shape {tuple(image.shape)}, expected ({batch}, 3, H, W) in [0, 1]")


def _run_stage(params: list[torch.Tensor], lr: float, iters: int, terms_fn: Callable[[], dict[str, torch.Tensor]],
               desc: str, show: bool) -> dict[str, list[float]]:
    """``iters`` Adam steps on ``params`` minimising ``terms_fn()['total']``; returns every term's values."""
    history: dict[str, list[float]] = {}
    if iters <= 0:
        return history
    opt = torch.optim.Adam(params, lr=lr)
    for _ in progress(range(iters), desc=desc, total=iters, enabled=show):
        opt.zero_grad(set_to_none=True)
        terms = terms_fn()
        terms["total"].backward()
        opt.step()
        for name, value in terms.items():
            history.setdefault(name, []).append(float(value.detach()))
    return history


class _Objective:
    """Loss terms of both stages for one fit (closes over model, target, config and optional renderer)."""

    def __init__(self, model: ParametricFaceModel, params: FaceCoeffs, target_up: torch.Tensor, cfg: FitConfig,
                 renderer: FaceRenderer | None, image: torch.Tensor | None) -> None:
        self.model, self.p, self.target, self.cfg = model, params, target_up, cfg
        self.renderer, self.image = renderer, image
        self.weights = landmark_weights(cfg.landmark_emphasis, device=target_up.device).to(target_up.dtype)

    def lm(self, landmarks: torch.Tensor) -> torch.Tensor:
        return landmark_loss(landmarks, self.target, self.weights, self.cfg.image_size)

    def rigid(self) -> dict[str, torch.Tensor]:
        """Stage 1: ``lm_weight * L_lm``."""
        lm = self.lm(_keypoint_landmarks(self.model, self.p))
        return {"lm": lm, "total": self.cfg.lm_weight * lm}

    def nonrigid(self) -> dict[str, torch.Tensor]:
        """Stage 2: landmarks + priors (+ photometric and reflectance with a renderer)."""
        cfg, p = self.cfg, self.p
        if self.renderer is None:
            terms = {"lm": self.lm(_keypoint_landmarks(self.model, p))}
        else:
            terms = self._render_terms()
        terms["id"], terms["exp"] = _l2(p.id), _l2(p.exp)
        total = cfg.lm_weight * terms["lm"] + cfg.id_weight * terms["id"] + cfg.exp_weight * terms["exp"]
        if self.renderer is not None:
            total = (total + cfg.tex_weight * terms["tex"] + cfg.reflectance_weight * terms["reflectance"]
                     + cfg.photo_weight * terms["photo"])
        terms["total"] = total
        return terms

    def _render_terms(self) -> dict[str, torch.Tensor]:
        geo = self.model(self.p, with_color=True)
        rgb, mask = self.renderer(geo.verts_cam, self.model.tri, geo.color)
        if rgb.shape != self.image.shape:
            raise InputError(f"the renderer draws {tuple(rgb.shape)} but image has shape {tuple(self.image.shape)}; "
                             "render at the image's resolution (fit_photometric does)")
        return {"lm": self.lm(geo.landmarks), "photo": photometric_loss(rgb, self.image, mask),
                "reflectance": reflectance_loss(geo.texture, self.model.skinmask), "tex": _l2(self.p.tex)}


def fit_landmarks(model: ParametricFaceModel, init: FaceCoeffs, target_lmk: torch.Tensor, cfg: FitConfig | None = None,
                  renderer: FaceRenderer | None = None, image: torch.Tensor | None = None) -> FitResult:
    """Refine 3DMM coefficients on 68 detected landmarks (spec-pipeline.md 4), rigid stage then non-rigid stage.

    Args:
        model: the BFM09 face model (any device; ``init`` and the targets must be on the same one).
        init: [B, *] initial coefficients, normally Deep3D's prediction for the same 224 image.
        target_lmk: [B, 68, 2] detected landmarks in image pixels of the 224 image (x right, y down).
        cfg: iteration counts, learning rates and loss weights; default :meth:`FitConfig.preset` ``'official'``.
        renderer: optional differentiable rasteriser enabling the photometric term (and tex/gamma optimisation).
        image: [B, 3, H, W] target image in [0, 1]; required with a renderer, ignored without.

    Returns:
        :class:`FitResult` with coefficients in the Deep3D layout and every vertex's y-up projection.

    Raises:
        InputError: misshaped or non-finite inputs, or a renderer without an image.
    """
    cfg = cfg or FitConfig()
    _check_fit_inputs(init, target_lmk, renderer, image)
    if image is not None and renderer is None:
        log.warning("fit_landmarks: an image was given without a renderer; the photometric term stays off")
    params = FaceCoeffs(**{name: getattr(init, name).detach().clone().requires_grad_(True) for name in LAYOUT})
    target_up = to_image_rows(target_lmk.detach().to(params.id.dtype), cfg.row_offset)
    objective = _Objective(model, params, target_up, cfg, renderer, image)

    history = {"rigid": _run_stage([params.angle, params.trans], cfg.rigid_lr, cfg.rigid_iters, objective.rigid,
                                   "3DMM fit (rigid)", cfg.show_progress)}
    nonrigid = [params.id, params.exp, params.angle, params.trans]
    if renderer is not None:
        nonrigid += [params.tex, params.gamma]
    history["nonrigid"] = _run_stage(nonrigid, cfg.nonrigid_lr, cfg.nonrigid_iters, objective.nonrigid,
                                     "3DMM fit (non-rigid)", cfg.show_progress)

    with torch.no_grad():
        losses = {k: float(v) for k, v in objective.nonrigid().items()}
        fitted = FaceCoeffs(**{name: getattr(params, name).detach() for name in LAYOUT})
        geo = model(fitted)
        error = (geo.landmarks - target_up).norm(dim=-1).mean(-1)
    log.info("3DMM fit: landmark error %.3f px (mean over batch), total loss %.4g",
                float(error.mean()), losses["total"])
    return FitResult(coeffs=fitted, proj=geo.proj, landmarks=geo.landmarks, landmark_error=error, losses=losses,
                     history=history)


def fit_photometric(model: ParametricFaceModel, init: FaceCoeffs, target_lmk: torch.Tensor, image: torch.Tensor,
                    cfg: FitConfig | None = None, renderer_cfg: MeshRendererConfig | None = None) -> FitResult:
    """The official two-stage fit with its photometric term (spec-pipeline.md 4), rendered by :class:`MeshRenderer`.

    Stage 2 optimises id, exp, tex, gamma, angle and trans on landmarks + photometric + reflectance + id/exp/tex
    priors with the :class:`FitConfig` weights. For the official start pass ``init=FaceCoeffs.zeros(B)``.

    Args:
        model: the BFM09 face model.
        init: [B, *] initial coefficients.
        target_lmk: [B, 68, 2] detected landmarks in pixels of the 224 image (x right, y down).
        image: [B, 3, S, S] target image in [0, 1]; officially S = 224, a smaller S renders the same view at
            lower resolution (landmarks stay in 224 pixels).
        cfg: iterations, learning rates and loss weights; default ``'official'``.
        renderer_cfg: renderer options; default the model's camera at the image's resolution.

    Returns:
        :class:`FitResult`; ``history['nonrigid']['photo']`` traces the photometric loss.

    Raises:
        InputError: as :func:`fit_landmarks`, or a non-square image, or a renderer size that differs from it.
    """
    if image.ndim != 4 or image.shape[-1] != image.shape[-2]:
        raise InputError(f"image has shape {tuple(image.shape)}, expected a square [B, 3, S, S] in [0, 1]")
    if renderer_cfg is None:
        renderer_cfg = MeshRendererConfig(image_size=int(image.shape[-1]), focal=model.cfg.focal,
                                          center=model.cfg.center)
    return fit_landmarks(model, init, target_lmk, cfg, renderer=MeshRenderer(renderer_cfg), image=image)
