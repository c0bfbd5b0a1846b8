"""Measurements of the offline demo model set on real photos (what a user of ``make demo`` gets).

For every photo (the scikit-image astronaut and faces cropped at run time from insightface's ``t1.jpg``; none
is stored in the repository) the example sentence is spoken by espeak-ng and rendered with its transcript,
then the output is measured with offline tools only:

* identity: mean dlib-ID L2 between the photo and the frontal output frames (dlib's same-person threshold is
  0.6; "dlib-ID" is a stand-in for ArcFace CSIM, not CSIM);
* face found (dlib HOG) in the talking video's frames, and in an orbit of the identity over yaw +-0.35 rad;
* lip sync: inner-lip opening from dlib landmarks on the output frames against the speech's frame energy,
  Pearson r at the best lag in +-10 frames (a proxy, not LSE), and the mean opening in silent frames;
* time and peak memory of ``python -m scripts.talk`` on 6 s of speech, first run (fit + render, empty cache)
  and cached rerun, in fresh processes;
* the render time per frame added by head motion, by deformation and by the camera.
"""
from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from nerffs.audio import load_audio
from nerffs.audio.speech import synthesize_speech
from nerffs.errors import NoFaceError
from nerffs.examples import EXAMPLE_TEXT, example_photo
from nerffs.metrics.identity import DlibIdentity
from nerffs.metrics.lipsync_proxy import frame_energy, lag_correlation, mouth_opening, video_landmarks
from nerffs.pipeline import TalkingHeadPipeline
from nerffs.preprocess.image import load_image
from nerffs.preprocess.landmarks import DlibLandmarks
from nerffs.render.sheet import SheetConfig, contact_sheet, write_contact_sheet
from nerffs.render.views import render_views
from nerffs.utils.packages import package_dir

log = logging.getLogger(__name__)

ORBIT_YAWS = 15
SILENCE_FRACTION = 0.05
"""Frames whose speech RMS is below this fraction of the clip's 95th-percentile RMS count as silent."""


def benchmark_photos(count: int = 3) -> list[tuple[str, np.ndarray]]:
    """The astronaut, then faces cropped from insightface's t1.jpg (when installed), ``count`` in all."""
    photos = [("astronaut", load_image(example_photo()))]
    root = package_dir("insightface")
    group = root / "data" / "images" / "t1.jpg" if root is not None else None
    if group is None or not group.is_file():
        log.warning("insightface's t1.jpg is not installed; measuring the astronaut only")
        return photos
    img = load_image(group)
    faces = sorted(DlibLandmarks().detect_all(img), key=lambda f: -f.score)
    for face in faces[:count - 1]:
        x0, y0, x1, y1 = face.box
        cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 1.6 * max(x1 - x0, y1 - y0)
        box = [int(max(0, cx - half)), int(max(0, cy - half)), int(min(img.shape[1], cx + half)),
               int(min(img.shape[0], cy + half))]
        photos.append((f"t1.jpg face at x={int(cx)}", np.ascontiguousarray(img[box[1]:box[3], box[0]:box[2]])))
    return photos


def read_frames(video: str | os.PathLike) -> np.ndarray:
    """All frames of a video as uint8 [T, H, W, 3]."""
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)
    w, h = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader])


def detection_rate(frames: np.ndarray, detector: DlibLandmarks) -> float:
    """Fraction of frames in which dlib's HOG detector finds a face."""
    found = 0
    for frame in frames:
        try:
            detector.detect(frame)
            found += 1
        except NoFaceError:
            pass
    return found / max(len(frames), 1)


def measure_video(photo: np.ndarray, frames: np.ndarray, wave: np.ndarray, sample_rate: int, fps: float,
                  detector: DlibLandmarks, identity: DlibIdentity) -> dict[str, Any]:
    """Identity, detection and lip-sync figures of one talking-head video."""
    points = video_landmarks(frames, detector)
    opening = mouth_opening(points)
    energy = frame_energy(wave, sample_rate, fps, len(frames))
    sync = lag_correlation(opening, energy)
    silent = energy < SILENCE_FRACTION * np.percentile(energy, 95)
    ident = identity.score(photo, frames)
    return {"frames": int(len(frames)), "dlib_id_l2": ident.l2, "dlib_id_cosine": ident.cosine,
            "face_detected": float(np.isfinite(points[:, 0, 0]).mean()), "lipsync_r": sync.best_r,
            "lipsync_lag": sync.best_lag, "lipsync_r_at_0": sync.r_at_0, "silent_frames": int(silent.sum()),
            "opening_silent": float(np.nanmean(opening[silent])) if silent.any() else float("nan"),
            "opening_speech": float(np.nanmean(opening[~silent]))}


def measure_orbit(pipe, photo: np.ndarray, detector: DlibLandmarks, yaws: int = ORBIT_YAWS,
                  max_yaw: float = 0.35) -> dict[str, Any]:
    """Face detection rate over an orbit row of the fitted identity (yaw -max_yaw..max_yaw)."""
    _, aligned = pipe.align(photo)
    ws, bg, talking, _ = pipe.identity(aligned, 0)
    cfg = SheetConfig(views=yaws, max_yaw=max_yaw)
    views = np.stack(list(render_views(talking.generator, ws, cfg.cameras(ws.device), bg, show_progress=False)))
    return {"orbit_views": yaws, "orbit_max_yaw": max_yaw, "orbit_face_detected": detection_rate(views, detector)}


def _talk_process(image: Path, audio: Path, out: Path, cache: Path, extra: list[str]) -> dict[str, float]:
    """Run ``scripts.talk`` in a fresh process; wall seconds and this child's peak RSS (GB)."""
    env = dict(os.environ, NERFFS_CACHE=str(cache))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "scripts.talk", str(image), str(audio), "--out", str(out), "--quiet",
                    "--models", "offline", *extra], check=True, env=env, cwd=Path(__file__).resolve().parents[2])
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"seconds": wall, "peak_rss_gb": max(peak, before) / 2**20}


