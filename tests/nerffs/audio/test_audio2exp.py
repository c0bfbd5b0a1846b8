"""Audio2Exp: official architecture, names and shapes, strict loading of both official formats (spec 2.1-2.3)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nerffs.audio import Audio2Exp, load_audio2exp
from nerffs.errors import CheckpointError, WeightsMissingError

# Spec 2.1 table: (cout, cin, k) of each conv and the output (C, H, W) of each block for a [1, 80, 16] input.
CONVS = [(32, 1, 3), (32, 32, 3), (32, 32, 3), (64, 32, 3), (64, 64, 3), (64, 64, 3), (128, 64, 3),
         (128, 128, 3), (128, 128, 3), (256, 128, 3), (256, 256, 3), (512, 256, 3), (512, 512, 1)]
OUTPUTS = [(32, 80, 16)] * 3 + [(64, 27, 16)] * 3 + [(128, 9, 6)] * 3 + [(256, 3, 3)] * 2 + [(512, 1, 1)] * 2
RESIDUAL = {1, 2, 4, 5, 7, 8, 10}


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint with the official key names and shapes (spec 2.2), random non-trivial values."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for j, (cout, cin, k) in enumerate(CONVS):
        p = f"audio_encoder.{j}.conv_block"
        state[f"{p}.0.weight"] = torch.randn(cout, cin, k, k, generator=g) / (cin * k * k) ** 0.5  # O(1) outputs
        state[f"{p}.0.bias"] = torch.randn(cout, generator=g) * 0.1
        state[f"{p}.1.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        state[f"{p}.1.bias"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{p}.1.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        state[f"{p}.1.running_var"] = torch.rand(cout, generator=g) + 0.5
        state[f"{p}.1.num_batches_tracked"] = torch.tensor(1234)
    state["mapping1.weight"] = torch.randn(64, 577, generator=g) * 0.05
    state["mapping1.bias"] = torch.randn(64, generator=g) * 0.05
    return state


def save_safetensors(path: Path, audio2exp: dict[str, torch.Tensor], with_others: bool = True) -> Path:
    """The SadTalker bundle layout: 'audio2exp.' entries among other sub-models (spec 2.3)."""
    from safetensors.torch import save_file

    tensors = {f"audio2exp.{k}": v.contiguous() for k, v in audio2exp.items()}
    if with_others:
        tensors.update({"audio2pose.netG.encoder.weight": torch.zeros(4, 4),
                        "face_3drecon.conv1.weight": torch.zeros(64, 3, 7, 7),
                        "generator.first.conv.weight": torch.zeros(2, 2)})
    save_file(tensors, str(path))
    return path


def save_pth(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """The legacy auido2exp_00300-model.pth layout: {'model', 'optimizer', 'epoch'} (spec 2.3)."""
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 2e-5}]}, "epoch": 300}, path)
    return path


def assert_loaded(model: Audio2Exp, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k].cpu(), v), k
    assert not model.training


# ------------------------------------------------------------------------------------ architecture
def test_parameter_counts_and_names() -> None:
    model = Audio2Exp()
    state = model.state_dict()
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2_849_664
    assert sum(v.numel() for v in state.values()) == 2_854_093
    assert len(state) == 93
    official = official_state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in official.items()}
    assert torch.count_nonzero(model.mapping1.bias) == 0


def test_block_output_shapes_and_residuals() -> None:
    model = Audio2Exp().eval()
    x = torch.randn(2, 1, 80, 16)
    with torch.no_grad():
        for j, block in enumerate(model.audio_encoder):
            x = block(x)
            assert tuple(x.shape[1:]) == OUTPUTS[j], j
            assert block.residual == (j in RESIDUAL), j


def test_residual_is_added_before_the_relu() -> None:
    block = Audio2Exp().audio_encoder[1].eval()
    x = torch.randn(1, 32, 80, 16)
    with torch.no_grad():
        expected = torch.relu(block.conv_block(x) + x)
        torch.testing.assert_close(block(x), expected)


def test_forward_shapes_and_concat_order() -> None:
    model = Audio2Exp.from_state_dict(official_state_dict())
    mel, ref, ratio = torch.randn(5, 1, 80, 16), torch.randn(5, 64), torch.rand(5, 1)
    with torch.no_grad():
        out = model(mel, ref, ratio)
        audio = model.encode(mel)
        w, b = model.mapping1.weight, model.mapping1.bias
        manual = audio @ w[:, :512].T + ref @ w[:, 512:576].T + ratio * w[:, 576] + b
    assert out.shape == (5, 64) and audio.shape == (5, 512)
    torch.testing.assert_close(out, manual, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(mel.squeeze(1), ref, ratio.squeeze(1)), out)


def test_encoder_rows_are_independent_in_eval_mode() -> None:
    model = Audio2Exp.from_state_dict(official_state_dict())
    mel = torch.randn(6, 80, 16)
    with torch.no_grad():
        batched = model.encode(mel)
        single = torch.cat([model.encode(mel[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


def test_encode_rejects_wrong_window_shape() -> None:
    with pytest.raises(ValueError, match=r"\[N, 1, 80, 16\]"):
        Audio2Exp().encode(torch.zeros(2, 80, 17))


# ------------------------------------------------------------------------------------- loading
def test_load_sadtalker_safetensors(tmp_path: Path) -> None:
    state = official_state_dict(1)
    path = save_safetensors(tmp_path / "SadTalker_V0.0.2_256.safetensors", state)
    assert_loaded(load_audio2exp(path), state)


def test_safetensors_without_batch_counters_loads(tmp_path: Path) -> None:
    state = official_state_dict(2)
    stored = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    model = load_audio2exp(save_safetensors(tmp_path / "bundle.safetensors", stored))
    for k, v in stored.items():
        assert torch.equal(model.state_dict()[k], v)


def test_load_legacy_pth(tmp_path: Path) -> None:
    state = official_state_dict(3)
    path = save_pth(tmp_path / "auido2exp_00300-model.pth", state)
    assert_loaded(load_audio2exp(path), state)


def test_both_formats_give_the_same_network(tmp_path: Path) -> None:
    state = official_state_dict(4)
    a = load_audio2exp(save_safetensors(tmp_path / "a.safetensors", state))
    b = load_audio2exp(save_pth(tmp_path / "b.pth", state))
    mel, ref, ratio = torch.randn(3, 80, 16), torch.randn(3, 64), torch.zeros(3)
    with torch.no_grad():
        torch.testing.assert_close(a(mel, ref, ratio), b(mel, ref, ratio), rtol=0, atol=0)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_missing_key_fails_clearly(tmp_path: Path, fmt: str) -> None:
    state = official_state_dict()
    del state["mapping1.bias"]
    path = (save_safetensors(tmp_path / "x.safetensors", state) if fmt == "safetensors"
            else save_pth(tmp_path / "x.pth", state))
    with pytest.raises(CheckpointError, match=r"1 missing \(mapping1\.bias\)") as err:
        load_audio2exp(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_misshaped_key_fails_clearly(tmp_path: Path, fmt: str) -> None:
    state = official_state_dict()
    state["audio_encoder.3.conv_block.0.weight"] = torch.zeros(64, 32, 3, 1)
    path = (save_safetensors(tmp_path / "x.safetensors", state) if fmt == "safetensors"
            else save_pth(tmp_path / "x.pth", state))
    with pytest.raises(CheckpointError, match=r"wrong shape \(audio_encoder\.3\.conv_block\.0\.weight"):
        load_audio2exp(path)


def test_unexpected_key_fails(tmp_path: Path) -> None:
    state = official_state_dict()
    state["mapping2.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"unexpected \(mapping2\.weight\)"):
        load_audio2exp(save_pth(tmp_path / "x.pth", state))


def test_bundle_without_audio2exp_part(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"audio2pose.netG.w": torch.zeros(2)}, str(path))
    with pytest.raises(CheckpointError, match="audio2exp"):
        load_audio2exp(path)


def test_pth_without_model_entry(tmp_path: Path) -> None:
    path = tmp_path / "bare.pth"
    torch.save(official_state_dict(), path)
    with pytest.raises(CheckpointError, match="no entry 'model'"):
        load_audio2exp(path)


class NotATensor:  # pickled by the test; a weights_only load must refuse to rebuild it
    pass


def test_pth_needing_code_execution_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": official_state_dict(), "extra": NotATensor()}, path)
    with pytest.raises(CheckpointError, match="unreadable or unsafe"):
        load_audio2exp(path)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(WeightsMissingError):
        load_audio2exp(tmp_path / "SadTalker_V0.0.2_256.safetensors")
    path = tmp_path / "weights.bin"
    path.write_bytes(b"0")
    with pytest.raises(CheckpointError, match="unknown extension"):
        load_audio2exp(path)
