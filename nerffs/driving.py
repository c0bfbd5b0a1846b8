"""Driving frames: read them from a folder or a video, and estimate per-frame head pose and expression.

Used by the pose-driven mode (camera from each driving frame's head pose, spec-stylenerf.md 7.6) and the
video-driven mode (expression as well, spec-pipeline.md 3.6 item 3 and 9).

NFS resizes each whole driving frame to 224 and feeds it to Deep3D (spec-pipeline.md 3.6 item 3). Here each
frame is first FFHQ-aligned around its largest face (the crop the input photo gets, so driving and input
poses are measured in the same frame); a side effect is that the alignment removes in-plane roll. Frames
without a usable face take the previous frame's values (NFS keeps the previous pose on failure); leading
frames without a face take the first valid frame's values. ``DrivingSequence.valid`` records which frames
had a face.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerffs.errors import InputError, NoFaceError, TinyFaceError
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.recon import Deep3DRegressor, preprocess_rgb_image
from nerffs.preprocess.align import AlignConfig, align_face
from nerffs.preprocess.image import load_image
from nerffs.preprocess.landmarks import LandmarkDetector
from nerffs.utils.logging import progress
from nerffs.utils.modules import module_device

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
"""File endings read as driving frames in a folder (case-insensitive); other files are ignored."""


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting ``frame_2.png`` before ``frame_10.png`` (digit runs compare as numbers)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def _source(path: str | os.PathLike) -> tuple[Path, str]:
    """The resolved path and its kind: ``"folder"``, ``"image"`` or ``"video"``."""
    source = Path(path).expanduser()
    if source.is_dir():
        return source, "folder"
    if not source.is_file():
        raise InputError(f"driving path {source} does not exist; give a folder of frames or a video file")
    return source, "image" if source.suffix.lower() in IMAGE_SUFFIXES else "video"


def list_driving_images(folder: str | os.PathLike) -> list[Path]:
    """The image files of a driving folder in natural order (``frame_2`` before ``frame_10``).

    Raises:
        InputError: the folder holds no .jpg/.jpeg/.png/.webp/.bmp file.
    """
    root = Path(folder).expanduser()
    files = sorted((p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise InputError(f"driving folder {root} has no {'/'.join(IMAGE_SUFFIXES)} images; put the frames "
                         "there or pass a video file")
    return files


def _ffmpeg_reason(exc: Exception) -> str:
    """The last informative line of an ffmpeg error (imageio-ffmpeg puts ffmpeg's whole log in it)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("===")]
    useful = [ln for ln in lines if ":" in ln and not ln.lower().startswith(("ffmpeg version", "built with",
                                                                              "configuration", "lib"))]
    return (useful or lines or [type(exc).__name__])[-1][:200]


def _open_video(source: Path) -> tuple[Iterator[bytes], dict]:
    """Start decoding ``source`` to RGB24; returns the frame generator and ffmpeg's metadata."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(source))
    try:
        meta = next(reader)
    except (OSError, RuntimeError, StopIteration) as exc:
        reader.close()
        raise InputError(f"cannot read driving video {source}: {_ffmpeg_reason(exc)}; use a video file "
                         "ffmpeg can decode or a folder of images") from None
    return reader, meta


def _video_frames(source: Path, reader: Iterator[bytes], meta: dict) -> Iterator[np.ndarray]:
    width, height = meta["size"]
    count = 0
    try:
        for raw in reader:
            count += 1
            yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).copy()
    finally:
        reader.close()  # type: ignore[attr-defined]  # stops ffmpeg when the caller stops early
    if count == 0:
        raise InputError(f"driving video {source} has no video frames; use a clip with a video stream")


def read_driving_frames(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Driving frames one at a time, each ``[H, W, 3]`` uint8 RGB (sizes may differ between images).

    Args:
        path: a folder of images (natural sort order, jpg/png/webp/bmp, EXIF orientation applied), a single
            image, or any video ffmpeg decodes. Errors in the path are raised here, before iteration.

    Returns:
        an iterator over the frames (decoded lazily, so long videos are never held in memory).

    Raises:
        InputError: missing path, empty folder, or a file ffmpeg cannot read (one line).
    """
    source, kind = _source(path)
    if kind == "folder":
        return (load_image(p) for p in list_driving_images(source))
    if kind == "image":
        return iter([load_image(source)])
    reader, meta = _open_video(source)
    return _video_frames(source, reader, meta)


def count_driving_frames(path: str | os.PathLike) -> int:
    """Number of frames :func:`read_driving_frames` yields (a video is decoded once to count exactly).

    Raises:
        InputError: as :func:`read_driving_frames`, or a video without frames.
    """
    source, kind = _source(path)
    if kind == "folder":
        return len(list_driving_images(source))
    if kind == "image":
        return 1
    import imageio_ffmpeg

    _open_video(source)[0].close()  # type: ignore[attr-defined]  # same error message as reading
    try:
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(source))
    except (OSError, RuntimeError) as exc:
        raise InputError(f"cannot count frames of driving video {source}: {_ffmpeg_reason(exc)}") from None
    if frames < 1:
        raise InputError(f"driving video {source} has no video frames; use a clip with a video stream")
    return int(frames)


def driving_fps(path: str | os.PathLike, default: float = 25.0) -> float:
    """Frame rate of a driving video; ``default`` for a folder, an image or a video without a usable rate."""
    source, kind = _source(path)
    if kind != "video":
        return default
    reader, meta = _open_video(source)
    reader.close()  # type: ignore[attr-defined]
    fps = float(meta.get("fps") or 0.0)
    return fps if math.isfinite(fps) and fps > 0 else default


