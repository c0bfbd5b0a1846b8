"""What every CLI prints when it fails: one line, no stack trace, on a line of its own.

* ``error_line(exc)``: the one line for an exception;
* ``fresh_line()``: closes live progress bars, so the next message starts at the beginning of a line;
* ``run_command(body)``: runs a CLI's work and turns the ways it can end into an exit status: 0, 1 with one
  ``error:`` line, or 130 with ``interrupted`` on Ctrl-C (every output is written atomically, so an
  interrupted run leaves no half-written file behind);
* ``run_cli(body, quiet=...)``: a script's ``main`` after parsing: logging to stderr, then ``run_command``;
* ``print_error(exc)``: the ``error:`` line of a failure a CLI reports and goes on from (one asset of many).
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time
from collections.abc import Callable

from nerffs.errors import NerffsError

# Errors whose message is written for the user; anything else also shows its type.
USER_ERRORS = (NerffsError, ValueError, OSError, RuntimeError, pickle.UnpicklingError)

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
"""How CLIs log to stderr."""
NOISY_LOGGERS = ("numba", "matplotlib")
"""Third-party loggers whose INFO lines say nothing to our users: kept at WARNING."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""
REPEAT_S = 2.0
"""Seconds during which a further Ctrl-C is ignored while the first one unwinds the run."""


def error_line(exc: BaseException) -> str:
    """``error: <first line of the message>`` (with the exception type for unexpected errors)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, USER_ERRORS) and first:
        return f"error: {first}"
    return f"error: {type(exc).__name__}" + (f": {first}" if first else "")


def fresh_line() -> None:
    """Close every live tqdm bar (each clears its own line), so what is printed next starts a line."""
    tqdm_module = sys.modules.get("tqdm.std")
    bars = list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ()) or ())
    for bar in bars:
        try:
            bar.leave = False
            bar.close()
        except Exception:  # noqa: BLE001 - a broken bar must not hide the error being reported
            pass


def _print_stderr(text: str) -> None:
    fresh_line()
    sys.stderr.flush()
    print(text, file=sys.stderr, flush=True)


def print_error(exc: BaseException) -> None:
    """Print ``error_line(exc)`` on a line of its own on stderr, for a failure a CLI reports and goes on from."""
    _print_stderr(error_line(exc))


def run_cli(body: Callable[[], int | None], *, quiet: bool = False, log_format: str = LOG_FORMAT) -> int:
    """A script's ``main`` once its arguments are parsed: log to stderr (INFO, or WARNING when ``quiet``), then
    run ``body`` through :func:`run_command` and return the exit status."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format=log_format)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return run_command(body)


def run_command(body: Callable[[], int | None]) -> int:
    """Run ``body`` (a CLI's work) and return its exit status.

    Ctrl-C prints ``interrupted`` and returns 130; an exception prints its ``error_line`` and returns 1. An
    error raised while Ctrl-C is being handled (e.g. ffmpeg, which got the same signal, closing its pipe)
    also counts as the interruption. An interrupt that Python would swallow (one that lands in a finaliser or a
    fork hook, e.g. while ffmpeg starts, is only printed as "Exception ignored ...") is raised again at once,
    where it can stop the run. While an interrupt unwinds the run (cleaning up temporary files), another Ctrl-C
    within ``REPEAT_S`` seconds is ignored, and after it has been reported every Ctrl-C is.
    """
    interrupted, reported = threading.Event(), threading.Event()
    raised_at: list[float] = []  # when the interrupt on its way was raised (empty: none)
    previous = None

    def on_sigint(signum, frame):  # noqa: ARG001 - signal handler signature
        if reported.is_set() or (raised_at and time.monotonic() - raised_at[0] < REPEAT_S):
            return
        interrupted.set()
        raised_at[:] = [time.monotonic()]
        raise KeyboardInterrupt

    def unraisable(info) -> None:
        if interrupted.is_set() and issubclass(info.exc_type, KeyboardInterrupt):
            if not reported.is_set():  # swallowed: raise it again, from outside this hook, where it propagates
                raised_at.clear()
                timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
                timer.daemon = True
                timer.start()
            return
        previous_hook(info)

    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, on_sigint)
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        status = body()
        return 0 if status is None else int(status)
    except KeyboardInterrupt:
        reported.set()
        _print_stderr("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:  # one line for the user, no stack trace
        if interrupted.is_set():
            reported.set()
            _print_stderr("interrupted")
            return EXIT_INTERRUPTED
        print_error(exc)
        return 1
    finally:
        reported.set()
        sys.unraisablehook = previous_hook
        if previous is not None:  # an interrupt re-sent just now must not hit the program's exit
            signal.signal(signal.SIGINT, signal.SIG_IGN if interrupted.is_set() else previous)
