"""Helpers of the Gradio demo (app.py) that need no Gradio: request options, previews, temporary files.

The demo keeps its UI wiring in ``app.py``; everything here is plain Python and testable without a browser:

* ``camera_spec`` / ``run_options``: the UI's controls -> the pipeline's flat ``PipelineConfig`` overrides;
* ``landmark_overlay``: the aligned crop with its 68 landmarks drawn on (shows why a photo fails);
* ``preview_identity``: aligned face, overlay, a short novel-view orbit and the ``PreparedIdentity`` (before the
  long run); ``PreparedIdentity.view``: one frame of it from a yaw/pitch camera (the live view's sliders);
* ``faces_preview``: the photo with every detected face boxed and numbered (the face picker);
* ``Workspace``: per-request temporary folders, removed once old, at exit and on SIGTERM
  (``install_termination_cleanup``);
* ``user_message``: an error line with server paths replaced by the names the user uploaded.

Requests share one pipeline: its calls hold no per-call state, so the app bounds CPU use with Gradio's queue
(``concurrency_limit``), not with a lock. The streamed video of a running call is ``nerffs.serving``'s.
"""
from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from nerffs.errors import InputError
from nerffs.preprocess.faces import detect_faces, face_overlay
from nerffs.preprocess.image import load_image_layers
from nerffs.progress import ProgressCallback, ProgressEvent
from nerffs.render.video import write_video
from nerffs.render.views import OrbitConfig, orbit_cameras, render_view, render_views
from stylenerf import Generator

log = logging.getLogger(__name__)

CAMERA_MODES = ("input pose", "fixed", "orbit")
"""Camera choices of the demo; a driving video, when given, replaces them with its own head pose."""

# The 68-point (iBUG) landmark groups, drawn as polylines: (first, last index, closed).
_LANDMARK_GROUPS = ((0, 16, False), (17, 21, False), (22, 26, False), (27, 30, False), (31, 35, False),
                    (36, 41, True), (42, 47, True), (48, 59, True), (60, 67, True))


def camera_spec(mode: str, yaw_deg: float = 0.0, pitch_deg: float = 0.0, period: float = 4.0,
                driving: str | os.PathLike | None = None) -> str:
    """The pipeline's camera spec for the demo's controls (angles in degrees, period in seconds).

    ``input pose``: the photo's own pose; ``fixed``: a still camera at yaw/pitch; ``orbit``: a loop with
    yaw/pitch amplitudes and a period. A driving video overrides the mode ('driving:PATH').
    """
    if driving:
        return f"driving:{driving}"
    mode = (mode or "input pose").strip().lower()
    if mode in ("input", "input pose"):
        return "input"
    if mode == "fixed":
        return f"fixed:yaw={float(yaw_deg):g}deg,pitch={float(pitch_deg):g}deg"
    if mode == "orbit":
        if not float(period) > 0:
            raise InputError(f"orbit period must be > 0 seconds, got {period}")
        return f"orbit:yaw={float(yaw_deg):g}deg,pitch={float(pitch_deg):g}deg,period={float(period):g}"
    raise InputError(f"unknown camera mode {mode!r}; choose one of {', '.join(CAMERA_MODES)}")


HEAD_MOTIONS = ("still", "nod with the speech", "nod with the speech (turn the camera)")
"""Head-motion choices of the demo: none, from the audio by deformation (body still), from the audio by camera."""


def face_number(value: float | int | None) -> int | None:
    """The face picker's number -> ``face_index`` (0 or empty: None, the default face 0)."""
    if value is None or value == "":
        return None
    number = float(value)
    if not number.is_integer() or number < 0:
        raise InputError(f"face number must be a whole number >= 0 (0 = the best ranked face), got {value}")
    return int(number) or None


def run_options(*, exp_scale: float, momentum: float, mask_window: int, blink: bool, camera: str,
                expression_from_driving: bool = False, paste_back: bool = False, head: str | None = None,
                pose_scale: float = 1.0, blink_strength: float = 1.0, face_index: int | None = None
                ) -> dict[str, object]:
    """The demo's controls as flat ``PipelineConfig`` overrides (validated where the pipeline would fail late).
    ``head`` None keeps the model set's default head motion; ``face_index`` None the default face."""
    window = int(mask_window)
    if window < 1:
        raise InputError(f"mask window must be >= 1 frame, got {mask_window}")
    if expression_from_driving and not camera.startswith("driving:"):
        raise InputError("expressions from a driving video need a driving video; upload one or use the audio")
    options: dict[str, object] = {
        "exp_scale": float(exp_scale), "ref_momentum": float(momentum), "mask_window": window,
        "blink": "random" if blink else "none", "camera": camera, "blink_strength": float(blink_strength),
        "expression": "driving" if expression_from_driving else "audio", "paste_back": bool(paste_back)}
    if head is not None:
        if head not in HEAD_MOTIONS:
            raise InputError(f"unknown head motion {head!r}; choose one of {', '.join(HEAD_MOTIONS)}")
        options["pose"] = "none" if head == HEAD_MOTIONS[0] else "audio"
        options["head_motion"] = "camera" if head == HEAD_MOTIONS[2] else "deform"
        options["pose_scale"] = float(pose_scale)
    if face_index is not None:
        options["face_index"] = int(face_index)
    return options


