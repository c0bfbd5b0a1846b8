"""Error types with one-line, actionable messages: every error class of nerffs lives here.

Every user-facing failure raises a subclass of ``NerffsError`` whose message names the problem and the fix;
CLIs and the Gradio app print that line (no stack trace) and exit non-zero. Each class also derives from the
built-in exception a caller would catch without knowing nerffs (``ValueError``, ``FileNotFoundError``,
``ImportError``, ``OSError``, ...).

The backbone (``stylenerf``) sits below nerffs and keeps its own file-format errors (``LegacyFormatError``,
``UnsafePickleError``, ``GeneratorCheckpointError``), which are ``ValueError`` / ``UnpicklingError`` /
``RuntimeError`` and so print as one line too.
"""
from __future__ import annotations

import os


class NerffsError(Exception):
    """Base class of all errors the user is expected to act on."""


# ---- inputs -------------------------------------------------------------------------------------------------
class InputError(NerffsError, ValueError):
    """A user input (image, audio, option) is unusable: wrong format, corrupt, empty, out of range."""


class NoFaceError(InputError):
    """No usable face was found in an image."""


class TinyFaceError(InputError):
    """The face is too small in the photo to give a usable aligned crop."""


class AudioError(InputError):
    """Audio input or an audio option is unusable (missing, empty, corrupt, too short or too long, bad value)."""


# ---- environment --------------------------------------------------------------------------------------------
class MissingDependencyError(NerffsError, ImportError):
    """An optional package (a landmark backend, a metric, the offline models' recognisers) is not installed; the
    message names the pip command."""


# ---- weights ------------------------------------------------------------------------------------------------
class WeightsMissingError(NerffsError, FileNotFoundError):
    """A required weight file is not present; the message says where to put it or how to fetch it."""


class IncompleteWeightsError(WeightsMissingError):
    """Some official files are missing; ``missing`` names them (registry names), ``root`` is the directory."""

    def __init__(self, message: str, missing: list[str], root: str | os.PathLike | None, generator: str):
        super().__init__(message)
        self.missing, self.root, self.generator = list(missing), root, generator


class CheckpointError(NerffsError, RuntimeError):
    """A checkpoint file exists but cannot be used: unreadable, wrong format, missing or misshaped keys."""


class LedgerError(NerffsError, ValueError):
    """The checksum ledger file exists but cannot be read (edited by hand, truncated)."""


class LicenceNotAcceptedError(NerffsError, PermissionError):
    """An asset under non-commercial or registration terms was requested without accepting them."""


class DownloadError(NerffsError, OSError):
    """No source delivered the file (offline, HTTP error, connection dropped too often)."""


class ChecksumError(DownloadError):
    """A downloaded or present file does not match its published size or checksum or its recorded checksum, or
    does not read in its format."""
