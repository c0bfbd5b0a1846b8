"""Which share of a list this process takes when several run side by side (torchrun, or by hand)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from nerffs.errors import InputError

T = TypeVar("T")


def shard_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size): the given values, else torchrun's ``RANK`` / ``WORLD_SIZE``, else (0, 1).

    Item ``i`` of a list belongs to rank ``i % world_size``.
    """
    rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
    world = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"bad shard: rank {rank} of world size {world}")
    return rank, world


def wait_for_shards(pending: Callable[[], list[T]], timeout_s: float, poll_s: float) -> list[T]:
    """Poll ``pending()`` (what the other processes have not finished yet) every ``poll_s`` seconds until it is
    empty or ``timeout_s`` has passed; returns what is still pending then (empty: all done)."""
    deadline = time.monotonic() + timeout_s
    while True:
        missing = pending()
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(poll_s)
