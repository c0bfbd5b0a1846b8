"""Internal Difference (paper section 5.3, Table 2): render a sample from the input photo and from its
horizontally flipped copy, compute every metric on both, and report delta = input - flipped.

A model robust to the pose change shows small deltas in every metric (NeRFFaceSpeech on HDTF: FID
36.994 -> 44.363, delta -7.369; CSIM 0.826 -> 0.750, delta 0.077).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from nerffs.preprocess.image import ImageSource, load_image

CONDITIONS = ("input", "flipped")


def flip_photo(image: ImageSource) -> np.ndarray:
    """The h-flipped copy of a photo, uint8 RGB [H, W, 3]."""
    return np.ascontiguousarray(load_image(image)[:, ::-1])


def deltas(input_metrics: Mapping[str, float], flipped_metrics: Mapping[str, float]) -> dict[str, float]:
    """``input - flipped`` for every numeric metric present in both (NaN where either is NaN)."""
    out = {}
    for key, a in input_metrics.items():
        b = flipped_metrics.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
            out[key] = float(a) - float(b) if math.isfinite(a) and math.isfinite(b) else float("nan")
    return out
