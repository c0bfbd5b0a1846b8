"""The animation of a run as numbers: an ``.npz`` with what drove each frame (``--save-coefficients``).

Keys (T frames; written atomically, readable with ``numpy.load`` without pickle):

* ``exp`` [T, 64] float32: the 3DMM expression coefficients of every frame (BFM09 / Deep3D layout);
* ``cams`` [T, 4, 4] float32: camera-to-world matrix of every frame (StyleNeRF convention);
* ``fps`` []: frames per second; ``num_frames`` []: T;
* ``pose`` [T, 3] float32: head pose offsets (pitch, yaw, roll; radians) from the photo's pose, only when the
  head moves;
* ``control_points`` [T, N, 2] float32: the driven control points of the ray deformation in the frontal plane
  (face points, then head points, then static points; ``nerffs.talking.controls``), only when asked for;
* ``models`` []: the model set that made the video (a string).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from nerffs.errors import InputError
from nerffs.talking.loop import FrameRenderer
from nerffs.utils.io import atomic_path

log = logging.getLogger(__name__)


def _f32(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def save_animation(path: str | os.PathLike, exp: torch.Tensor, cams: torch.Tensor, fps: float,
                   pose: torch.Tensor | None = None, control_points: torch.Tensor | np.ndarray | None = None,
                   models: str = "") -> Path:
    """Write the animation ``.npz`` (module docstring) atomically; returns its path.

    Args:
        exp: [T, 64]; cams: [T, 4, 4]; fps: video frame rate; pose: [T, 3] or None;
        control_points: [T, N, 2] or None; models: the model set's label.

    Raises:
        InputError: the shapes do not agree, or the path is not an ``.npz``.
    """
    dest = Path(path)
    if dest.suffix.lower() != ".npz":
        raise InputError(f"the coefficients file must be an .npz, got {dest.name!r}")
    t = int(exp.shape[0])
    arrays: dict[str, np.ndarray] = {"exp": _f32(exp), "cams": _f32(cams), "fps": np.asarray(float(fps)),
                                     "num_frames": np.asarray(t), "models": np.asarray(str(models))}
    if pose is not None:
        arrays["pose"] = _f32(pose)
    if control_points is not None:
        arrays["control_points"] = _f32(control_points)
    expected = {"exp": (t, 64), "cams": (t, 4, 4), "pose": (t, 3)}
    for key, shape in expected.items():
        if key in arrays and arrays[key].shape != shape:
            raise InputError(f"animation {key} must be {list(shape)}, got {list(arrays[key].shape)}")
    if "control_points" in arrays and (arrays["control_points"].ndim != 3 or arrays["control_points"].shape[0] != t
                                       or arrays["control_points"].shape[2] != 2):
        raise InputError(f"control points must be [{t}, N, 2], got {list(arrays['control_points'].shape)}")
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return dest


def save_run_animation(config, talking, ref, exp: torch.Tensor, cams: torch.Tensor, pose: torch.Tensor | None,
                       models: str, chunk: int = 64) -> Path:
    """The pipeline's ``save_coefficients`` step (after the video): the run's animation, with the driven control
    points of every frame when ``save_control_points`` (computed ``chunk`` frames at a time)."""
    rc = config.render
    points = None
    if rc.save_control_points:
        renderer = FrameRenderer(talking, ref, config.loop)
        head = pose if config.motion.moves and config.motion.head_motion == "deform" else None
        with torch.inference_mode():
            points = torch.cat([renderer.driven_controls(exp[s:s + chunk], None if head is None else head[s:s + chunk])
                                .cpu() for s in range(0, exp.shape[0], chunk)])
    path = save_animation(rc.save_coefficients, exp, cams, config.audio.fps, pose=pose, control_points=points,
                          models=models)
    log.info("wrote the animation coefficients %s (exp, cams%s%s)", path, ", pose" if pose is not None else "",
                ", control points" if points is not None else "")
    return path
