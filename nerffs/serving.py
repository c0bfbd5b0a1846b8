"""One pipeline call served to an interactive client: its progress as named steps and its video while it renders.

``stream_talking_head`` runs a ``TalkingHeadPipeline`` call in a worker thread and yields ``JobUpdate`` s in order:

* ``event``: every ``nerffs.progress.ProgressEvent`` of the call (without its frame), for a progress bar;
* ``segment``: each ~1 s segment of the video as soon as it is encoded (``nerffs.render.segments``: frames from
  the progress callback with their slice of the speech, encoded in another worker thread, so rendering never
  waits for ffmpeg); the last one right after the last frame, before the final file is finished;
* ``output``: the call's ``TalkingHeadOutput`` (the finished mp4, written atomically by the pipeline), last.

When nothing happens for ``heartbeat_s`` it yields an empty update, so a consumer can refresh its display and
is never blocked for long. The pipeline object is shared: calls hold no state on it, so several streams may run
at once (a server bounds how many with its queue). Closing the generator early (the client went away) cancels
the call: its progress callback raises at the next event, the pipeline stops without writing its output, and
no further segment is encoded. An error of the call is raised from the generator.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from pathlib import Path

from nerffs.audio import load_audio
from nerffs.call import TalkingHeadOutput
from nerffs.preprocess.image import ImageSource
from nerffs.progress import ProgressEvent
from nerffs.render.segments import Segment, SegmentWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobUpdate:
    """One report of a streamed call; at most one field is set (none: a heartbeat)."""

    event: ProgressEvent | None = None
    """A progress event of the call (``frame`` removed)."""
    segment: Segment | None = None
    """A finished video segment (mp4 with its audio)."""
    output: TalkingHeadOutput | None = None
    """The finished call (the last update)."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


def stream_talking_head(pipe, image: ImageSource, audio: str | os.PathLike | None, output: str | os.PathLike, *,
                        segment_dir: str | os.PathLike | None = None, segment_seconds: float = 1.0,
                        seed: int = 0, transcript: str | None = None, heartbeat_s: float = 1.0,
                        **options) -> Iterator[JobUpdate]:
    """Run ``pipe(image, audio, output, seed=seed, transcript=transcript, **options)`` and stream it.

    Args:
        pipe: a ``TalkingHeadPipeline`` (shared; it is not modified).
        image, audio, output, seed, transcript, **options: as for ``TalkingHeadPipeline.__call__``.
        segment_dir: folder of the segments (default: ``<output's folder>/segments``). Each segment file is
            complete when it is reported; the consumer may delete it once used.
        segment_seconds: length of a segment (the last one shorter).
        heartbeat_s: longest wait between two updates (an empty ``JobUpdate`` when nothing happened).

    Yields:
        ``JobUpdate`` s: progress events and segments as they come, then the output.

    Raises:
        Whatever the call raises (``InputError`` for a bad option before any work, ...).
    """
    config = pipe.call(options).config  # options checked here, before a thread starts
    wave = None if audio is None else load_audio(audio, config.audio)
    updates: queue.Queue = queue.Queue()
    cancel = threading.Event()
    writer = SegmentWriter(Path(segment_dir) if segment_dir is not None else Path(output).parent / "segments",
                           config.audio.fps, wave, config.audio.sample_rate, segment_seconds,
                           on_segment=lambda s: updates.put(JobUpdate(segment=s)),
                           metadata={"comment": "synthetic content: live preview segment of a nerffs talking head, "
                                                f"{pipe.models.describe()}"})

    def on_progress(event: ProgressEvent) -> None:
        if cancel.is_set():
            raise CancelledError("the client stopped the job")
        if event.frame is not None:
            writer.add(event.frame)
            if event.done >= event.total:
                writer.flush()  # the last segment goes out now, while the final file is being finished
            event = replace(event, frame=None)
        updates.put(JobUpdate(event=event))

    def work() -> None:
        try:
            out = pipe(image, audio, output, seed=seed, show_progress=False, transcript=transcript,
                       progress=on_progress, **options)
            writer.finish()  # every segment reported before the output
            updates.put(JobUpdate(output=out))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            writer.close()
            updates.put(_Failed(exc))

    thread = threading.Thread(target=work, name="nerffs-stream", daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = updates.get(timeout=heartbeat_s)
            except queue.Empty:
                yield JobUpdate()
                continue
            if isinstance(item, _Failed):
                raise item.error
            yield item
            if item.output is not None:
                return
    finally:
        # Not joined: a consumer closing this generator (possibly on an event loop) must not wait for the current
        # frame; the call stops at its next progress event.
        cancel.set()
