"""What every CLI prints when it fails: one line, no stack trace."""
from __future__ import annotations

import pickle

from nerffs.errors import NerffsError

# Errors whose message is written for the user; anything else also shows its type.
USER_ERRORS = (NerffsError, ValueError, OSError, RuntimeError, pickle.UnpicklingError)


def error_line(exc: BaseException) -> str:
    """``error: <first line of the message>`` (with the exception type for unexpected errors)."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(exc, USER_ERRORS) and first:
        return f"error: {first}"
    return f"error: {type(exc).__name__}" + (f": {first}" if first else "")
