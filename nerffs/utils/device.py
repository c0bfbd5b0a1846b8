"""The torch device a user asked for, checked before any model is built (one-line errors, no assertions)."""
from __future__ import annotations

import os

import torch

from nerffs.errors import InputError


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)`` when this machine can run it.

    Raises:
        InputError: an unknown device name, or CUDA / MPS asked for where it is not available; the line says
            why (a CPU-only torch build, or no GPU visible) and what to do.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"unknown device {str(device)!r}; use 'cpu' or 'cuda' (or 'cuda:N')") from None
    if dev.type == "cuda":
        version = torch.__version__
        if torch.version.cuda is None:
            raise InputError(f"CUDA is not available: this torch build ({version}) has no CUDA support; use "
                             f"--device cpu, or install the CUDA build (pip install torch=={version.split('+')[0]} "
                             "--index-url https://download.pytorch.org/whl/cu128; README 'Installing torch')")
        if not torch.cuda.is_available():
            raise InputError(f"CUDA is not available: no GPU is visible to torch {version} (driver missing, "
                             "CUDA_VISIBLE_DEVICES empty?); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {dev} does not exist: this machine has {torch.cuda.device_count()} GPU(s); "
                             "use cuda:0 or --device cpu")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("the 'mps' device (Apple GPU) is not available here; use --device cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {str(device)!r} is not supported; use 'cpu' or 'cuda'")
    return dev


def process_device(device: str | torch.device) -> torch.device:
    """The checked device of this process: a bare ``'cuda'`` under torchrun (``$LOCAL_RANK`` set) is the
    process's own GPU ``cuda:$LOCAL_RANK``; anything else as :func:`check_device` gives it.

    Raises:
        InputError: see :func:`check_device`.
    """
    if str(device) == "cuda" and "LOCAL_RANK" in os.environ:
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    return check_device(device)
