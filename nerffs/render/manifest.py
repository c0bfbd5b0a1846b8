"""The job manifest of a frames folder: what made its frames, so --resume never mixes two jobs.

``<frames_dir>/job.json`` is written atomically before the first frame. It records the content hashes of the
inputs (photo, speech, driving clip, transcript), every setting that changes the frames (the run's
``PipelineConfig`` without the options that only concern files: paths, resume flags, encoding quality,
previews, caches, batch size), the seed, the model set (label and weights fingerprint), the frame size and
the frame count. A resume first compares the parts known before any work (inputs, settings, models), then,
once the frame size and count are known and before any frame is written, the whole manifest; any difference
is refused in one line that names what differs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nerffs.errors import InputError
from nerffs.utils.cache import hash_part
from nerffs.utils.io import atomic_write_text, file_sha256, hash_file

MANIFEST_NAME = "job.json"
FORMAT = 1

IGNORED_SETTINGS = frozenset({
    "render.frames_dir", "render.resume", "render.restart", "render.quality", "render.preview_sheet",
    "render.save_coefficients", "render.save_control_points", "identity.cache", "identity.cache_dir",
    "fit.show_progress", "loop.batch_size",
})
"""Config fields that never change a frame (``section.field``)."""


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (streamed), or of a folder's file names and bytes (a folder of frames)."""
    p = Path(path)
    if not p.is_dir():
        return file_sha256(p)
    h = hashlib.sha256()
    for q in sorted(q for q in p.rglob("*") if q.is_file()):
        h.update(str(q.relative_to(p)).encode() + b"\0")
        hash_file(q, h)
    return h.hexdigest()


def array_digest(arr: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    hash_part(h, arr)
    return h.hexdigest()


def frame_settings(config: Any, seed: int) -> dict[str, Any]:
    """The settings that change frames: the config's fields as ``section.field`` -> JSON value, plus the seed."""
    flat: dict[str, Any] = {"seed": int(seed)}
    for section in dataclasses.fields(config):
        values = dataclasses.asdict(getattr(config, section.name))
        for key, value in values.items():
            name = f"{section.name}.{key}"
            if name not in IGNORED_SETTINGS:
                flat[name] = json.loads(json.dumps(value, default=repr))
    return flat


@dataclass
class JobManifest:
    """What made the frames of one folder (see the module docstring)."""

    inputs: dict[str, str | None]
    """Input name -> sha256 of its content (None when absent, e.g. no speech in the video-driven mode)."""
    settings: dict[str, Any]
    """``section.field`` -> value of every setting that changes frames, and ``seed``."""
    models: dict[str, str]
    """``set`` (the model set's label) and ``fingerprint`` (of its weights)."""
    frame_size: list[int] | None = None
    """[H, W] of every frame (known once the photo is aligned)."""
    num_frames: int | None = None
    """Frames of the video (known once the speech is read)."""
    format: int = field(default=FORMAT)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "JobManifest":
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def differences(self, other: "JobManifest") -> list[str]:
        """What differs from ``other`` (the frames' job), as ``name (frames: A; now: B)``; parts still unknown
        (None) on either side are not compared."""
        out = []
        for name in sorted(set(self.inputs) | set(other.inputs)):
            if self.inputs.get(name) != other.inputs.get(name):
                out.append(f"the {name} ({_short(other.inputs.get(name))} -> {_short(self.inputs.get(name))})")
        for name in sorted(set(self.settings) | set(other.settings)):
            old, new = other.settings.get(name), self.settings.get(name)
            if old != new:
                out.append(f"{name.partition('.')[2] or name} ({old!r} -> {new!r})")
        if self.models != other.models:
            what = "model set" if self.models.get("set") != other.models.get("set") else "model weights"
            out.append(f"{what} ({other.models.get('set')} -> {self.models.get('set')})")
        for name, old, new in (("frame size", other.frame_size, self.frame_size),
                               ("frame count", other.num_frames, self.num_frames)):
            if old is not None and new is not None and list(np.atleast_1d(old)) != list(np.atleast_1d(new)):
                out.append(f"{name} ({_size(old)} -> {_size(new)})")
        return out


def _short(digest: str | None) -> str:
    return "none" if digest is None else f"sha256 {digest[:10]}"


def _size(value: Any) -> str:
    return "x".join(str(v) for v in reversed(value)) if isinstance(value, list) else str(value)


def manifest_path(frames_dir: str | os.PathLike) -> Path:
    return Path(frames_dir) / MANIFEST_NAME


def read_manifest(frames_dir: str | os.PathLike) -> JobManifest | None:
    """The folder's manifest, or None when it has none.

    Raises:
        InputError: the manifest exists but cannot be read.
    """
    path = manifest_path(frames_dir)
    if not path.is_file():
        return None
    try:
        return JobManifest.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"the job manifest {path} is unreadable ({exc}); use --restart to discard the frames "
                         "in that folder") from None


def write_manifest(frames_dir: str | os.PathLike, manifest: JobManifest) -> Path:
    """Write the manifest atomically (the folder is created)."""
    path = manifest_path(frames_dir)
    atomic_write_text(path, manifest.to_json())
    return path


def check_same_job(frames_dir: str | os.PathLike, current: JobManifest, recorded: JobManifest | None) -> None:
    """Refuse (one line) to resume ``frames_dir`` when its frames come from another job.

    Raises:
        InputError: no manifest next to existing frames, or a manifest that differs from ``current``.
    """
    if recorded is None:
        raise InputError(f"cannot resume: {frames_dir} holds frames without a job manifest ({MANIFEST_NAME}; made "
                         "by an older nerffs or another tool), so they may belong to another job; use --restart "
                         "to discard them (library: restart=True)")
    diff = current.differences(recorded)
    if diff:
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        raise InputError(f"cannot resume: the frames in {frames_dir} belong to another job: {shown}; rerun with "
                         "that job's inputs and options, or use --restart to discard them (library: restart=True)")
