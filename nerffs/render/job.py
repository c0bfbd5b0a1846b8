"""One run's frames folder as a job: refuse to mix jobs, resume only the same one, restart on request.

The pipeline calls :func:`start_job` at step 1 (before any work: inputs, settings and models are known) and
:func:`finish_job` at step 8 (frame size and count known, nothing rendered yet). Between them the rules are:

* ``restart``: the folder's frames and manifest are removed;
* ``resume``: frames present must come from the same job (``nerffs.render.manifest``), else a one-line
  refusal naming what differs;
* neither: a folder that already holds frames is refused (continue them with resume, or discard them with
  restart), so a new job never overwrites part of another one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from nerffs.errors import InputError
from nerffs.render.cameras import CameraSpec
from nerffs.render.frames import FrameStore
from nerffs.render.manifest import (JobManifest, array_digest, check_same_job, file_digest, frame_settings,
                                    read_manifest, write_manifest)

log = logging.getLogger(__name__)


def input_digests(image: Any, audio: str | os.PathLike | None, transcript: str | None,
                  camera: str) -> dict[str, str | None]:
    """Content hashes of a run's inputs: the photo (file bytes, or the pixels of an array / PIL image), the
    speech, the transcript and the driving clip of a ``driving:PATH`` camera."""
    if isinstance(image, (str, os.PathLike)):
        photo = file_digest(image) if Path(image).is_file() else None
    else:
        photo = array_digest(np.asarray(image))
    digests: dict[str, str | None] = {
        "photo": photo,
        "speech": file_digest(audio) if audio is not None and Path(audio).is_file() else None,
        "transcript": None if transcript is None else hashlib.sha256(transcript.encode()).hexdigest(),
    }
    if isinstance(camera, str) and camera.strip().lower().startswith("driving:"):
        clip = CameraSpec.parse(camera).driving
        digests["driving clip"] = file_digest(clip) if clip and Path(clip).exists() else None
    return digests


def start_job(config: Any, inputs: dict[str, str | None], seed: int, models: dict[str, str]) -> JobManifest | None:
    """Step 1 of a run with a frames folder: the job's manifest (without frame size and count), after applying
    ``restart`` or checking that ``resume`` continues the same job. None without a frames folder.

    Raises:
        InputError: resume of another job's frames, or new frames asked for in a folder that holds some.
    """
    rc = config.render
    if not rc.frames_dir:
        return None
    job = JobManifest(inputs=inputs, settings=frame_settings(config, seed), models=models)
    store = FrameStore(rc.frames_dir)
    present = store.frame_files()
    if rc.restart:
        removed = store.clear()
        if removed:
            log.info("restart: removed %d frames of the previous job from %s", removed, store.dir)
    elif rc.resume:
        if present:
            check_same_job(store.dir, job, read_manifest(store.dir))
        else:
            log.info("nothing to resume in %s: rendering every frame", store.dir)
    elif present:
        raise InputError(f"the frames folder {store.dir} already holds {len(present)} frames of a job; continue "
                         "them with --resume, discard them with --restart (library: resume=True / restart=True), "
                         "or choose another frames folder")
    return job


def finish_job(store: FrameStore, job: JobManifest | None, size: tuple[int, int], num_frames: int,
               resume: bool) -> int:
    """Step 8, before the first frame: complete the manifest with the frame size and count, check it against
    the folder's when resuming, write it (atomically), and return the first frame to render."""
    if job is None:  # frames() called on its own, outside a run
        job = JobManifest(inputs={}, settings={}, models={})
    full = dataclasses.replace(job, frame_size=[int(size[0]), int(size[1])], num_frames=int(num_frames))
    start = 0
    if resume and store.frame_files():
        check_same_job(store.dir, full, read_manifest(store.dir))
        start = store.count_done(num_frames)
    write_manifest(store.dir, full)
    return start
