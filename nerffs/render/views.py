"""Novel-view rendering of one identity along a camera path (spec-stylenerf.md sections 3-4).

With a frozen background (``freeze_bg``) the background does not depend on the camera, so it is rendered
once and reused for every view; only the foreground NeRF and the upsampler run per frame.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from nerffs.preprocess.image import from_tensor
from nerffs.render.cameras import CameraSpec, camera_path
from nerffs.utils.logging import progress
from stylenerf import Generator
from stylenerf.camera import frontal_camera


@dataclass
class OrbitConfig:
    """A closed camera path around the frontal view."""

    num_frames: int = 48
    """Frames in one loop."""
    yaw_amplitude: float = 0.35
    """Peak yaw offset in radians (the FFHQ training range is about +-0.3)."""
    pitch_amplitude: float = 0.12
    """Peak polar-angle offset in radians (training std 0.155)."""
    fps: float = 25.0


def orbit_cameras(cfg: OrbitConfig, device: torch.device | str = "cpu") -> torch.Tensor:
    """One loop of the 'orbit' camera mode around the frontal view, in ``num_frames`` frames: yaw =
    A sin(2 pi k / n), elevation = B cos(2 pi k / n) (starts looking from above).

    Returns:
        cam2world [num_frames, 4, 4].
    """
    if cfg.num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {cfg.num_frames}")
    spec = CameraSpec(mode="orbit", orbit_yaw=cfg.yaw_amplitude, orbit_pitch=cfg.pitch_amplitude,
                      orbit_period=cfg.num_frames / cfg.fps)
    return camera_path(spec, frontal_camera(1, device), cfg.num_frames, cfg.fps)


@torch.inference_mode()
def render_views(g: Generator, ws: torch.Tensor, cams: torch.Tensor, bg_latent: torch.Tensor,
                 batch_size: int = 4, show_progress: bool = True) -> Iterator[np.ndarray]:
    """Render one identity from many cameras with a frozen, cached background.

    Args:
        g: the generator.
        ws: [1, num_ws, w_dim] styles of the identity.
        cams: [N, 4, 4] cameras.
        bg_latent: [1, z_dim_bg] background latent.
        batch_size: cameras rendered per generator call.
        show_progress: show a progress bar.

    Yields:
        uint8 frames [R, R, 3], in camera order.
    """
    if ws.ndim != 3 or ws.shape[0] != 1:
        raise ValueError(f"ws must be [1, num_ws, w_dim], got {tuple(ws.shape)}")
    bg_feat = None
    starts = range(0, cams.shape[0], batch_size)
    for start in progress(starts, desc="render views", total=len(starts), enabled=show_progress):
        c = cams[start:start + batch_size]
        n = c.shape[0]
        cached = None if bg_feat is None else bg_feat[:1].expand(n, -1, -1)
        out = g.synthesis(ws.expand(n, -1, -1), c, bg_latent=bg_latent.expand(n, -1), freeze_bg=True,
                          bg_feat=cached)
        bg_feat = out.nerf.bg_feat[:1]
        yield from from_tensor(out.img)


def render_view(g: Generator, ws: torch.Tensor, base_cam2world: torch.Tensor, bg_latent: torch.Tensor,
                yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
    """One frame of an identity seen from ``base_cam2world`` turned by ``yaw`` / ``pitch`` radians: the camera of
    every frame of a video made with the ``fixed:yaw=..,pitch=..`` camera spec (``camera_path`` builds it), so a
    single view previews that video's viewpoint (the app's live view sliders).

    Args:
        g: the generator.
        ws: [1, num_ws, w_dim] styles of the identity.
        base_cam2world: [1, 4, 4] the photo's camera.
        bg_latent: [1, z_dim_bg] background latent.
        yaw: azimuth offset in radians (positive turns the camera toward world +y).
        pitch: elevation offset in radians (positive looks from above).

    Returns:
        uint8 frame [R, R, 3].
    """
    cams = camera_path(CameraSpec(mode="fixed", yaw=yaw, pitch=pitch), base_cam2world, 1)
    return next(render_views(g, ws, cams, bg_latent, batch_size=1, show_progress=False))
