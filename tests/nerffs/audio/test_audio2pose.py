"""Audio2Pose: official names and shapes, strict loading of both official formats, SadTalker's sampling procedure."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerffs.audio import (Audio2Exp, Audio2Pose, Audio2PoseConfig, AudioError, audio_to_pose, load_audio2pose,
                          smooth_poses)
from nerffs.audio.audio2pose import assemble_motion, window_features
from nerffs.errors import CheckpointError

Table = dict[str, tuple[int, ...]]

# Wav2Lip audio encoder convs (cout, cin, k), shared layout with Audio2Exp.
AUDIO_CONVS = [(32, 1, 3), (32, 32, 3), (32, 32, 3), (64, 32, 3), (64, 64, 3), (64, 64, 3), (128, 64, 3),
               (128, 128, 3), (128, 128, 3), (256, 128, 3), (256, 256, 3), (512, 256, 3), (512, 512, 1)]


# ------------------------------------------------------------------------- the official table, written out
def _conv(t: Table, name: str, cout: int, cin: int, kh: int, kw: int, bias: bool = True) -> None:
    t[f"{name}.weight"] = (cout, cin, kh, kw)
    if bias:
        t[f"{name}.bias"] = (cout,)


def _bn(t: Table, name: str, c: int) -> None:
    for suffix in ("weight", "bias", "running_mean", "running_var"):
        t[f"{name}.{suffix}"] = (c,)
    t[f"{name}.num_batches_tracked"] = ()


def _residual_conv(t: Table, name: str, cin: int, cout: int) -> None:
    _bn(t, f"{name}.conv_block.0", cin)
    _conv(t, f"{name}.conv_block.2", cout, cin, 3, 3)
    _bn(t, f"{name}.conv_block.3", cout)
    _conv(t, f"{name}.conv_block.5", cout, cout, 3, 3)
    _conv(t, f"{name}.conv_skip.0", cout, cin, 3, 3)
    _bn(t, f"{name}.conv_skip.1", cout)


def _resunet(t: Table, p: str) -> None:
    _conv(t, f"{p}.input_layer.0", 32, 1, 3, 3)
    _bn(t, f"{p}.input_layer.1", 32)
    _conv(t, f"{p}.input_layer.3", 32, 32, 3, 3)
    _conv(t, f"{p}.input_skip.0", 32, 1, 3, 3)
    _residual_conv(t, f"{p}.residual_conv_1", 32, 64)
    _residual_conv(t, f"{p}.residual_conv_2", 64, 128)
    _residual_conv(t, f"{p}.bridge", 128, 256)
    for i, (c, cin, cout) in enumerate([(256, 384, 128), (128, 192, 64), (64, 96, 32)], start=1):
        t[f"{p}.upsample_{i}.upsample.weight"] = (c, c, 2, 1)  # ConvTranspose2d: [in, out, kh, kw]
        t[f"{p}.upsample_{i}.upsample.bias"] = (c,)
        _residual_conv(t, f"{p}.up_residual_conv{i}", cin, cout)
    _conv(t, f"{p}.output_layer.0", 1, 32, 1, 1)


def official_table() -> Table:
    """Names and shapes of SadTalker's Audio2Pose state dict (auido2pose.yaml sizes)."""
    t: Table = {}
    for j, (cout, cin, k) in enumerate(AUDIO_CONVS):
        _conv(t, f"audio_encoder.audio_encoder.{j}.conv_block.0", cout, cin, k, k)
        _bn(t, f"audio_encoder.audio_encoder.{j}.conv_block.1", cout)
    # posterior encoder: MLP input = ref 6 + pose U-Net 32*6 + audio 32*6 + class bias 64 = 454
    e = "netG.encoder"
    t[f"{e}.classbias"] = (46, 64)
    _resunet(t, f"{e}.resunet")
    t.update({f"{e}.MLP.L0.weight": (128, 454), f"{e}.MLP.L0.bias": (128,),
              f"{e}.linear_means.weight": (64, 128), f"{e}.linear_means.bias": (64,),
              f"{e}.linear_logvar.weight": (64, 128), f"{e}.linear_logvar.bias": (64,),
              f"{e}.linear_audio.weight": (6, 512), f"{e}.linear_audio.bias": (6,)})
    # decoder: MLP input = ref 6 + z 64 + audio 32*6 = 262 -> 128 -> 192 = 32*6
    d = "netG.decoder"
    t[f"{d}.classbias"] = (46, 64)
    _resunet(t, f"{d}.resunet")
    t.update({f"{d}.MLP.L0.weight": (128, 262), f"{d}.MLP.L0.bias": (128,),
              f"{d}.MLP.L1.weight": (192, 128), f"{d}.MLP.L1.bias": (192,),
              f"{d}.pose_linear.weight": (6, 6), f"{d}.pose_linear.bias": (6,),
              f"{d}.linear_audio.weight": (6, 512), f"{d}.linear_audio.bias": (6,)})
    for i, (cout, cin, k) in enumerate([(256, 6, 4), (512, 256, 4), (1024, 512, 3)]):
        t[f"netD_motion.seq.{i}.conv.weight"] = (cout, cin, k)
        _bn(t, f"netD_motion.seq.{i}.norm", cout)
    t["netD_motion.seq.3.weight"], t["netD_motion.seq.3.bias"] = (1, 1024, 3), (1,)
    return t