def measure_timing(work: Path, seconds: float = 6.0) -> dict[str, Any]:
    """First run and cached rerun of the CLI on ``seconds`` of espeak-ng speech (no transcript: phones are
    recognised), each in a fresh process. Peak RSS is the largest child so far (the first run dominates)."""
    speech = synthesize_speech(work / "speech6.wav", seconds=seconds)
    cache = work / "cache"
    first = _talk_process(example_photo(), speech, work / "first.mp4", cache, [])
    again = _talk_process(example_photo(), speech, work / "again.mp4", cache, [])
    return {"speech_seconds": seconds, "first_run_s": first["seconds"], "cached_rerun_s": again["seconds"],
            "peak_rss_gb": max(first["peak_rss_gb"], again["peak_rss_gb"])}


def run(photos: int = 3, timing: bool = True, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Every figure of the offline set (see the module docstring); videos go to ``out_dir`` (default: temp)."""
    work = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="nerffs-offline-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pipe = TalkingHeadPipeline.from_pretrained("offline")
    detector, identity = DlibLandmarks().load(), DlibIdentity()
    speech = synthesize_speech(work / "sentence.wav", text=EXAMPLE_TEXT)
    wave = load_audio(speech, pipe.config.audio)
    report: dict[str, Any] = {"models": pipe.models.describe(), "speech": EXAMPLE_TEXT, "photos": {}}
    for k, (name, photo) in enumerate(benchmark_photos(photos)):
        start = time.perf_counter()
        out = pipe(photo, speech, work / f"photo{k}.mp4", transcript=EXAMPLE_TEXT, show_progress=False)
        figures = {"render_s": time.perf_counter() - start,
                   **measure_video(photo, read_frames(out.video), wave, pipe.config.audio.sample_rate,
                                   pipe.config.audio.fps, detector, identity),
                   **measure_orbit(pipe, photo, detector)}
        report["photos"][name] = figures
        log.info("offline benchmark %s: %s", name, figures)
    if timing:
        report["timing"] = measure_timing(work)
        report["head_motion"] = measure_motion_cost()
    if out_dir is not None:
        report["head_motion_sheet"] = str(head_motion_sheet(work / "head_motion_sheet.png"))
    return report


def measure_motion_cost(frames: int = 50, repeats: int = 2) -> dict[str, Any]:
    """Per-frame render time of the offline loop without head motion, with it turned by deformation and by
    the camera (same clip, cached fit and reference; median of ``repeats``). The deformation mode adds the
    3DMM rotation and head points per frame; the camera mode moves the camera, so samples are matched to
    control points again every frame."""
    work = Path(tempfile.mkdtemp(prefix="nerffs-motion-bench-"))
    speech = synthesize_speech(work / "s.wav", seconds=frames / 25.0)
    pipe = TalkingHeadPipeline.from_pretrained("offline")
    pipe(example_photo(), speech, work / "warm.mp4", show_progress=False, pose="none")  # fit and cache once
    out: dict[str, Any] = {"frames": frames}
    for name, options in (("none", {"pose": "none"}), ("deform", {"pose": "audio", "head_motion": "deform"}),
                          ("camera", {"pose": "audio", "head_motion": "camera"})):
        times = []
        for _ in range(repeats):
            run = pipe(example_photo(), speech, work / f"{name}.mp4", show_progress=False, **options)
            times.append(run.timings["render"] / run.num_frames)
        out[f"{name}_s_per_frame"] = float(np.median(times))
    out["deform_added_s_per_frame"] = out["deform_s_per_frame"] - out["none_s_per_frame"]
    out["camera_added_s_per_frame"] = out["camera_s_per_frame"] - out["none_s_per_frame"]
    return out


def head_motion_sheet(path: str | os.PathLike, pose_scale: float = 1.0) -> Path:
    """The README's head-motion figure: the example with speech-driven head motion (offline models, turned by
    deformation): frames where the head is turned furthest, and a map of how much each pixel moves over the
    clip (mean absolute change from frame 0), which shows the head moving and the body and background still."""
    work = Path(tempfile.mkdtemp(prefix="nerffs-motion-sheet-"))
    speech = synthesize_speech(work / "s.wav", text=EXAMPLE_TEXT)
    pipe = TalkingHeadPipeline.from_pretrained("offline")
    out = pipe(example_photo(), speech, work / "talk.mp4", transcript=EXAMPLE_TEXT, show_progress=False,
               pose="audio", head_motion="deform", pose_scale=pose_scale)
    frames = read_frames(out.video)
    pose = out.pose.cpu().numpy()
    picks = sorted({0, *(int(np.argmax(sign * pose[:, axis])) for axis in (0, 1, 2) for sign in (1, -1))})
    change = np.abs(frames.astype(np.float32) - frames[:1]).mean(axis=(0, 3))
    heat = np.clip(change / max(float(np.percentile(change, 99.5)), 1e-6), 0, 1)
    heat_rgb = (np.stack([heat, heat ** 2, 0.2 + 0.0 * heat], -1) * 255).astype(np.uint8)
    labels = [f"frame {i}: p{pose[i, 0]:+.2f} y{pose[i, 1]:+.2f} r{pose[i, 2]:+.2f}" for i in picks]
    sheet = contact_sheet([frames[i] for i in picks] + [heat_rgb], [],
                          "nerffs - offline demo models - speech-driven head motion (turned by deformation), "
                          "pose in rad; last: mean pixel change over the clip", frame_labels=labels + ["motion map"])
    return write_contact_sheet(path, sheet)
