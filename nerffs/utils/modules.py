"""Small facts about torch modules that hold their state in parameters, buffers, or neither."""
from __future__ import annotations

import itertools

import torch


def module_device(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of a module's first parameter, else of its first floating buffer, else CPU
    float32 (modules without state, e.g. the offline stand-ins, compute in float32)."""
    for t in itertools.chain(module.parameters(), module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32