def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A synthetic checkpoint with the official names and shapes, values giving O(1) activations."""
    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, shape in official_table().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(777)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) >= 2 and "classbias" not in name:
            fan_in = int(np.prod(shape[1:])) if "upsample" not in name else shape[0] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=g) / fan_in ** 0.5
        else:
            state[name] = torch.randn(shape, generator=g) * (1.0 if "classbias" in name else 0.1)
    return state


def save_bundle(path: Path, audio2pose: dict[str, torch.Tensor]) -> Path:
    """SadTalker_V0.0.2_256.safetensors layout: 'audio2pose.' entries among the other sub-models."""
    from safetensors.torch import save_file

    tensors = {f"audio2pose.{k}": v.contiguous() for k, v in audio2pose.items()}
    tensors.update({"audio2exp.mapping1.weight": torch.zeros(64, 577),
                    "audio2exp.audio_encoder.0.conv_block.0.weight": torch.zeros(32, 1, 3, 3),
                    "face_3drecon.conv1.weight": torch.zeros(64, 3, 7, 7),
                    "kp_extractor.predictor.w": torch.zeros(2), "generator.first.conv.weight": torch.zeros(2, 2)})
    save_file(tensors, str(path))
    return path


def save_pth(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """auido2pose_00140-model.pth layout: {'model', 'optimizer', 'epoch'} read by SadTalker's load_cpk."""
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4}]}, "epoch": 140}, path)
    return path


@pytest.fixture(scope="module")
def official_model() -> Audio2Pose:
    return Audio2Pose.from_state_dict(official_state_dict())


@pytest.fixture(scope="module")
def tiny_model() -> Audio2Pose:
    torch.manual_seed(0)
    model = Audio2Pose(Audio2PoseConfig.preset("tiny"))
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval-mode normalisation is exercised
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


# ------------------------------------------------------------------------------------------ architecture
def test_state_dict_equals_the_official_table() -> None:
    model = Audio2Pose()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == official_table()
    assert len(own) == 419
    assert sum(p.numel() for p in model.parameters()) == 11_251_897


def test_config_validation_and_presets() -> None:
    assert Audio2PoseConfig.preset("official") == Audio2PoseConfig()
    assert Audio2PoseConfig().decoder_in == 262 and Audio2PoseConfig().encoder_in == 454
    with pytest.raises(ValueError, match="multiple of 8"):
        Audio2PoseConfig(seq_len=12)
    with pytest.raises(ValueError, match="unknown Audio2PoseConfig preset"):
        Audio2PoseConfig.preset("huge")


def test_audio_encoder_is_the_audio2exp_layout(official_model: Audio2Pose) -> None:
    exp = Audio2Exp().eval()
    exp.audio_encoder.load_state_dict(official_model.audio_encoder.audio_encoder.state_dict())
    mel = torch.randn(4, 80, 16)
    with torch.no_grad():
        torch.testing.assert_close(official_model.encode(mel), exp.encode(mel))
    with pytest.raises(ValueError, match=r"\[N, 1, 80, 16\]"):
        official_model.encode(torch.zeros(2, 80, 15))


