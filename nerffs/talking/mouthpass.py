"""Mouth-only LipaintNet pass for a fixed camera: upsample and parse only where the mouth can be.

The LipaintNet pass exists to give the mouth mask (its image, parsed) and the inner-mouth features. While the
camera holds still the mouth stays in a small window, so after a full first pass the loop keeps
:class:`MouthWindow`, the union of the recent mouth masks' boxes widened by ``margin`` NeRF cells, and then

* renders the pass's NeRF features in full (cheap, and exact: the blend reads them only under the mask),
* upsamples only the window, widened by twice the upsampler's reach, and keeps the window's exact pixels,
* parses the window at the scale the whole image is parsed at (``BiSeNet.mouth_mask_crop``) and pastes the
  mask into an empty full-size mask.

A mask that reaches the window's edge (the mouth may continue outside it), an empty history or a parser that
cannot parse crops sends the frame through the full pass. The mask inside the window can differ from
full-frame parsing where the parser pools over the whole image (BiSeNet's attention and context branches);
``LoopConfig.mouth_window = False`` keeps the full pass.
"""
from __future__ import annotations

from collections import deque

import torch


class MouthWindow:
    """Recent mouth-mask boxes (in parse-resolution pixels) -> the window to render, in NeRF cells."""

    def __init__(self, frames: int, margin: int = 3) -> None:
        self.boxes: deque[tuple[int, int, int, int] | None] = deque(maxlen=max(1, frames))
        self.margin = margin

    def update(self, mouth: torch.Tensor) -> None:
        """Record one frame's raw mouth mask [1, 1, S, S] (before smoothing)."""
        m = mouth[0, 0] > 0.5
        if not bool(m.any()):
            self.boxes.append(None)
            return
        rows, cols = m.nonzero(as_tuple=True)
        self.boxes.append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))

    def cells(self, parse_size: int, grid: int) -> tuple[int, int, int, int] | None:
        """Window (y0, y1, x0, x1) in cells of a ``grid`` x ``grid`` feature map, or None when unknown."""
        known = [b for b in self.boxes if b is not None]
        if not known or len(known) < len(self.boxes):
            return None
        to_cell = grid / parse_size
        y0 = min(b[0] for b in known) * to_cell
        y1 = max(b[1] for b in known) * to_cell
        x0 = min(b[2] for b in known) * to_cell
        x1 = max(b[3] for b in known) * to_cell
        m = self.margin
        return (max(0, int(y0) - m), min(grid, int(-(-y1 // 1)) + m),
                max(0, int(x0) - m), min(grid, int(-(-x1 // 1)) + m))


def touches_inner_edge(mask: torch.Tensor, window: tuple[int, int, int, int], grid: int) -> bool:
    """True when a window mask [1, 1, h, w] is set on an edge of the window that is not the image's edge."""
    m = mask[0, 0] > 0.5
    y0, y1, x0, x1 = window
    return bool((y0 > 0 and m[0].any()) or (y1 < grid and m[-1].any()) or (x0 > 0 and m[:, 0].any())
                or (x1 < grid and m[:, -1].any()))


def upsample_window(synthesis, feat: torch.Tensor, img_nerf: torch.Tensor, ws: torch.Tensor,
                    window: tuple[int, int, int, int]) -> torch.Tensor:
    """The upsampled image inside ``window`` (cells), exact: computed on the window widened by twice the
    upsampler's reach. feat [1, F, Rv, Rv], img_nerf [1, 3, Rv, Rv] -> [1, 3, h s, w s]."""
    rv = feat.shape[-1]
    reach = 2 * synthesis.upsample_radius()
    y0, y1, x0, x1 = window
    cy0, cy1, cx0, cx1 = max(0, y0 - reach), min(rv, y1 + reach), max(0, x0 - reach), min(rv, x1 + reach)
    crop = synthesis.upsample(feat[..., cy0:cy1, cx0:cx1], img_nerf[..., cy0:cy1, cx0:cx1], ws)
    s = crop.shape[-1] // (cx1 - cx0)
    return crop[..., (y0 - cy0) * s:(y1 - cy0) * s, (x0 - cx0) * s:(x1 - cx0) * s]
