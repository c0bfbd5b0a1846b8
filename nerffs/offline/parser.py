"""The offline set's face parser (in place of BiSeNet): masks from the mediapipe face mesh of the image.

It has the two methods the method calls on BiSeNet, with the same shapes and meaning:

* ``mouth_mask``: the mouth region (inner mouth and both lips), here the polygon of the outer lip contour;
* ``static_mask``: the region whose control points are pinned (BiSeNet: hair, neck, cloth). Here everything
  outside the face outline widened by ``static_margin`` face widths: the offline field's foreground covers the
  whole picture (background included), so the background must be pinned too;
* ``head_mask``: the part of the static region that belongs to the head (BiSeNet: hair, hat); here the person
  (selfie segmentation) above the chin. It turns with the head when head motion is rendered by deformation.

A frame in which mediapipe finds no face gets an empty mouth mask (nothing is blended) and a debug log line.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from nerffs.offline.mesh import MediaPipeFace, MeshTopology, mesh_topology
from nerffs.offline.raster import polygon_mask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeshParsingConfig:
    """Settings of :class:`MeshParser`."""

    input_size: int = 128
    """Side of the masks when no size is asked for (and of the static mask the torso points come from)."""
    static_margin: float = 0.15
    """Face widths beyond the face outline that still move with the face (pinned beyond)."""


class MeshParser(nn.Module):
    """``mouth_mask`` / ``static_mask`` of generator images [B, 3, H, W] in [-1, 1] -> [B, 1, S, S] in {0, 1}."""

    def __init__(self, config: MeshParsingConfig | None = None) -> None:
        super().__init__()
        self.config = config or MeshParsingConfig()
        self._face = MediaPipeFace(static_image_mode=True)
        self._topology: MeshTopology | None = None

    def _points(self, image: torch.Tensor) -> list[np.ndarray | None]:
        rgb = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        found = [self._face.landmarks(x) for x in rgb]
        for pts in found:
            if pts is not None and self._topology is None:
                self._topology = mesh_topology(pts)
        return found

    def _size(self, image: torch.Tensor, size: int | tuple[int, int] | None) -> tuple[int, int]:
        if size is None:
            return self.config.input_size, self.config.input_size
        return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))

    def _masks(self, image: torch.Tensor, size, polygon_of) -> torch.Tensor:
        h, w = self._size(image, size)
        out = np.zeros((len(image), 1, h, w), np.float32)
        for i, pts in enumerate(self._points(image)):
            if pts is None:
                log.debug("mesh parser: no face in image %d of the batch", i)
                continue
            scale = np.array([w / image.shape[-1], h / image.shape[-2]])
            out[i, 0] = polygon_of(pts[:, :2] * scale, (h, w))
        return torch.from_numpy(out).to(image.device)

    def mouth_mask(self, image: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """1 inside the outer lip contour (lips and mouth opening)."""
        def polygon(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
            lips = self._topology.lips_outer
            return polygon_mask(np.concatenate([pts[lips.upper], pts[lips.lower[::-1]]]), shape)

        return self._masks(image, size, polygon)

    def static_mask(self, image: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """1 outside the face outline widened by ``static_margin`` face widths."""
        def outside(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
            oval = pts[self._topology.face_oval]
            face = polygon_mask(oval, shape)
            margin = self.config.static_margin * float(np.ptp(oval[:, 0]))
            return (ndimage.distance_transform_edt(~face) > margin).astype(np.float32)

        return self._masks(image, size, outside)

    def head_mask(self, image: torch.Tensor, size: int | tuple[int, int] | None = None) -> torch.Tensor:
        """1 on the person above the chin (hair, ears, the head's outline): with head motion these points
        turn with the head, while the neck, body and background stay pinned."""
        person = torch.from_numpy(np.stack([
            self._face.person_mask(x) for x in
            ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()]))

        def above_chin(pts: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
            oval = pts[self._topology.face_oval]
            rows = np.arange(shape[0])[:, None] + 0.5
            return np.broadcast_to(rows < oval[:, 1].max(), shape).astype(np.float32)

        head = self._masks(image, size, above_chin)
        person = torch.nn.functional.interpolate(person[:, None], size=head.shape[-2:], mode="bilinear",
                                                 align_corners=False).to(head.device)
        return head * (person > 0.5).to(head.dtype)