def _functional_decoder(sd: dict[str, torch.Tensor], z: torch.Tensor, style: torch.Tensor, ref: torch.Tensor,
                        audio: torch.Tensor) -> torch.Tensor:
    """The decoder written from the reference facts with torch.nn.functional and the state-dict names."""
    p = "netG.decoder."

    def bn(x: torch.Tensor, q: str) -> torch.Tensor:
        return F.batch_norm(x, sd[f"{q}.running_mean"], sd[f"{q}.running_var"], sd[f"{q}.weight"], sd[f"{q}.bias"],
                            False, 0.0, 1e-5)

    def conv(x: torch.Tensor, q: str, stride: int | tuple[int, int] = 1, pad: int = 1) -> torch.Tensor:
        return F.conv2d(x, sd[f"{q}.weight"], sd[f"{q}.bias"], stride, pad)

    def res(x: torch.Tensor, q: str, stride: int | tuple[int, int] = 1) -> torch.Tensor:
        y = conv(F.relu(bn(x, f"{q}.conv_block.0")), f"{q}.conv_block.2", stride)
        y = conv(F.relu(bn(y, f"{q}.conv_block.3")), f"{q}.conv_block.5")
        return y + bn(conv(x, f"{q}.conv_skip.0", stride), f"{q}.conv_skip.1")

    def up(x: torch.Tensor, q: str) -> torch.Tensor:
        return F.conv_transpose2d(x, sd[f"{q}.upsample.weight"], sd[f"{q}.upsample.bias"], stride=(2, 1))

    def unet(x: torch.Tensor, q: str) -> torch.Tensor:
        x1 = conv(F.relu(bn(conv(x, f"{q}.input_layer.0"), f"{q}.input_layer.1")), f"{q}.input_layer.3")
        x1 = x1 + conv(x, f"{q}.input_skip.0")
        x2 = res(x1, f"{q}.residual_conv_1", (2, 1))
        x3 = res(x2, f"{q}.residual_conv_2", (2, 1))
        y = res(x3, f"{q}.bridge", (2, 1))
        y = res(torch.cat([up(y, f"{q}.upsample_1"), x3], 1), f"{q}.up_residual_conv1")
        y = res(torch.cat([up(y, f"{q}.upsample_2"), x2], 1), f"{q}.up_residual_conv2")
        y = res(torch.cat([up(y, f"{q}.upsample_3"), x1], 1), f"{q}.up_residual_conv3")
        return torch.sigmoid(conv(y, f"{q}.output_layer.0", pad=0))

    b = z.shape[0]
    a = F.linear(audio, sd[p + "linear_audio.weight"], sd[p + "linear_audio.bias"]).reshape(b, -1)
    h = torch.cat([ref, z + sd[p + "classbias"][style], a], dim=-1)
    h = F.relu(F.linear(h, sd[p + "MLP.L0.weight"], sd[p + "MLP.L0.bias"]))
    x = torch.sigmoid(F.linear(h, sd[p + "MLP.L1.weight"], sd[p + "MLP.L1.bias"])).reshape(b, 32, 6)
    y = unet(x.unsqueeze(1), p + "resunet").squeeze(1)
    return F.linear(y, sd[p + "pose_linear.weight"], sd[p + "pose_linear.bias"])


def test_decoder_matches_the_functional_reference(official_model: Audio2Pose) -> None:
    sd = official_state_dict()
    z, style, ref, audio = torch.randn(3, 64), torch.tensor([0, 7, 45]), torch.randn(3, 6), torch.rand(3, 32, 512)
    with torch.no_grad():
        out = official_model.decode(audio, ref, style, z)
        expected = _functional_decoder(sd, z, style, ref, audio)
    assert out.shape == (3, 32, 6)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_forward_encodes_then_decodes(tiny_model: Audio2Pose) -> None:
    mel, ref, style, z = torch.randn(2, 8, 80, 16), torch.randn(2, 6), torch.tensor([1, 3]), torch.randn(2, 8)
    with torch.no_grad():
        out = tiny_model(mel, ref, style, z)
        audio = tiny_model.encode(mel.reshape(16, 80, 16)).reshape(2, 8, 512)
        torch.testing.assert_close(out, tiny_model.decode(audio, ref, style, z))
    assert out.shape == (2, 8, 6)


