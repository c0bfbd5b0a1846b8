"""Per-stage wall-clock accounting for benchmarks (a disabled timer costs nothing)."""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Iterator

import torch


class StageTimer:
    """Accumulates seconds per named stage: ``with timer("nerf"): ...``. CUDA work is synchronised at the stage
    boundaries so the times belong to the stage that queued the work."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        _sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            _sync()
            self.seconds[stage] += time.perf_counter() - start
            self.calls[stage] += 1

    def per(self, count: int) -> dict[str, float]:
        """Seconds per item (e.g. per frame) of every stage."""
        return {k: v / max(count, 1) for k, v in self.seconds.items()}


NO_TIMER = StageTimer(enabled=False)


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
