"""Head motion: per-frame head rotations and the two ways of rendering them (issue: natural motion).

A pose sequence is [T, 3] Deep3D angle offsets (pitch x, yaw y, roll z; radians) from the reference pose.
Sources: SadTalker's Audio2Pose (``nerffs.audio.audio2pose``, when its weights are loaded), a procedural
speech-correlated motion (:func:`procedural_pose`: small nods on stressed syllables, slow drift), or the
head pose of a driving clip.

Rendering (``MotionConfig.head_motion``):

* ``'deform'`` (head turns, body still): the face control points are the 3DMM rotated about a neck pivot,
  the head's other points (hair) turn about the same pivot, and the body and background points stay pinned;
  the ray deformation then turns the head while the shoulders stay (:func:`rotate_about_pivot`,
  :func:`turn_plane_points`);
* ``'camera'``: the whole scene turns: every frame's camera is rotated about the origin by the inverse head
  rotation (:func:`nerffs.render.cameras.pose_cameras`), as the official video-driven mode does with driving
  poses.

Offsets are scaled by ``pose_scale``, clamped to ``max_angles`` (what the prior renders well) and smoothed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nerffs.errors import InputError
from nerffs.face3d.bfm import compute_rotation
from nerffs.render.cameras import smooth_angles, world_rotation

POSES = ("none", "audio", "driving")
HEAD_MOTIONS = ("deform", "camera")


@dataclass(frozen=True)
class MotionConfig:
    """Head motion options (flat names: they are routed by ``PipelineConfig.replace``)."""

    pose: str = "none"
    """Where head motion comes from: 'none', 'audio' (Audio2Pose, or the procedural motion without its
    weights) or 'driving' (the driving clip's head pose; needs camera 'driving:CLIP')."""
    pose_style: int = 0
    """Audio2Pose pose-style class, 0..45 (also seeds the procedural motion's character)."""
    pose_scale: float = 1.0
    """Multiplies the head rotations (0 = no head motion)."""
    head_motion: str = "deform"
    """'deform': the head turns through the ray deformation, body still; 'camera': the whole scene turns."""
    max_angles: tuple[float, float, float] = (0.2, 0.3, 0.15)
    """Largest |pitch|, |yaw|, |roll| offsets in radians (after scaling)."""
    pose_smooth: int = 5
    """Frames of the centred moving average applied to the offsets."""

    def __post_init__(self) -> None:
        if self.pose not in POSES:
            raise InputError(f"pose must be one of {', '.join(POSES)}, got {self.pose!r}")
        if self.head_motion not in HEAD_MOTIONS:
            raise InputError(f"head motion must be one of {', '.join(HEAD_MOTIONS)}, got {self.head_motion!r}")
        if not 0 <= int(self.pose_style) <= 45:
            raise InputError(f"pose style must be a class from 0 to 45, got {self.pose_style}")
        if not (math.isfinite(self.pose_scale) and self.pose_scale >= 0):
            raise InputError(f"pose scale must be >= 0, got {self.pose_scale}")
        if self.pose_smooth < 1:
            raise InputError(f"pose smoothing must be >= 1 frame, got {self.pose_smooth}")

    @property
    def moves(self) -> bool:
        return self.pose != "none" and self.pose_scale > 0


def prepare_pose(offsets: torch.Tensor, cfg: MotionConfig) -> torch.Tensor:
    """Scale, smooth and clamp raw offsets [T, 3] -> [T, 3] (zeros when the scale is 0)."""
    if offsets.ndim != 2 or offsets.shape[1] != 3:
        raise InputError(f"pose offsets must be [T, 3] (pitch, yaw, roll), got {tuple(offsets.shape)}")
    x = smooth_angles(offsets.to(torch.float32) * cfg.pose_scale, cfg.pose_smooth)
    limit = torch.tensor(cfg.max_angles, dtype=x.dtype, device=x.device)
    return torch.maximum(torch.minimum(x, limit), -limit)


def procedural_pose(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float, style: int = 0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Speech-correlated head motion [T, 3] (pitch, yaw, roll offsets in radians), seeded.

    Nods: a short down-and-back pitch bump (0.36 s) at each stressed syllable, taken as the peaks of the
    smoothed loudness envelope that rise clearly above the clip's median speech level. Drift: slow sums of
    sines (0.07-0.3 Hz) on all three angles, about twice as large while speaking as in silence. ``style``
    scales the character (0 calm ... 45 lively) the way Audio2Pose's class does; ``generator`` seeds the drift.
    """
    env = _loudness(wave, sample_rate, num_frames, fps)
    t = np.arange(num_frames) / fps
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
    lively = 0.7 + 0.6 * (int(style) / 45.0)
    pose = np.zeros((num_frames, 3))
    for axis, amp in enumerate((0.025, 0.05, 0.02)):
        freqs = rng.uniform(0.07, 0.3, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.dirichlet(np.ones(3))
        pose[:, axis] = amp * lively * (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])
                                        ).sum(0)
    activity = np.convolve(env, np.ones(25) / 25, mode="same")
    pose *= (0.5 + activity / max(activity.max(), 1e-6))[:, None]
    kernel = np.sin(np.pi * np.arange(9) / 8) ** 2                     # 9 frames = 0.36 s at 25 fps
    for peak, height in _stress_peaks(env, fps):
        lo, hi = peak - 2, min(num_frames, peak + 7)
        if lo >= 0:
            pose[lo:hi, 0] += 0.04 * lively * height * kernel[:hi - lo]  # pitch: chin down, then back
    return torch.from_numpy(pose.astype(np.float32))


def _loudness(wave: np.ndarray, sample_rate: int, num_frames: int, fps: float) -> np.ndarray:
    """Per-frame loudness in [0, 1]: RMS in dB between the clip's floor and its loud level."""
    hop = sample_rate / fps
    rms = np.array([np.sqrt(np.mean(np.square(wave[int(i * hop):int((i + 1) * hop)], dtype=np.float64)) + 1e-12)
                    for i in range(num_frames)])
    db = 20 * np.log10(rms + 1e-9)
    loud = np.percentile(db, 95) if num_frames else 0.0
    return np.clip((db - (loud - 35.0)) / 35.0, 0.0, 1.0)


def _stress_peaks(env: np.ndarray, fps: float) -> list[tuple[int, float]]:
    """(frame, height) of stressed syllables: local maxima of the 3-frame-smoothed envelope above the median
    speech level by a margin, at least 0.3 s apart (the taller wins)."""
    if env.size < 3:
        return []
    smooth = np.convolve(env, np.ones(3) / 3, mode="same")
    speech = smooth[smooth > 0.2]
    if speech.size == 0:
        return []
    threshold = float(np.median(speech)) + 0.1
    cand = [i for i in range(1, len(smooth) - 1)
            if smooth[i] >= smooth[i - 1] and smooth[i] > smooth[i + 1] and smooth[i] > threshold]
    chosen: list[int] = []
    for i in sorted(cand, key=lambda k: -smooth[k]):
        if all(abs(i - j) >= 0.3 * fps for j in chosen):
            chosen.append(i)
    top = max((smooth[i] for i in chosen), default=1.0)
    return [(i, float(smooth[i] / top)) for i in sorted(chosen)]


def rotate_about_pivot(verts: torch.Tensor, offsets: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
    """Turn 3DMM vertices [B, V, 3] (model space, row vectors) by the offsets [B, 3] about ``pivot`` [3]."""
    rot = compute_rotation(offsets.to(verts))                       # [B, 3, 3] = R^T for row vectors
    return (verts - pivot) @ rot + pivot


def turn_plane_points(points: torch.Tensor, offsets: torch.Tensor, pivot: torch.Tensor) -> torch.Tensor:
    """Turn head points of the frontal control plane about a world pivot.

    The points [N, 2] (world y, z) are lifted to the head's mid-plane x = 0 (where hair at the sides and top of
    a head sits), rotated by the world rotation of the offsets [B, 3] about ``pivot`` [3] (world x, y, z) and
    projected back: [B, N, 2].
    """
    rot = world_rotation(offsets.to(points))                        # [B, 3, 3]
    lifted = torch.cat([torch.zeros_like(points[:, :1]), points], dim=1) - pivot  # [N, 3]
    turned = torch.einsum("bij,nj->bni", rot, lifted) + pivot
    return turned[..., 1:]


def neck_pivot(verts: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
    """The head's turning point in 3DMM model space: below the nose base by 0.3 face heights and half a face
    width behind the face's mean depth (about where the skull sits on the spine).

    Args:
        verts: [V, 3] posed reference vertices (x right, y up, z toward the viewer).
        keypoints: [68] vertex indices of the iBUG landmarks.

    Returns:
        [3].
    """
    kp = verts[keypoints]
    height = (kp[27, 1] - kp[8, 1]).abs()
    width = (kp[16, 0] - kp[0, 0]).abs()
    centre = verts.mean(dim=0)
    return torch.stack([centre[0], kp[33, 1] - 0.3 * height, centre[2] - 0.5 * width])
