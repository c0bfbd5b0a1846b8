"""Fixtures of the audio tests: an ffmpeg executable, espeak-ng speech, format conversion."""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from nerffs.audio.load import find_ffmpeg
from nerffs.audio.speech import find_espeak, synthesize_speech


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    exe = find_ffmpeg()
    if exe is None:
        pytest.skip("no ffmpeg executable (pip install imageio-ffmpeg, or apt-get install ffmpeg)")
    return exe


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 8 s of espeak-ng speech, 22.05 kHz mono 16-bit WAV."""
    if find_espeak() is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng; .ci/system-deps.sh)")
    return synthesize_speech(tmp_path_factory.mktemp("speech") / "speech.wav")


@pytest.fixture(scope="session")
def convert(ffmpeg_exe: str) -> Callable[..., Path]:
    """``convert(src, dst, *output_options)``: re-encode ``src`` into ``dst`` with ffmpeg."""

    def _convert(src: Path, dst: Path, *args: str) -> Path:
        subprocess.run([ffmpeg_exe, "-nostdin", "-v", "error", "-y", "-i", str(src), *args, str(dst)], check=True,
                       capture_output=True)
        return dst

    return _convert
