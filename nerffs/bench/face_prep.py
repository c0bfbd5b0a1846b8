"""Benchmark of the face front end: dlib landmark detection, FFHQ alignment and paste-back on one photo.

``run()`` returns medians over a few repetitions (after one warm-up call) in milliseconds, plus the one-off
model loading time, so ``scripts/benchmark.py`` can tabulate them.
"""
from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nerffs.examples import example_photo
from nerffs.preprocess.align import AlignConfig, align_face, paste_back
from nerffs.preprocess.image import ImageSource, load_image
from nerffs.preprocess.landmarks import DlibConfig, DlibLandmarks

log = logging.getLogger(__name__)


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeats`` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run(image: ImageSource | None = None, repeats: int = 5, output_sizes: tuple[int, ...] = (512, 1024),
        dlib_config: DlibConfig | None = None) -> dict[str, Any]:
    """Time landmark detection, alignment and paste-back.

    Args:
        image: the photo (anything ``load_image`` accepts); None uses the scikit-image astronaut (512x512).
        repeats: timed repetitions per step (the median is reported).
        output_sizes: aligned resolutions to time ``align_face`` and ``paste_back`` at.
        dlib_config: detector settings (default ``DlibConfig()``: HOG, upsample 1).

    Returns:
        dict with ``image_size`` ``[H, W]``, ``detector``, ``faces`` (count), ``load_models_s``, ``detect_ms``
        (detection + 68 landmarks of every face), and per output size ``align_{S}_ms`` and
        ``paste_back_{S}_ms``; times are medians on this machine's CPU.
    """
    rgb = load_image(example_photo() if image is None else image)
    start = time.perf_counter()
    detector = DlibLandmarks(dlib_config).load()
    cfg = detector.config
    result: dict[str, Any] = {"image_size": [int(rgb.shape[0]), int(rgb.shape[1])],
                              "detector": f"dlib-{cfg.detector} upsample {cfg.upsample}",
                              "load_models_s": time.perf_counter() - start, "repeats": repeats}
    result["faces"] = len(detector.detect_all(rgb))
    result["detect_ms"] = _median_ms(lambda: detector.detect(rgb), repeats)
    face = detector.detect(rgb)
    for size in output_sizes:
        align_cfg = AlignConfig(output_size=size, min_face_size=1.0)
        result[f"align_{size}_ms"] = _median_ms(lambda: align_face(rgb, face, align_cfg), repeats)
        aligned = align_face(rgb, face, align_cfg)
        render = np.ascontiguousarray(aligned.image[:, ::-1])  # any same-size image stands in for a render
        result[f"paste_back_{size}_ms"] = _median_ms(lambda: paste_back(rgb, render, aligned), repeats)
    log.info("face_prep benchmark: %s", result)
    return result
