"""Text-to-speech with espeak-ng (Debian package ``espeak-ng``): example inputs, the app's TTS box, tests.

Real speech that every machine of this project can make offline (offline-assets.md section 2).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from nerffs.utils.io import atomic_path

SPEECH_TEXT = ("Hello, my name is Eileen. I am an astronaut, and tomorrow I will fly to the moon. "
               "The quick brown fox jumps over the lazy dog, while seven wise owls watch from the old oak tree. ")


def find_espeak() -> str | None:
    """The espeak-ng (or espeak) executable, or None."""
    return shutil.which("espeak-ng") or shutil.which("espeak")


def synthesize_speech(path: str | os.PathLike, seconds: float | None = None, *, text: str = SPEECH_TEXT,
                      voice: str = "en-us", words_per_minute: int = 150) -> Path:
    """Write espeak-ng speech to a WAV file (espeak's native 22.05 kHz mono, 16-bit).

    Args:
        path: output ``.wav``.
        seconds: exact length; the utterance is repeated and cut to it. None keeps it as spoken.
        text, voice, words_per_minute: what espeak-ng says and how.

    Returns:
        ``path`` as a Path.

    Raises:
        FileNotFoundError: espeak-ng is not installed.
    """
    import soundfile

    exe = find_espeak()
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed; apt-get install espeak-ng (see .ci/system-deps.sh)")
    out = Path(path)
    with atomic_path(out, suffix=".wav") as tmp:  # an interrupted run leaves no half-written file
        subprocess.run([exe, "-v", voice, "-s", str(words_per_minute), "-w", str(tmp), text], check=True,
                       capture_output=True)
        if seconds is not None:
            speech, rate = soundfile.read(str(tmp), dtype="int16")
            total = int(round(seconds * rate))
            reps = -(-total // max(len(speech), 1))
            soundfile.write(str(tmp), np.tile(speech, reps)[:total], rate, subtype="PCM_16", format="WAV")
    return out