@dataclass
class DrivingSequence:
    """Per-frame Deep3D coefficients of a driving clip.

    Attributes:
        angles: [T, 3] Euler angles (x pitch, y yaw, z roll; radians) -> ``front_matrix`` cameras.
        exp: [T, 64] BFM expression coefficients (the video-driven mode's expressions).
        trans: [T, 3] translation coefficients (unused by the cameras, kept for completeness).
        valid: [T] bool, True where the frame had a face; other rows repeat the previous valid frame.
        fps: frame rate of the driving clip.
    """

    angles: torch.Tensor
    exp: torch.Tensor
    trans: torch.Tensor
    valid: torch.Tensor
    fps: float

    def __post_init__(self) -> None:
        t = self.valid.shape[0]
        expected = {"angles": (t, 3), "exp": (t, 64), "trans": (t, 3), "valid": (t,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"DrivingSequence.{name} must be {list(shape)}, got "
                                 f"{list(getattr(self, name).shape)}")
        if self.valid.dtype != torch.bool:
            raise ValueError(f"DrivingSequence.valid must be bool, got {self.valid.dtype}")

    def __len__(self) -> int:
        return int(self.valid.shape[0])


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Run ``module`` in eval mode (BatchNorm running statistics) and restore its mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _aligned_crop(frame: np.ndarray, detector: LandmarkDetector, cfg: AlignConfig) -> np.ndarray | None:
    """FFHQ-aligned ``[S, S, 3]`` crop of the frame's largest face, or None when there is no usable face."""
    rgb = load_image(frame)
    try:
        return align_face(rgb, detector.detect(rgb), cfg).image
    except (NoFaceError, TinyFaceError) as exc:
        log.debug("driving frame without a usable face: %s", exc)
        return None


def _regress(regressor: Deep3DRegressor, crops: list[np.ndarray]) -> torch.Tensor:
    """Deep3D coefficients [B, 257] of aligned uint8 crops."""
    device, dtype = module_device(regressor)
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).to(device)  # [B, 3, S, S] uint8
    image = preprocess_rgb_image(batch, size=regressor.config.input_size).to(dtype)
    with torch.no_grad():
        return regressor(image).float().cpu()


def _hold_index(valid: list[bool]) -> torch.Tensor:
    """For each frame, the row (among valid frames) of the latest valid frame, the first one for leading gaps."""
    flags = torch.tensor(valid, dtype=torch.long)
    return (torch.cumsum(flags, 0) - 1).clamp(min=0)


def _check_estimate_args(align_size: int, fps: float, batch_size: int, min_face_size: float) -> None:
    if align_size < 16:
        raise InputError(f"align_size must be at least 16 pixels, got {align_size}")
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"driving fps must be > 0, got {fps}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if min_face_size < 1:
        raise InputError(f"min_face_size must be >= 1 pixel, got {min_face_size}")


def estimate_driving(frames: Iterable[np.ndarray], detector: LandmarkDetector, regressor: Deep3DRegressor, *,
                     align_size: int = 224, fps: float = 25.0, show_progress: bool = True, batch_size: int = 16,
                     min_face_size: float = 64.0) -> DrivingSequence:
    """Head pose and expression of every driving frame.

    Per frame: landmarks of the largest face -> FFHQ alignment to ``align_size`` -> Deep3D (on batches of
    ``batch_size`` crops). Frames without a face repeat the previous frame's coefficients (leading ones the
    first valid frame's), see the module docstring.

    Args:
        frames: iterable of ``[H, W, 3]`` uint8 RGB frames, e.g. :func:`read_driving_frames`.
        detector: landmark detector (e.g. a loaded ``DlibLandmarks``; reuse one across calls).
        regressor: Deep3D regressor; run in eval mode (its own mode is restored afterwards).
        align_size: side of the aligned crop, resized to the regressor's input size when different.
        fps: frame rate of the clip, stored in the result.
        show_progress: show a progress bar.
        batch_size: crops per regressor call (bounds memory; results do not depend on it).
        min_face_size: smallest accepted FFHQ crop side in source pixels (about twice the face width).

    Returns:
        DrivingSequence with T = number of frames.

    Raises:
        InputError: no frames, or bad arguments.
        NoFaceError: no frame has a usable face.
    """
    _check_estimate_args(align_size, fps, batch_size, min_face_size)
    cfg = AlignConfig(output_size=align_size, min_face_size=min_face_size)
    total = len(frames) if hasattr(frames, "__len__") else None  # type: ignore[arg-type]
    valid: list[bool] = []
    pending: list[np.ndarray] = []
    chunks: list[torch.Tensor] = []
    with _eval_mode(regressor):
        for frame in progress(frames, desc="driving frames", total=total, enabled=show_progress, unit="frame"):
            crop = _aligned_crop(frame, detector, cfg)
            valid.append(crop is not None)
            if crop is not None:
                pending.append(crop)
            if len(pending) == batch_size:
                chunks.append(_regress(regressor, pending))
                pending = []
        if pending:
            chunks.append(_regress(regressor, pending))
    if not valid:
        raise InputError("no driving frames were given; pass a folder of images or a video with frames")
    if not chunks:
        raise NoFaceError(f"no face found in any of the {len(valid)} driving frames; use a clip that shows a "
                          "clearly visible face")
    coeffs = FaceCoeffs.from_vector(torch.cat(chunks)[_hold_index(valid)])
    missing = valid.count(False)
    if missing:
        log.warning("%d of %d driving frames have no usable face; they repeat the previous frame's pose and "
                       "expression", missing, len(valid))
    return DrivingSequence(angles=coeffs.angle.clone(), exp=coeffs.exp.clone(), trans=coeffs.trans.clone(),
                           valid=torch.tensor(valid, dtype=torch.bool), fps=float(fps))
