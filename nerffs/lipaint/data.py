"""Self-supervised training pairs for LipaintNet (paper sections 4.4 and 5.1; spec-pipeline.md section 7).

No data set is needed: z ~ N(0, I) is mapped to w (with truncation) and rendered with the frontal camera and
frozen background used by the talking-head loop. The Deep3D regressor estimates the render's 3DMM
coefficients; the pseudo ground truth keeps identity, texture, pose and lighting and adds uniform noise in
[-1, 1] to the expression (beta_target). Target landmarks are the BFM keypoints of the target coefficients
(spec-pipeline.md 3.4: lm68 = projection[keypoints], pixels of the 224 crop, y up).

All randomness comes from the ``torch.Generator`` passed in, so a checkpointed generator state reproduces
the batch stream exactly. ``landmark_grid`` draws the sample grids of the training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from nerffs.face3d.bfm import ParametricFaceModel
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.recon import Deep3DRegressor, preprocess_generator_image
from nerffs.preprocess.image import from_tensor
from nerffs.utils.io import atomic_path
from stylenerf import Generator
from stylenerf.camera import frontal_camera, sample_cameras

CROP = 224.0
"""Deep3D crop size: BFM landmarks are pixels of this crop (y up)."""


@dataclass
class LipaintBatch:
    """One batch of training pairs (B samples).

    Attributes:
        ws: [B, num_ws, w_dim] identity styles (mapping output, truncated).
        cam2world: [B, 4, 4] render camera.
        bg_latent: [B, z_dim_bg] background latent.
        img: [B, 3, R, R] identity render in [-1, 1].
        coeffs: [B, 257] Deep3D estimate of ``img``.
        exp_target: [B, 64] beta_target = estimated expression + U(-1, 1) noise.
        target: [B, 257] pseudo ground-truth coefficients (``coeffs`` with ``exp_target``).
        landmarks_target: [B, 68, 2] BFM landmarks of ``target`` (224-crop pixels, y up).
    """

    ws: torch.Tensor
    cam2world: torch.Tensor
    bg_latent: torch.Tensor
    img: torch.Tensor
    coeffs: torch.Tensor
    exp_target: torch.Tensor
    target: torch.Tensor
    landmarks_target: torch.Tensor

    def to(self, device: torch.device | str) -> "LipaintBatch":
        return LipaintBatch(**{k: v.to(device) for k, v in vars(self).items()})


def render(generator: Generator, ws: torch.Tensor, cam2world: torch.Tensor, bg_latent: torch.Tensor) -> torch.Tensor:
    """ws [B, num_ws, w_dim] -> img [B, 3, R, R] with the loop's frozen background (differentiable in ws)."""
    return generator.synthesis(ws, cam2world, bg_latent=bg_latent, freeze_bg=True).img


def estimate_coeffs(deep3d: Deep3DRegressor, img: torch.Tensor) -> torch.Tensor:
    """Generator image [B, 3, R, R] in [-1, 1] -> Deep3D coefficients [B, 257] (differentiable)."""
    size = deep3d.config.input_size
    return deep3d(preprocess_generator_image(img, size=size))


def landmarks(face_model: ParametricFaceModel, coeffs: torch.Tensor) -> torch.Tensor:
    """Coefficients [B, 257] -> BFM 68 landmarks [B, 68, 2] (differentiable)."""
    return face_model(FaceCoeffs.from_vector(coeffs)).landmarks


@torch.no_grad()
def sample_batch(generator: Generator, deep3d: Deep3DRegressor, face_model: ParametricFaceModel, batch: int,
                 rng: torch.Generator, *, truncation_psi: float = 0.7, exp_noise: float = 1.0,
                 random_pose: bool = False, device: torch.device | str = "cpu") -> LipaintBatch:
    """Draw a batch of pseudo ground-truth pairs (paper 4.4).

    Args:
        generator, deep3d, face_model: frozen networks (eval mode) on ``device``.
        batch: B.
        rng: CPU generator; the only source of randomness.
        truncation_psi: w <- w_avg + psi (w - w_avg).
        exp_noise: half-width of the uniform expression noise (paper: 1).
        random_pose: training-distribution cameras instead of the frontal one.
        device: where the networks live.

    Returns:
        :class:`LipaintBatch` on ``device``.
    """
    z = torch.randn(batch, generator.z_dim, generator=rng).to(device)
    bg_latent = torch.randn(batch, generator.cfg.nerf.z_dim_bg, generator=rng).to(device)
    noise = (torch.rand(batch, 64, generator=rng) * 2 - 1).mul_(exp_noise).to(device)
    if random_pose:
        cam2world = sample_cameras(generator.cfg.camera, batch, rng).to(device)
    else:
        cam2world = frontal_camera(batch, device=device)
    ws = generator.mapping(z, truncation_psi=truncation_psi)
    img = render(generator, ws, cam2world, bg_latent)
    coeffs = estimate_coeffs(deep3d, img)
    parts = FaceCoeffs.from_vector(coeffs)
    exp_target = parts.exp + noise
    target = parts.replace(exp=exp_target).to_vector()
    return LipaintBatch(ws=ws, cam2world=cam2world, bg_latent=bg_latent, img=img, coeffs=coeffs,
                        exp_target=exp_target, target=target, landmarks_target=landmarks(face_model, target))


def _draw_points(img: torch.Tensor, pts: torch.Tensor, color: tuple[float, float, float]) -> torch.Tensor:
    """img [B, 3, R, R] in [-1, 1], pts [B, 68, 2] (224-crop pixels, y up) -> copy with 3x3 dots."""
    out, r = img.detach().float().clone(), img.shape[-1]
    col = ((pts[..., 0] / CROP) * r).round().long()
    row = (((CROP - pts[..., 1]) / CROP) * r).round().long()
    value = torch.tensor(color, device=out.device).view(3, 1)
    for b in range(out.shape[0]):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                y, x = row[b] + dy, col[b] + dx
                ok = (y >= 0) & (y < r) & (x >= 0) & (x < r)
                out[b, :, y[ok], x[ok]] = value
    return out


def landmark_grid(identity: torch.Tensor, result: torch.Tensor, lm_target: torch.Tensor, lm_pred: torch.Tensor,
                  path: Path) -> None:
    """Write a PNG grid: per row identity | identity + target landmarks (green) | result + landmarks (red)."""
    cols = [identity.float(), _draw_points(identity, lm_target, (-1.0, 1.0, -1.0)),
            _draw_points(result, lm_pred, (1.0, -1.0, -1.0))]
    grid = torch.cat([torch.cat(list(c), dim=-1) for c in zip(*cols)], dim=-2)  # [3, rows*R, 3*R]
    with atomic_path(path) as tmp:
        Image.fromarray(from_tensor(grid)).save(tmp, format="PNG")