def models_banner(models) -> str:
    """The demo's banner (Markdown): which model set renders, and what that means for the result."""
    if models.source == "smoke":
        return ("**SMOKE models in use**: seeded random weights, so the video shows no face. It proves the "
                "pipeline runs; use `--models offline` for the offline demo models, or put the official weights "
                "in place (`python -m scripts.download_weights`) and restart.")
    if models.source == "offline":
        return ("**OFFLINE demo models in use** (not the official NeRFFaceSpeech weights): each photo is fitted "
                "on first use (a few seconds, then cached) as a radiance field of the photo with a rule-based face "
                "model; the mouth follows phones recognised in the speech (aligned to the text when you use "
                "*Speak*). Put the official weights in place (`python -m scripts.download_weights`) and restart "
                "for the method's networks.")
    return f"Weights: **{models.describe()}**."


def status_line(event: ProgressEvent | None) -> str:
    """The running job's status (Markdown): its step in user words and its share of the whole call."""
    if event is None:
        return "Starting..."
    return f"**{event.label}** ({event.overall:.0%})"


def landmark_overlay(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Draw 68 landmarks (iBUG order) on a copy of ``image``. uint8 [H, W, 3], [68, 2] -> uint8 [H, W, 3]."""
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    pts = [(float(x), float(y)) for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2)]
    r = max(1.0, img.width / 160)
    width = max(1, round(img.width / 256))
    if len(pts) == 68:
        for first, last, closed in _LANDMARK_GROUPS:
            line = pts[first:last + 1] + ([pts[first]] if closed else [])
            draw.line(line, fill=(0, 255, 128), width=width)
    for x, y in pts:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 64, 64))
    return np.asarray(img)


@dataclass(frozen=True)
class PreparedIdentity:
    """A face ready to be seen from any camera: what the live view keeps per browser session.

    ws [1, num_ws, w_dim], bg_latent [1, z_dim_bg], the generator that renders them (the PTI-tuned copy, or the
    offline field fitted to the photo) and the photo's camera [1, 4, 4] (Deep3D pose for the official and smoke
    sets, the frontal camera for the offline set), exactly as ``TalkingHeadPipeline.identity`` returns them.
    """

    ws: torch.Tensor
    bg_latent: torch.Tensor
    generator: Generator
    camera: torch.Tensor

    def view(self, yaw_deg: float = 0.0, pitch_deg: float = 0.0) -> np.ndarray:
        """One frame uint8 [R, R, 3] from the photo's camera turned by ``yaw_deg`` / ``pitch_deg`` degrees: the
        camera of a video made with ``camera_spec("fixed", yaw_deg, pitch_deg)``."""
        return render_view(self.generator, self.ws, self.camera, self.bg_latent, yaw=float(np.deg2rad(yaw_deg)),
                           pitch=float(np.deg2rad(pitch_deg)))


@dataclass
class Preview:
    """What the demo shows before the long render."""

    aligned: np.ndarray
    """uint8 [S, S, 3] aligned crop."""
    overlay: np.ndarray
    """uint8 [S, S, 3] crop with landmarks."""
    orbit: Path | None
    """mp4 of the identity seen from an orbit of cameras (None when ``num_views`` is 0)."""
    identity: PreparedIdentity
    """The identity, for single views from any camera (``PreparedIdentity.view``)."""


def preview_identity(pipe, image, out_dir: str | os.PathLike, *, seed: int = 0, num_views: int = 16,
                     show_progress: bool = True, face_index: int | None = None,
                     progress: ProgressCallback | None = None) -> Preview:
    """Align the photo (face ``face_index``, None: face 0), draw its landmarks, prepare the identity and render it
    from ``num_views`` orbit cameras.

    Uses the pipeline's own steps (alignment and identity are cached per face, so the following talking-head
    run reuses them); ``progress`` receives their ``ProgressEvent`` s (align, identity with PTI's steps).
    """
    call = pipe.call(progress=progress)
    call.report.start("align")
    _, aligned = pipe.align(image, face_index=face_index, call=call)
    overlay = landmark_overlay(aligned.image, aligned.points)
    call.report.start("identity")
    ws, bg, talking, camera = pipe.identity(aligned, seed, call)
    call.report.end("identity")
    identity = PreparedIdentity(ws=ws, bg_latent=bg, generator=talking.generator, camera=camera)
    orbit = None
    if num_views > 0:
        cfg = OrbitConfig(num_frames=int(num_views), fps=8.0)
        frames = render_views(talking.generator, ws, orbit_cameras(cfg, device=ws.device), bg,
                              show_progress=show_progress)
        orbit = write_video(frames, Path(out_dir) / "orbit_preview.mp4", fps=cfg.fps)
    return Preview(aligned=aligned.image, overlay=overlay, orbit=orbit, identity=identity)


def faces_preview(pipe, image, face_index: int | None = None) -> tuple[np.ndarray, int]:
    """The photo with every detected face boxed and numbered as ``face_index`` counts them (the chosen one in
    green, doubtful detections marked '?'), and the number of faces. Large photos are drawn at most 1024 px."""
    layers = load_image_layers(image)
    det = pipe.detector
    faces = detect_faces(det, layers.rgb, layers.straight, layers.alpha)
    overlay = face_overlay(layers.rgb, faces, det.confident_score, chosen=face_index or 0)
    if max(overlay.shape[:2]) > 1024:
        scale = 1024 / max(overlay.shape[:2])
        size = (max(1, round(overlay.shape[1] * scale)), max(1, round(overlay.shape[0] * scale)))
        overlay = np.asarray(Image.fromarray(overlay).resize(size, Image.Resampling.LANCZOS))
    return overlay, len(faces)


def user_message(message: str, uploads: Mapping[str, str] | None = None, roots: tuple[str, ...] = ()) -> str:
    """``message`` with server-side paths shown as the user knows them: each uploaded file's path replaced by
    its name (``uploads``: path -> name), and any other path under ``roots`` (temporary folders) by its last
    part."""
    for path, name in sorted((uploads or {}).items(), key=lambda kv: -len(kv[0])):
        if path:
            message = message.replace(str(path), name)
    for root in sorted((r for r in roots if r), key=len, reverse=True):
        message = re.sub(re.escape(str(root).rstrip(os.sep)) + r"[^\s'\",;:)]*",
                         lambda m: Path(m.group(0)).name or "(temporary folder)", message)
    return message


def install_termination_cleanup(*cleanups: Callable[[], None]) -> None:
    """On SIGTERM (and SIGHUP where it exists): run ``cleanups`` (e.g. ``Workspace.close``), then exit with
    128 + the signal number, so a stopped server leaves no temporary folder behind (atexit alone does not run
    when a signal kills the process). Call from the main thread of the program (e.g. ``app.main``)."""
    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        for cleanup in cleanups:
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up, then exit
                log.warning("cleanup on signal %d failed: %s", signum, exc)
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)


class Workspace:
    """Per-request temporary folders under one private root.

    ``new()`` first removes request folders older than ``max_age`` seconds (Gradio has copied their files
    into its own cache by then); ``close()`` (also registered with atexit) removes the root.
    """

    def __init__(self, root: str | os.PathLike | None = None, max_age: float = 600.0):
        self.root = Path(tempfile.mkdtemp(prefix="nerffs-app-", dir=root))
        self.max_age = float(max_age)
        self._lock = threading.Lock()
        atexit.register(self.close)

    def new(self) -> Path:
        with self._lock:
            self.sweep()
            path = self.root / f"{time.time():.0f}-{uuid.uuid4().hex[:8]}"
            path.mkdir(parents=True)
            return path

    def sweep(self, max_age: float | None = None) -> int:
        """Remove request folders older than ``max_age`` (default ``self.max_age``); returns how many."""
        limit = self.max_age if max_age is None else max_age
        now, removed = time.time(), 0
        if not self.root.is_dir():
            return 0
        for child in self.root.iterdir():
            if not child.is_dir():  # files at the top (e.g. example inputs) live as long as the app
                continue
            try:
                old = now - child.stat().st_mtime >= limit
            except OSError:
                continue
            if old:
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        return removed

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def check_image_file(path: str | os.PathLike | None) -> Path:
    """An uploaded photo must exist and decode as an image (one-line error otherwise)."""
    if path is None or not str(path):
        raise InputError("no photo given; upload a portrait photo (jpg/png/webp)")
    p = Path(path)
    if p.is_dir():
        raise InputError(f"the photo {p.name!r} is a folder; upload an image file (jpg/png/webp)")
    if not p.is_file():
        raise InputError(f"photo not found: {p.name}")
    try:
        with Image.open(p) as img:
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(f"the photo {p.name!r} is not a readable image; upload a jpg, png or webp file") from None
    return p
