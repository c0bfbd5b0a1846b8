"""Bounded local load test of the demo server (``python -m scripts.load_app``).

The demo runs in its own process (``python -m app`` on 127.0.0.1, smoke models by default, a private TMPDIR and
Gradio cache); ``users`` threads, each with its own gradio_client, send ``requests`` ``/generate`` calls each, one
after the other, all users at once. Per request: the latency (submit -> answer), the queue wait (submit -> the
server starts it, from the job's status), any failure, and whether the answer is a playable mp4 with sound. After
the run: the files left in the server's workspace by kind (finished outputs, which it keeps for ``max_age``, and
partial or streaming leftovers, which it should never keep), the server's peak resident memory (VmHWM, Linux),
and whether SIGTERM removed its workspace. Only 127.0.0.1 is contacted.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nerffs.audio.speech import find_espeak
from nerffs.errors import MissingDependencyError
from nerffs.examples import example_photo, example_speech
from nerffs.render.video import ffmpeg_exe, read_video

log = logging.getLogger(__name__)

STARTED = ("PROCESSING", "PROGRESS", "ITERATING", "FINISHED")
"""Job status codes that mean the server has taken the request out of its queue."""
LOAD_TEXT = "Hi there. I am a talking head."


@dataclass
class RequestRecord:
    """One request of one user: times in seconds from the start of the run."""

    user: int
    index: int
    submitted: float
    finished: float
    started: float | None = None
    error: str | None = None
    frames: int = 0
    playable: bool = False
    """The answer decodes as an mp4 with frames and has an audio stream."""

    @property
    def latency(self) -> float:
        return self.finished - self.submitted

    @property
    def queue_wait(self) -> float | None:
        return None if self.started is None else self.started - self.submitted


@dataclass
class LoadReport:
    """What ``run_load`` measured (``summary()`` for the figures)."""

    users: int
    requests_per_user: int
    models: str
    concurrency: int
    records: list[RequestRecord]
    wall_s: float
    workspace_files: dict[str, int] = field(default_factory=dict)
    gradio_cache_files: int | None = None
    peak_rss_mb: float | None = None
    workspace_removed_on_exit: bool | None = None

    def summary(self) -> dict[str, Any]:
        ok = [r for r in self.records if r.error is None]
        waits = [r.queue_wait for r in ok if r.queue_wait is not None]
        lat = [r.latency for r in ok]
        return {"users": self.users, "requests_per_user": self.requests_per_user, "models": self.models,
                "concurrency": self.concurrency, "requests": len(self.records), "answered": len(ok),
                "failures": [f"user {r.user} request {r.index}: {r.error}" for r in self.records if r.error],
                "playable_mp4": sum(r.playable for r in ok),
                "latency_s": _stats(lat), "queue_wait_s": _stats(waits), "wall_s": round(self.wall_s, 1),
                "workspace_files_after_run": self.workspace_files, "gradio_cache_files": self.gradio_cache_files,
                "server_peak_rss_mb": self.peak_rss_mb,
                "workspace_removed_on_exit": self.workspace_removed_on_exit}

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary(), "records": [asdict(r) for r in self.records]}


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def answer_is_playable(path: str | os.PathLike) -> tuple[bool, int]:
    """(decodes as a video with frames and carries an audio stream, number of frames)."""
    try:
        frames, _ = read_video(path)
    except Exception:  # noqa: BLE001 - an unreadable answer is simply not playable
        return False, 0
    header = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    return frames.shape[0] > 0 and bool(re.search(r"Stream #\S+.*Audio:", header)), int(frames.shape[0])


def workspace_files(root: str | os.PathLike) -> dict[str, int]:
    """Files under a demo workspace by kind: ``outputs`` (finished videos, animations, speech, previews),
    ``partial`` (atomic-write temporaries, hidden names) and ``segments`` (streamed video segments)."""
    counts = {"outputs": 0, "partial": 0, "segments": 0}
    for path in Path(root).rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith("."):
            counts["partial"] += 1
        elif "segments" in path.relative_to(root).parts:
            counts["segments"] += 1
        else:
            counts["outputs"] += 1
    return counts


def run_users(url: str, users: int, requests: int, photo: str | os.PathLike, audio: str | os.PathLike,
              timeout: float = 600.0, poll_s: float = 0.02) -> list[RequestRecord]:
    """``users`` concurrent gradio_client users, each sending ``requests`` ``/generate`` calls in turn."""
    try:
        from gradio_client import Client, handle_file
    except ImportError as exc:
        raise MissingDependencyError("the load test needs gradio_client: pip install -r requirements.txt") from exc

    t0 = time.monotonic()
    records: list[RequestRecord] = []
    lock = threading.Lock()

    def user(number: int) -> None:
        client = Client(url, verbose=False)
        for index in range(requests):
            submitted = time.monotonic() - t0
            record = RequestRecord(user=number, index=index, submitted=submitted, finished=submitted)
            try:
                job = client.submit(photo=handle_file(str(photo)), audio=handle_file(str(audio)), seed=index,
                                    api_name="/generate")
                deadline = time.monotonic() + timeout
                while not job.done() and time.monotonic() < deadline:
                    if record.started is None and job.status().code.name in STARTED:
                        record.started = time.monotonic() - t0
                    time.sleep(poll_s)
                answer = job.result(timeout=max(1.0, deadline - time.monotonic()))
                record.finished = time.monotonic() - t0
                if record.started is None:
                    record.started = record.finished
                video = answer["video"] if isinstance(answer, dict) else answer
                record.playable, record.frames = answer_is_playable(video)
            except Exception as exc:  # noqa: BLE001 - a failed request is recorded, the others go on
                record.finished = time.monotonic() - t0
                record.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            with lock:
                records.append(record)

    threads = [threading.Thread(target=user, args=(n,), name=f"load-user-{n}") for n in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(records, key=lambda r: (r.user, r.index))


class AppServer:
    """The demo in its own process on 127.0.0.1 with a private TMPDIR and Gradio cache (context manager)."""

    def __init__(self, models: str = "smoke", concurrency: int = 1, root: str | os.PathLike | None = None,
                 start_timeout: float = 300.0):
        self.root = Path(tempfile.mkdtemp(prefix="nerffs-load-", dir=root))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = {**os.environ, "TMPDIR": str(self.root), "GRADIO_TEMP_DIR": str(self.root / "gradio"),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        cmd = [sys.executable, "-m", "app", "--models", models, "--host", "127.0.0.1", "--port", str(self.port),
               "--concurrency", str(concurrency)]
        self.log = open(self.root / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready(start_timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the demo server exited with status {self.proc.returncode}; see "
                                   f"{self.root / 'server.log'}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"the demo server did not answer on {self.url} within {timeout:.0f} s")

    @property
    def workspace(self) -> Path | None:
        """The server's workspace folder (``nerffs-app-*`` under its TMPDIR)."""
        found = sorted(self.root.glob("nerffs-app-*"))
        return found[0] if found else None

    def peak_rss_mb(self) -> float | None:
        """The server process's peak resident memory (VmHWM), in MB; None where /proc is missing."""
        try:
            text = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
        return None if match is None else round(int(match.group(1)) / 1024, 1)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then wait (kill after ``timeout``); returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> AppServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_load(users: int = 4, requests: int = 2, models: str = "smoke", concurrency: int = 1,
             text: str = LOAD_TEXT, timeout: float = 600.0) -> LoadReport:
    """Start the demo server, run the users against ``/generate`` and measure (module docstring)."""
    if users < 1 or requests < 1:
        raise ValueError(f"users and requests must be >= 1, got {users} and {requests}")
    if find_espeak() is None:
        raise MissingDependencyError("the load test speaks its sentence with espeak-ng: apt-get install espeak-ng")
    with AppServer(models, concurrency) as server:
        speech = example_speech(server.root / "speech.wav", text)
        t0 = time.monotonic()
        records = run_users(server.url, users, requests, example_photo(), speech, timeout)
        wall = time.monotonic() - t0
        workspace = server.workspace
        files = workspace_files(workspace) if workspace is not None else {}
        report = LoadReport(users=users, requests_per_user=requests, models=models, concurrency=concurrency,
                            records=records, wall_s=wall, workspace_files=files, peak_rss_mb=server.peak_rss_mb(),
                            gradio_cache_files=sum(p.is_file() for p in (server.root / "gradio").rglob("*")))
        server.stop()
        report.workspace_removed_on_exit = workspace is not None and not workspace.exists()
    log.info("load run: %d users x %d requests in %.1f s", users, requests, report.wall_s)
    return report