# ----------------------------------------------------------------------------------------------- loading
def assert_loaded(model: Audio2Pose, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    assert not model.training


def test_load_sadtalker_bundle(tmp_path: Path) -> None:
    state = official_state_dict(1)
    path = save_bundle(tmp_path / "SadTalker_V0.0.2_256.safetensors", state)
    assert_loaded(load_audio2pose(path), state)


def test_load_legacy_pth(tmp_path: Path) -> None:
    state = official_state_dict(2)
    path = save_pth(tmp_path / "auido2pose_00140-model.pth", state)
    assert_loaded(load_audio2pose(path), state)


def test_bundle_without_batch_counters_loads(tmp_path: Path) -> None:
    state = {k: v for k, v in official_state_dict(3).items() if not k.endswith("num_batches_tracked")}
    model = load_audio2pose(save_bundle(tmp_path / "b.safetensors", state))
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k


def _write_garbage(path: Path) -> Path:
    path.write_bytes(b"not a checkpoint at all" * 10)
    return path


def _write_exp_only_bundle(path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({"audio2exp.mapping1.weight": torch.zeros(64, 577)}, str(path))
    return path


def _write_bare_state(path: Path) -> Path:
    torch.save(official_state_dict(), path)
    return path


def _write_missing_key(path: Path) -> Path:
    state = official_state_dict()
    del state["netG.decoder.pose_linear.bias"]
    return save_pth(path, state)


def _write_misshaped(path: Path) -> Path:
    state = official_state_dict()
    state["netG.decoder.classbias"] = torch.zeros(45, 64)
    return save_bundle(path, state)


def _write_wrong_extension(path: Path) -> Path:
    path.write_bytes(b"x")
    return path


@pytest.mark.parametrize(("name", "write", "message"), [
    ("x.safetensors", _write_garbage, "unreadable or unsafe"),
    ("x.pth", _write_garbage, "unreadable or unsafe"),
    ("x.safetensors", _write_exp_only_bundle, "no tensors under prefix 'audio2pose.'"),
    ("x.pth", _write_bare_state, "no entry 'model'"),
    ("x.pth", _write_missing_key, r"1 missing \(netG\.decoder\.pose_linear\.bias\)"),
    ("x.safetensors", _write_misshaped, r"wrong shape \(netG\.decoder\.classbias \(45, 64\)"),
    ("x.ckpt", _write_wrong_extension, "unknown extension"),
])
def test_wrong_file_gives_a_one_line_error(tmp_path: Path, name: str, write: Callable[[Path], Path],
                                            message: str) -> None:
    path = write(tmp_path / name)
    with pytest.raises(CheckpointError, match=message) as err:
        load_audio2pose(path)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------------------------- inference
def reference_loop(model: Audio2Pose, mel: torch.Tensor, ref: torch.Tensor, style: int,
                   generator: torch.Generator) -> torch.Tensor:
    """SadTalker's Audio2Pose.test written out window by window (batch size 1)."""
    seq_len, latent = model.cfg.seq_len, model.cfg.latent_size
    use = mel[1:]  # frame 0 is the reference
    n = mel.shape[0] - 1
    div, re = n // seq_len, n % seq_len
    cls, ref_b = torch.tensor([style]), ref.reshape(1, 6)
    parts = [torch.zeros(1, 6)]
    with torch.no_grad():
        for i in range(div):
            z = torch.randn(1, latent, generator=generator)
            emb = model.audio_encoder(use[i * seq_len:(i + 1) * seq_len]).unsqueeze(0)
            parts.append(model.netG.decoder(z, cls, ref_b, emb)[0])
        if re:
            z = torch.randn(1, latent, generator=generator)
            emb = model.audio_encoder(use[-seq_len:]).unsqueeze(0)
            if emb.shape[1] != seq_len:
                emb = torch.cat([emb[:, :1].repeat(1, seq_len - emb.shape[1], 1), emb], dim=1)
            parts.append(model.netG.decoder(z, cls, ref_b, emb)[0, -re:])
    return ref_b + torch.cat(parts)


LENGTHS = [1, 2, 5, 8, 9, 10, 17, 20, 33]  # tiny seq_len = 8: T - 1 below, equal to, and above one window


@pytest.mark.parametrize("num_frames", LENGTHS)
def test_batched_inference_equals_the_window_loop(tiny_model: Audio2Pose, num_frames: int) -> None:
    mel, ref = torch.randn(num_frames, 80, 16), torch.randn(6) * 0.3
    ours = audio_to_pose(tiny_model, mel, ref, 2, generator=torch.Generator().manual_seed(5), encoder_batch=3)
    expected = reference_loop(tiny_model, mel, ref, 2, torch.Generator().manual_seed(5))
    assert ours.shape == (num_frames, 6)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[0], ref)


@pytest.mark.parametrize("num_frames", [20, 33, 40])
def test_official_size_inference_equals_the_window_loop(official_model: Audio2Pose, num_frames: int) -> None:
    mel, ref = torch.randn(num_frames, 80, 16), torch.tensor([0.1, -0.2, 0.05, 0.01, -0.02, 10.0])
    ours = audio_to_pose(official_model, mel, ref, 11, generator=torch.Generator().manual_seed(1))
    expected = reference_loop(official_model, mel, ref, 11, torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_window_cutting_and_assembly() -> None:
    audio = torch.arange(11.0).reshape(11, 1)  # M = 11 frames after the reference, seq_len 4 -> 2 full + 3
    w = window_features(audio, 4)
    assert w[:, :, 0].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7], [7, 8, 9, 10]]
    short = window_features(audio[:3], 4)  # fewer frames than a window: left-pad with the first
    assert short[:, :, 0].tolist() == [[0, 0, 1, 2]]
    motion = torch.arange(3 * 4 * 6, dtype=torch.float32).reshape(3, 4, 6)
    out = assemble_motion(motion, 12)
    assert out.shape == (12, 6) and torch.equal(out[0], torch.zeros(6))
    assert torch.equal(out[1:9], motion[:2].reshape(8, 6)) and torch.equal(out[9:], motion[2, 1:])


