"""Which share of a list this process takes when several run side by side (torchrun, or by hand)."""
from __future__ import annotations

import os

from nerffs.errors import InputError


def shard_info(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(rank, world_size): the given values, else torchrun's ``RANK`` / ``WORLD_SIZE``, else (0, 1).

    Item ``i`` of a list belongs to rank ``i % world_size``.
    """
    rank = int(os.environ.get("RANK", 0)) if rank is None else int(rank)
    world = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else int(world_size)
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"bad shard: rank {rank} of world size {world}")
    return rank, world
