"""Progress of one pipeline call as named steps with fractions, for the CLI's bars, the app and library users.

A call reports :class:`ProgressEvent` s to a callback ``(event) -> None``: each step of ``STEPS`` starts
(fraction 0), may advance (``done`` of ``total``; the frames step once per frame, with the frame itself), and
ends (fraction 1). ``event.overall`` places the event in the whole call (rough weights, frames dominant).

The callback runs on the rendering thread between frames: keep it short (hand frames to a queue to encode
them elsewhere). An exception raised by the callback stops the call (use it to cancel).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

STEPS: dict[str, tuple[str, float]] = {
    "check": ("checking the inputs", 0.01),
    "speech": ("reading the speech", 0.02),
    "align": ("finding and aligning the face", 0.05),
    "identity": ("identity (inversion or fit)", 0.12),
    "reference": ("reference render and 3DMM fit", 0.10),
    "expressions": ("expressions and head motion", 0.03),
    "cameras": ("camera path", 0.01),
    "frames": ("rendering frames", 0.62),
    "encode": ("finishing the video", 0.04),
}
"""Step name -> (what it does, in user words; its share of a typical call). In call order."""


@dataclass(frozen=True)
class ProgressEvent:
    """One report: ``step`` (a key of ``STEPS``), ``done`` of ``total`` units within it, a message, and for the
    frames step the frame just rendered (uint8 [H, W, 3], as written to the video) with its index ``done - 1``."""

    step: str
    done: int
    total: int
    message: str = ""
    frame: np.ndarray | None = None

    @property
    def fraction(self) -> float:
        """Progress within the step, 0..1."""
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def overall(self) -> float:
        """Progress of the whole call, 0..1 (step shares from ``STEPS``)."""
        names = list(STEPS)
        before = sum(STEPS[n][1] for n in names[:names.index(self.step)])
        return min(1.0, (before + STEPS[self.step][1] * self.fraction) / sum(w for _, w in STEPS.values()))

    @property
    def label(self) -> str:
        """``"rendering frames 12/100"``-style text for a progress bar."""
        text = STEPS[self.step][0]
        return f"{text} {self.done}/{self.total}" if self.total > 1 else text


ProgressCallback = Callable[[ProgressEvent], Any]


class Reporter:
    """What the steps call: ``start``, ``advance``, ``end`` of a named step, sent to every callback."""

    def __init__(self, *callbacks: ProgressCallback | None) -> None:
        self.callbacks = [c for c in callbacks if c is not None]

    def _send(self, event: ProgressEvent) -> None:
        for callback in self.callbacks:
            callback(event)

    def start(self, step: str, total: int = 1, message: str = "") -> None:
        if step not in STEPS:
            raise ValueError(f"unknown progress step {step!r}; steps: {', '.join(STEPS)}")
        self._send(ProgressEvent(step, 0, total, message))

    def advance(self, step: str, done: int, total: int, message: str = "", frame: np.ndarray | None = None) -> None:
        self._send(ProgressEvent(step, done, total, message, frame))

    def end(self, step: str, total: int = 1, message: str = "") -> None:
        self._send(ProgressEvent(step, total, total, message))


class ConsoleProgress:
    """A callback that draws one tqdm bar per step with more than one unit (frames, PTI steps) on stderr and
    logs each step's start at INFO."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._step = ""

    def __call__(self, event: ProgressEvent) -> None:
        if event.step != self._step:
            self.close()
            self._step = event.step
            log.debug("step %s: %s", event.step, STEPS[event.step][0])
        if event.total > 1 and self._bar is None and event.done < event.total:
            self._bar = tqdm(total=event.total, desc=STEPS[event.step][0], unit="frame" if event.step == "frames"
                             else "step", leave=False, dynamic_ncols=True)
        if self._bar is not None:
            self._bar.update(event.done - self._bar.n)
            if event.message:
                self._bar.set_postfix_str(event.message, refresh=False)
            if event.done >= event.total:
                self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
