"""The offline parser (mouth / static masks from the face mesh) and the offline expression driver."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nerffs.audio.config import AudioConfig
from nerffs.offline.geometry import EXP_CHANNELS
from nerffs.offline.parser import MeshParser
from nerffs.offline.speech import BLINK, SpeechMotion
from nerffs.preprocess.image import to_tensor

JAW = EXP_CHANNELS.index("jaw_open")


@pytest.fixture(scope="module")
def parser():
    return MeshParser()


def test_mouth_mask_covers_the_lips(parser, aligned):
    img = to_tensor(aligned.image)
    mask = parser.mouth_mask(img, size=512)[0, 0].numpy()
    ys, xs = np.nonzero(mask)
    lips = aligned.points[48:60]
    assert mask.shape == (512, 512) and set(np.unique(mask)) <= {0.0, 1.0}
    assert abs(xs.mean() - lips[:, 0].mean()) < 6 and abs(ys.mean() - lips[:, 1].mean()) < 6
    box = (np.ptp(lips[:, 0]) + 1) * (np.ptp(lips[:, 1]) + 1)
    assert 0.4 * box < mask.sum() < 1.1 * box


def test_static_mask_pins_everything_but_the_face(parser, aligned):
    static = parser.static_mask(to_tensor(aligned.image))[0, 0].numpy()
    assert static.shape == (128, 128)
    nose = (aligned.points[30] * 128 / 512).astype(int)
    assert static[nose[1], nose[0]] == 0 and static[0, 0] == 1 and static[127, 64] == 1
    assert 0.3 < static.mean() < 0.9


def test_masks_of_an_image_without_a_face_are_empty(parser):
    flat = torch.zeros(1, 3, 256, 256)
    assert float(parser.mouth_mask(flat).sum()) == 0


def test_silence_closes_the_mouth_and_options_keep_their_roles():
    driver, cfg = SpeechMotion(), AudioConfig()
    silent = driver.expressions(np.zeros(16000 * 2, np.float32), 50, cfg)
    assert silent.shape == (50, 64) and float(silent.abs().max()) == 0


def test_seeded_blinks(tmp_path):
    driver = SpeechMotion()
    cfg = AudioConfig(blink="random")
    wave = np.zeros(16000 * 8, np.float32)
    seq = lambda seed: driver.expressions(wave, 200, cfg, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    a, b, c = seq(1), seq(1), seq(2)
    assert float(a[:, BLINK].max()) == 1.0                       # full blinks happen
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a[:, :BLINK].abs().max()) == 0                  # blinks only move the eyelids


def test_exp_scale_and_momentum_on_a_tone(tmp_path):
    """A loud tone burst in silence drives the energy fallback; l_exp scales it, a_m smooths it."""
    t = np.arange(16000 * 3) / 16000
    wave = (0.3 * np.sin(2 * np.pi * 220 * t) * ((t > 1.0) & (t < 2.0))).astype(np.float32)
    driver = SpeechMotion()
    base = driver.expressions(wave, 75, AudioConfig(ref_momentum=0.0))
    double = driver.expressions(wave, 75, AudioConfig(ref_momentum=0.0, exp_scale=3.0))
    smooth = driver.expressions(wave, 75, AudioConfig(ref_momentum=1.0))
    assert float(base[30:45, JAW].mean()) > 0.1 and float(base[:20, JAW].abs().max()) == 0
    assert torch.allclose(double, 2 * base)
    step = lambda e: float(e[:, JAW].diff().abs().max())  # noqa: E731
    assert step(smooth) < step(base)
