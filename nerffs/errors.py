"""Error types with one-line, actionable messages.

Every user-facing failure raises a subclass of ``NerffsError`` whose message names the problem and the fix;
CLIs and the Gradio app print that line (no stack trace) and exit non-zero.
"""
from __future__ import annotations


class NerffsError(Exception):
    """Base class of all errors the user is expected to act on."""


class InputError(NerffsError, ValueError):
    """A user input (image, audio, option) is unusable: wrong format, corrupt, empty, out of range."""


class NoFaceError(InputError):
    """No usable face was found in an image."""


class WeightsMissingError(NerffsError, FileNotFoundError):
    """A required weight file is not present; the message says where to put it or how to fetch it."""


class CheckpointError(NerffsError, RuntimeError):
    """A checkpoint file exists but cannot be used: unreadable, wrong format, missing or misshaped keys."""
