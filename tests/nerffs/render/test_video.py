"""Video encoding round trips with the real ffmpeg (imageio-ffmpeg)."""
import json
import subprocess
import wave

import numpy as np
import pytest

from nerffs.errors import InputError
from nerffs.render.video import ffmpeg_exe, read_video, write_video


def _frames(n=10, h=32, w=48):
    # Smooth moving gradients: H.264 with 4:2:0 chroma keeps these close (noise would not be).
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    return [np.stack([(xx * 5 + 10 * i) % 256, yy * 6, np.full_like(xx, 128.0)], -1).astype(np.uint8)
            for i in range(n)]


def _streams(path):
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    return [line for line in out.stderr.splitlines() if "Stream #" in line]


def test_round_trip_frame_count_size_and_content(tmp_path):
    frames = _frames()
    path = write_video(iter(frames), tmp_path / "a.mp4", fps=25)
    back, fps = read_video(path)
    assert back.shape == (10, 32, 48, 3) and fps == pytest.approx(25)
    # Lossy codec: close in mean, not bit-exact.
    assert np.abs(back.astype(float) - np.stack(frames).astype(float)).mean() < 6
    assert (path.stat().st_mode & 0o777) != 0o600


def test_audio_is_muxed(tmp_path):
    wav = tmp_path / "tone.wav"
    t = np.arange(16000) / 16000
    with wave.open(str(wav), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000)
        f.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16).tobytes())
    path = write_video(_frames(25), tmp_path / "b.mp4", fps=25, audio_path=wav)
    streams = _streams(path)
    assert any("Video" in s for s in streams) and any("Audio" in s for s in streams)


def test_bad_frames_leave_no_file(tmp_path):
    frames = _frames(3) + [np.zeros((16, 16, 3), np.uint8)]
    with pytest.raises(InputError, match="frame size changed"):
        write_video(frames, tmp_path / "c.mp4")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="no frames"):
        write_video([], tmp_path / "d.mp4")
    with pytest.raises(InputError, match="uint8"):
        write_video([np.zeros((8, 8, 3), np.float32)], tmp_path / "e.mp4")
    assert list(tmp_path.iterdir()) == []


def test_index_is_at_the_front_for_browser_playback(tmp_path):
    data = write_video(_frames(5), tmp_path / "f.mp4").read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat")
