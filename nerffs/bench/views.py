"""Benchmark of the app's live view: one frame of a prepared identity from the yaw/pitch sliders' camera.

For each model set (``smoke``: seeded random weights; ``offline``: the offline demo models fitted to the
scikit-image astronaut), the identity is prepared once the way the app's *Preview face* does
(``nerffs.app_support.preview_identity``: align + identity, cached per face), then ``PreparedIdentity.view`` is
timed at ``repeats`` distinct slider positions after one warm-up render, at each torch thread count. The
median and the slowest render are reported (a slider drag asks for one frame per position). With espeak-ng, the
same is timed again while a talking-head video of the same face renders in another thread of the process (as
in the app, where the live view has its own queue); that render is cancelled once the views are timed.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerffs.app_support import PreparedIdentity, preview_identity
from nerffs.audio.speech import find_espeak
from nerffs.examples import EXAMPLE_TEXT, example_photo, example_speech
from nerffs.pipeline import TalkingHeadPipeline


def slider_positions(count: int) -> list[tuple[float, float]]:
    """``count`` distinct (yaw, pitch) slider positions in degrees across the sliders' ranges."""
    yaws = np.linspace(-30.0, 30.0, count)
    pitches = np.resize(np.array([-20.0, -10.0, 0.0, 10.0, 20.0]), count)
    return [(float(y), float(p)) for y, p in zip(yaws, pitches)]


def time_views(identity: PreparedIdentity, repeats: int, while_alive: threading.Thread | None = None
               ) -> list[float]:
    """Seconds per view at ``repeats`` slider positions (only those taken while ``while_alive`` runs, if given)."""
    times = []
    for yaw, pitch in slider_positions(repeats):
        t0 = time.perf_counter()
        identity.view(yaw, pitch)
        if while_alive is None or while_alive.is_alive():
            times.append(time.perf_counter() - t0)
    return times


def time_views_during_render(pipe, identity: PreparedIdentity, speech: Path, out: Path, repeats: int
                             ) -> list[float]:
    """``time_views`` while ``pipe`` renders a video of the same photo in another thread (frames step)."""
    rendering, stop = threading.Event(), threading.Event()

    def progress(event) -> None:
        if stop.is_set():
            raise CancelledError("views timed")
        if event.step == "frames" and event.done > 0:
            rendering.set()

    def render() -> None:
        try:
            pipe(example_photo(), speech, out, show_progress=False, progress=progress)
        except CancelledError:
            pass
        finally:
            rendering.set()

    thread = threading.Thread(target=render, name="bench-render")
    thread.start()
    rendering.wait()
    try:
        return time_views(identity, repeats, while_alive=thread)
    finally:
        stop.set()
        thread.join()


def _row(times: list[float], threads: int, key: str = "") -> dict[str, Any]:
    if not times:
        return {}
    return {f"{key}median_s": round(statistics.median(times), 4), f"{key}max_s": round(max(times), 4),
            f"{key}renders": len(times), "threads": threads}


def bench_views(models: str, repeats: int = 9, threads: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """Seconds per live-view frame of one model set, per torch thread count (medians of ``repeats``), alone and
    while a video renders (when espeak-ng can speak the example sentence)."""
    pipe = TalkingHeadPipeline.from_pretrained(models)
    before = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        identity = preview_identity(pipe, example_photo(), tmp, num_views=0, show_progress=False).identity
        prepare_s = time.perf_counter() - t0
        speech = example_speech(Path(tmp) / "speech.wav", EXAMPLE_TEXT) if find_espeak() else None
        try:
            for count in threads:
                torch.set_num_threads(count)
                frame = identity.view(0.0, 0.0)  # warm-up
                row = _row(time_views(identity, repeats), count)
                if speech is not None:
                    row.update(_row(time_views_during_render(pipe, identity, speech, Path(tmp) / "talk.mp4",
                                                             repeats), count, "during_render_"))
                rows.append(row)
        finally:
            torch.set_num_threads(before)
    return {"models": models, "resolution": int(frame.shape[0]), "prepare_s": round(prepare_s, 2),
            "weights": "random (smoke)" if models == "smoke" else "offline demo models (astronaut photo)",
            "views": rows}


def run(models: tuple[str, ...] = ("smoke", "offline"), repeats: int = 9,
        threads: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """The live-view timings of each model set."""
    return [bench_views(m, repeats, threads) for m in models]
