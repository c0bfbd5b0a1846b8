"""Random blinks follow the call's seed (same seed, same blinks; another seed, others), with the official
Audio2Exp path (smoke weights) and the offline driver, and a resumed run re-derives the same sequence."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nerffs.audio.speech import synthesize_speech
from nerffs.examples import example_photo


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return synthesize_speech(tmp_path_factory.mktemp("blinks") / "s.wav", seconds=2.5)


@pytest.mark.slow
def test_blinks_follow_the_seed_and_survive_a_resume(speech, tmp_path):
    from nerffs.bench.offline import read_frames
    from nerffs.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    run = lambda seed, name, **kw: pipe(example_photo(), speech, tmp_path / name, seed=seed,  # noqa: E731
                                        show_progress=False, blink="random", **kw)
    a, b, c, none = run(0, "a.mp4"), run(0, "b.mp4"), run(1, "c.mp4"), pipe(
        example_photo(), speech, tmp_path / "n.mp4", seed=0, show_progress=False, blink="none")
    assert torch.equal(a.exp, b.exp) and not torch.equal(a.exp, c.exp)
    assert not torch.equal(a.exp, none.exp)                     # the blinks really reach the expressions
    frames = tmp_path / "frames"
    full = run(0, "full.mp4", frames_dir=str(frames))
    for path in sorted(frames.glob("frame_*.png"))[30:]:          # stop after 30 frames, then resume
        path.unlink()
    resumed = run(0, "resumed.mp4", frames_dir=str(frames), resume=True)
    assert torch.equal(resumed.exp, full.exp)
    assert np.array_equal(read_frames(resumed.video), read_frames(full.video))


def test_offline_driver_blinks_follow_the_seed():
    from nerffs.audio.config import AudioConfig
    from nerffs.offline.speech import BLINK, SpeechMotion

    wave = np.zeros(16000 * 6, np.float32)
    cfg = AudioConfig(blink="random", blink_strength=0.5)
    seq = lambda seed: SpeechMotion().expressions(wave, 150, cfg, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(seq(3), seq(3)) and not torch.equal(seq(3), seq(4))
    assert float(seq(3)[:, BLINK].max()) == pytest.approx(0.5)   # blink strength scales the closure
