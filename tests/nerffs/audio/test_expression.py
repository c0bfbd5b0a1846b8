"""audio_to_expression: batched encoder + sequential 577->64 recurrence == NFS's per-frame loop (spec 2.4)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from nerffs.audio import (Audio2Exp, AudioConfig, AudioError, audio_to_expression, blink_sequence, load_audio,
                          mel_windows, random_blink_sequence)

PROFILE = (0.5, 0.9, 1.0, 0.9, 0.5)


@pytest.fixture(scope="module")
def model() -> Audio2Exp:
    """Random weights with non-trivial BatchNorm statistics and a non-zero blink column, O(1) activations."""
    g = torch.Generator().manual_seed(0)
    net = Audio2Exp()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=g))
                module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=g))
                module.weight.copy_(1 + 0.1 * torch.randn(module.num_features, generator=g))
        net.mapping1.weight.copy_(0.1 * torch.randn(64, 577, generator=g))
        net.mapping1.bias.copy_(0.1 * torch.randn(64, generator=g))
    return net.eval()


def mel_batch(num_frames: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(num_frames, 80, 16, generator=torch.Generator().manual_seed(seed)) * 8 - 4


def naive_loop(model: Audio2Exp, mel: torch.Tensor, e0: torch.Tensor, ratio: torch.Tensor, momentum: float,
               scale: float) -> torch.Tensor:
    """Spec 2.4 literally: one full forward per frame on [1, 1, 80, 16], reference updated after each frame."""
    ref = e0.reshape(1, 64)
    preds = []
    with torch.no_grad():
        for i in range(mel.shape[0]):
            pred = model(mel[i:i + 1].unsqueeze(1), ref, ratio[i].reshape(1, 1))
            preds.append(pred)
            ref = (1 - momentum) * e0.reshape(1, 64) + momentum * pred
    return torch.cat(preds) * scale


@pytest.mark.parametrize("momentum,scale,with_blink", [(0.5, 1.5, False), (0.8, 1.0, True), (1.0, 2.0, True)])
def test_equals_naive_per_frame_loop(model: Audio2Exp, momentum: float, scale: float, with_blink: bool) -> None:
    mel, e0 = mel_batch(16), torch.randn(64, generator=torch.Generator().manual_seed(1))
    cfg = AudioConfig(ref_momentum=momentum, exp_scale=scale, encoder_batch=7)
    blink = random_blink_sequence(16, AudioConfig(blink_min_frames=1, blink_min_gap=2, blink_max_gap=6),
                                  torch.Generator().manual_seed(2)) if with_blink else torch.zeros(16)
    assert bool(blink.any()) == with_blink
    ours = audio_to_expression(model, mel, e0, cfg, blink=blink)
    expected = naive_loop(model, mel, e0, blink, momentum, scale)
    assert ours.shape == (16, 64) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_reference_feedback_matters(model: Audio2Exp) -> None:
    """With a_m = 0 every frame sees e0; with a_m = 0.5 later frames differ (the recurrence is really used)."""
    mel, e0 = mel_batch(8), torch.randn(64)
    fixed = audio_to_expression(model, mel, e0, AudioConfig(ref_momentum=0.0))
    for k in range(8):
        single = audio_to_expression(model, mel[k:k + 1], e0, AudioConfig(ref_momentum=0.0))
        torch.testing.assert_close(fixed[k], single[0], rtol=1e-5, atol=1e-5)
    fed_back = audio_to_expression(model, mel, e0, AudioConfig(ref_momentum=0.5))
    torch.testing.assert_close(fed_back[0], fixed[0])
    assert not torch.allclose(fed_back[1:], fixed[1:], atol=1e-3)


def test_scale_multiplies_the_output_only(model: Audio2Exp) -> None:
    mel, e0 = mel_batch(10), torch.randn(64)
    one = audio_to_expression(model, mel, e0, AudioConfig(exp_scale=1.0))
    torch.testing.assert_close(audio_to_expression(model, mel, e0), 1.5 * one)


def test_encoder_batch_size_does_not_change_the_result(model: Audio2Exp) -> None:
    mel, e0 = mel_batch(20), torch.randn(64)
    results = [audio_to_expression(model, mel, e0, AudioConfig(encoder_batch=b)) for b in (1, 3, 64)]
    for r in results[1:]:
        torch.testing.assert_close(r, results[0], rtol=1e-5, atol=1e-5)


def test_reference_shapes_and_numpy_inputs(model: Audio2Exp) -> None:
    mel, e0 = mel_batch(4), torch.randn(64)
    flat = audio_to_expression(model, mel, e0)
    torch.testing.assert_close(audio_to_expression(model, mel, e0.reshape(1, 64)), flat)
    torch.testing.assert_close(audio_to_expression(model, mel.numpy(), e0.numpy().astype(np.float64)), flat)


@pytest.mark.parametrize("mel_shape,ref_shape,blink_len", [((4, 80, 17), (64,), None), ((4, 1, 80, 16), (64,), None),
                                                           ((0, 80, 16), (64,), None), ((4, 80, 16), (257,), None),
                                                           ((4, 80, 16), (2, 64), None), ((4, 80, 16), (64,), 5)])
def test_bad_shapes_raise(model: Audio2Exp, mel_shape: tuple, ref_shape: tuple, blink_len: int | None) -> None:
    blink = None if blink_len is None else torch.zeros(blink_len)
    with pytest.raises(AudioError):
        audio_to_expression(model, torch.zeros(mel_shape), torch.zeros(ref_shape), blink=blink)


def test_training_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="eval"):
        audio_to_expression(Audio2Exp().train(), mel_batch(2), torch.zeros(64))


# --------------------------------------------------------------------------------------------- blink
def blink_runs(seq: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of every maximal run of non-zero values."""
    nz = (seq != 0).int().tolist()
    runs, start = [], None
    for i, v in enumerate(nz + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    return runs


def test_random_blinks_have_the_sadtalker_shape() -> None:
    cfg = AudioConfig()
    for seed in range(5):
        seq = random_blink_sequence(400, cfg, torch.Generator().manual_seed(seed))
        runs = blink_runs(seq)
        assert len(runs) >= 3
        previous_end = 0
        for start, end in runs:
            assert seq[start:end].tolist() == pytest.approx(list(PROFILE))
            assert cfg.blink_min_gap <= start - previous_end < cfg.blink_max_gap
            previous_end = end
        assert runs[-1][1] <= 400 - 1


def test_random_blinks_are_seeded() -> None:
    a = random_blink_sequence(300, generator=torch.Generator().manual_seed(7))
    b = random_blink_sequence(300, generator=torch.Generator().manual_seed(7))
    c = random_blink_sequence(300, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("num_frames", [1, 5, 20])
def test_short_sequences_never_blink(num_frames: int) -> None:
    assert not random_blink_sequence(num_frames, generator=torch.Generator().manual_seed(0)).any()


@pytest.mark.parametrize("num_frames", [21, 22, 25, 40])
def test_blinks_on_barely_long_sequences(num_frames: int) -> None:
    for seed in range(10):
        seq = random_blink_sequence(num_frames, generator=torch.Generator().manual_seed(seed))
        assert seq.shape == (num_frames,) and float(seq[-1]) == 0.0


def test_blink_mode_selects_the_input(model: Audio2Exp) -> None:
    assert not blink_sequence(200, AudioConfig()).any()
    mel, e0 = mel_batch(60), torch.randn(64)
    cfg = AudioConfig(blink="random")
    still = audio_to_expression(model, mel, e0)
    blinking = audio_to_expression(model, mel, e0, cfg, generator=torch.Generator().manual_seed(3))
    again = audio_to_expression(model, mel, e0, cfg, generator=torch.Generator().manual_seed(3))
    assert torch.equal(blinking, again) and not torch.allclose(blinking, still)
    explicit = random_blink_sequence(60, cfg, torch.Generator().manual_seed(3))
    torch.testing.assert_close(audio_to_expression(model, mel, e0, blink=explicit), blinking)


# ------------------------------------------------------------------------------------- end to end
def test_speech_to_expression(speech_wav: Path, model: Audio2Exp, tmp_path: Path) -> None:
    from nerffs.audio.speech import synthesize_speech

    cfg = dataclasses.replace(AudioConfig(), blink="none")
    wav = load_audio(synthesize_speech(tmp_path / "three_seconds.wav", 3.0), cfg)
    windows = mel_windows(wav, cfg)
    exp = audio_to_expression(model, windows, torch.zeros(64), cfg)
    assert len(wav) == 48000 and windows.shape == (75, 80, 16)
    assert exp.shape == (75, 64) and torch.isfinite(exp).all()
    assert exp.std(dim=0).mean() > 0  # the audio actually drives the output


def test_benchmark_smoke(speech_wav: Path) -> None:
    from nerffs.bench.audio import run

    result = run(seconds_list=(1.0,))
    (row,) = result["runs"]
    assert result["speech_source"] == "espeak-ng"
    assert row["frames"] == 25 and row["audio_seconds"] == pytest.approx(1.0, abs=1e-3)
    assert row["audio_seconds_per_second"] > 0
    assert row["total_s"] == pytest.approx(row["load_s"] + row["mel_s"] + row["audio2exp_s"])


@pytest.mark.cuda
def test_cuda_matches_cpu(model: Audio2Exp, cuda_device: torch.device) -> None:
    mel, e0 = mel_batch(40), torch.randn(64)
    cfg = AudioConfig(blink="random")
    cpu = audio_to_expression(model, mel, e0, cfg, generator=torch.Generator().manual_seed(0))
    gpu_model = Audio2Exp.from_state_dict(model.state_dict()).to(cuda_device)
    gpu = audio_to_expression(gpu_model, mel, e0, cfg, generator=torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