def test_determinism_per_seed(tiny_model: Audio2Pose) -> None:
    mel, ref = torch.randn(30, 80, 16), torch.zeros(6)

    def run(seed: int) -> torch.Tensor:
        return audio_to_pose(tiny_model, mel, ref, 1, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.allclose(run(3), run(4))
    torch.manual_seed(3)  # generator=None draws from the global generator, as SadTalker does
    torch.testing.assert_close(audio_to_pose(tiny_model, mel, ref, 1), run(3), rtol=0, atol=0)


def test_style_changes_the_poses(tiny_model: Audio2Pose) -> None:
    mel, ref = torch.randn(20, 80, 16), torch.zeros(6)
    a = audio_to_pose(tiny_model, mel, ref, 0, generator=torch.Generator().manual_seed(0))
    b = audio_to_pose(tiny_model, mel, ref, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1:], b[1:])


def test_inputs_are_validated(tiny_model: Audio2Pose) -> None:
    mel = torch.randn(4, 80, 16)
    with pytest.raises(AudioError, match=r"pose style must be an integer in \[0, 4\)"):
        audio_to_pose(tiny_model, mel, torch.zeros(6), 4)
    with pytest.raises(AudioError, match="pose style"):
        audio_to_pose(tiny_model, mel, torch.zeros(6), True)
    with pytest.raises(AudioError, match="reference pose"):
        audio_to_pose(tiny_model, mel, torch.zeros(7), 0)
    with pytest.raises(AudioError, match="mel windows"):
        audio_to_pose(tiny_model, torch.zeros(0, 80, 16), torch.zeros(6), 0)
    out = audio_to_pose(tiny_model, mel.numpy(), np.zeros((1, 6)), np.int64(1))
    assert out.shape == (4, 6)
    tiny_model.train()
    try:
        with pytest.raises(ValueError, match="training mode"):
            audio_to_pose(tiny_model, mel, torch.zeros(6), 0)
    finally:
        tiny_model.eval()


@pytest.mark.parametrize(("num_frames", "window"), [(40, 13), (13, 13), (12, 11), (8, 7), (3, 3)])
def test_smooth_poses_matches_sadtalker_filter(num_frames: int, window: int) -> None:
    from scipy.signal import savgol_filter

    poses = torch.randn(num_frames, 6, dtype=torch.float64)
    expected = savgol_filter(poses.numpy(), window, 2, axis=0)
    np.testing.assert_allclose(smooth_poses(poses).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_smooth_poses_leaves_too_short_sequences() -> None:
    poses = torch.randn(2, 6)
    assert torch.equal(smooth_poses(poses), poses)
