"""A smoke run's frames are pinned: refactors must not change what the pipeline renders.

The pin (tests/data/smoke_frames.json) is a per-frame 8x8 thumbnail of the uint8 frames, compared to within
1.5 levels (float rounding differs between CPUs; a change of behaviour moves thumbnails by far more).
Regenerate it only for an intended change: ``python -c "from tests.nerffs.test_frame_pins import write_pin;
write_pin()"`` from the repository root, and say why in the commit.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

PIN = Path(__file__).resolve().parents[1] / "data" / "smoke_frames.json"
TEXT = "Hello there, papa."


def thumbnails(frames: np.ndarray) -> np.ndarray:
    """[T, H, W, 3] uint8 -> [T, 8, 8, 3] float block means."""
    t, h, w, c = frames.shape
    return frames.reshape(t, 8, h // 8, 8, w // 8, c).mean(axis=(2, 4))


def smoke_frames(tmp: Path) -> np.ndarray:
    from nerffs.audio.speech import synthesize_speech
    from nerffs.bench.offline import read_frames
    from nerffs.examples import example_photo
    from nerffs.pipeline import TalkingHeadPipeline

    speech = synthesize_speech(tmp / "pin.wav", text=TEXT)
    out = TalkingHeadPipeline.from_pretrained("smoke")(example_photo(), speech, tmp / "pin.mp4", seed=0,
                                                        show_progress=False, blink="random",
                                                        frames_dir=str(tmp / "frames"))
    from PIL import Image

    return np.stack([np.asarray(Image.open(p)) for p in sorted((tmp / "frames").glob("frame_*.png"))]) \
        if out.num_frames else read_frames(out.video)


def write_pin() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        frames = smoke_frames(Path(tmp))
    PIN.parent.mkdir(parents=True, exist_ok=True)
    PIN.write_text(json.dumps({"text": TEXT, "shape": list(frames.shape),
                               "thumbnails": np.round(thumbnails(frames), 2).tolist()}) + "\n")


@pytest.mark.slow
def test_smoke_run_matches_the_pinned_frames(tmp_path):
    pin = json.loads(PIN.read_text())
    frames = smoke_frames(tmp_path)
    assert list(frames.shape) == pin["shape"]
    diff = np.abs(thumbnails(frames) - np.asarray(pin["thumbnails"]))
    assert float(diff.max()) <= 1.5, f"frames moved by up to {diff.max():.2f} levels (8x8 block means)"
