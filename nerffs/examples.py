"""Example inputs that exist on every machine with the requirements installed (no download).

* photo: scikit-image's public-domain astronaut portrait (Eileen Collins, NASA), located without importing
  scikit-image;
* speech: synthesised on the spot with espeak-ng (Debian package ``espeak-ng``).
"""
from __future__ import annotations

import os
from pathlib import Path

from nerffs.audio.speech import synthesize_speech
from nerffs.errors import InputError
from nerffs.utils.packages import package_dir

EXAMPLE_TEXT = "Hello! I am a talking head, made from one photo and one recording."


def example_photo() -> Path:
    """Path of the astronaut photo shipped inside scikit-image (found without importing scikit-image)."""
    root = package_dir("skimage")
    path = root / "data" / "astronaut.png" if root is not None else None
    if path is None or not path.is_file():
        raise InputError("the example photo needs scikit-image (pip install scikit-image==0.26.0); "
                         "or pass your own photo")
    return path


def example_speech(path: str | os.PathLike, text: str = EXAMPLE_TEXT) -> Path:
    """Synthesise ``text`` with espeak-ng into ``path`` (WAV)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        return synthesize_speech(path, text=text)
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None
