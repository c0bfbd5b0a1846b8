"""Helpers shared by projection and pivotal tuning: rendering at the input camera, resizing, loss progress bar."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from stylenerf import Generator


def render(g: Generator, ws: torch.Tensor, cam2world: torch.Tensor, bg_latent: torch.Tensor,
           freeze_bg: bool) -> torch.Tensor:
    """Synthesise the image the inversion compares with the target (spec 6: freeze_bg, fixed bg latents).

    Args:
        g: generator.
        ws: [1, num_ws, w_dim].
        cam2world: [1, 4, 4] the photo's camera.
        bg_latent: [1, z_dim_bg].
        freeze_bg: background rays from the fixed camera (spec-stylenerf 4.2).

    Returns:
        [1, 3, R, R] image in about [-1, 1].
    """
    return g.synthesis(ws, cam2world, bg_latent=bg_latent, freeze_bg=freeze_bg).img


def area_downsample(img: torch.Tensor, size: int | None) -> torch.Tensor:
    """Area-average [B, C, H, W] down to ``size`` x ``size`` when larger; smaller images pass unchanged."""
    if size is None or img.shape[-1] <= size:
        return img
    return F.interpolate(img, size=(size, size), mode="area")


def resize_image(img: torch.Tensor, size: int) -> torch.Tensor:
    """Resize [B, 3, H, W] to ``size`` x ``size``: area-average when shrinking, antialiased bicubic otherwise."""
    if img.shape[-2:] == (size, size):
        return img
    if img.shape[-2] >= size and img.shape[-1] >= size:
        return F.interpolate(img, size=(size, size), mode="area")
    return F.interpolate(img, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


def device_of(module: torch.nn.Module) -> torch.device:
    """Device of a module's first parameter (CPU for a module without parameters)."""
    return next(module.parameters(), torch.empty(0)).device


class LossBar:
    """A tqdm bar (stderr) whose postfix shows the latest losses; a no-op when disabled."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool) -> None:
        self._bar = None
        if enabled and total > initial:
            try:
                from tqdm.auto import tqdm
            except ImportError:  # pragma: no cover - tqdm is a requirement
                return
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def update(self, **losses: float) -> None:
        """Advance one step and show ``name=value`` for each loss."""
        if self._bar is not None:
            self._bar.update(1)
            # Redraw every step: official steps take seconds, so the losses should show at once.
            self._bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def loss_bar(total: int, initial: int, desc: str, enabled: bool) -> Iterator[LossBar]:
    """Context manager around ``LossBar`` that always closes the bar."""
    bar = LossBar(total, initial, desc, enabled)
    try:
        yield bar
    finally:
        bar.close()
