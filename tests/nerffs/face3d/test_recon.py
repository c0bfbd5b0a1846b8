"""Deep3D regressor: official key layout (spec-pipeline.md 3.1), both checkpoint formats (spec 10), errors,
coefficient order and the two preprocessing paths (spec 3.6)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nerffs.errors import CheckpointError, InputError, WeightsMissingError
from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.face3d.recon import (Deep3DConfig, Deep3DRegressor, load_deep3d, preprocess_generator_image,
                                 preprocess_rgb_image)

HEAD_DIMS = (80, 64, 80, 3, 27, 2, 1)  # spec 3.1 table: id, exp, tex, angle, gamma, (tx, ty), tz


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def deep3d_table() -> dict[str, tuple[int, ...]]:
    """Spec 3.1 key layout: 'backbone.' + torchvision ResNet-50 (no fc), then final_layers.{0..6}."""
    t = {"backbone.conv1.weight": (64, 3, 7, 7), **_bn("backbone.bn1", 64)}
    in_ch = 64
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3)), start=1):
        for b in range(depth):
            p = f"backbone.layer{stage}.{b}"
            t[f"{p}.conv1.weight"] = (width, in_ch if b == 0 else 4 * width, 1, 1)
            t.update(_bn(f"{p}.bn1", width))
            t[f"{p}.conv2.weight"] = (width, width, 3, 3)
            t.update(_bn(f"{p}.bn2", width))
            t[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            t.update(_bn(f"{p}.bn3", 4 * width))
            if b == 0:
                t[f"{p}.downsample.0.weight"] = (4 * width, in_ch, 1, 1)
                t.update(_bn(f"{p}.downsample.1", 4 * width))
        in_ch = 4 * width
    for i, n in enumerate(HEAD_DIMS):
        t[f"final_layers.{i}.weight"] = (n, 2048, 1, 1)
        t[f"final_layers.{i}.bias"] = (n,)
    return t


def synthetic_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the official names and shapes."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in deep3d_table().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000, dtype=torch.int64)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        elif name.endswith(".weight") and len(shape) == 1:  # BN gamma
            state[name] = torch.rand(shape, generator=gen) * 0.5 + 0.25
        elif len(shape) == 4:  # He-scaled so activations neither explode nor sink into slow subnormals
            fan_in = shape[1] * shape[2] * shape[3]
            state[name] = torch.randn(shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.1
    return state


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return synthetic_state()


@pytest.fixture(scope="module")
def epoch20(state, tmp_path_factory) -> Path:
    """Layout of Deep3D's BaseModel.save_networks: net_recon + optimizer + scheduler state."""
    path = tmp_path_factory.mktemp("deep3d") / "epoch_20.pth"
    opt = {"state": {0: {"step": torch.tensor(20.0), "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
           "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                             "amsgrad": False, "params": [0]}]}
    sched = {"step_size": 10, "gamma": 0.2, "base_lrs": [1e-4], "last_epoch": 20, "_step_count": 21,
             "verbose": False, "_get_lr_called_within_step": False, "_last_lr": [4e-6]}
    torch.save({"net_recon": state, "opt_00": opt, "sched_00": sched}, path)
    return path


def _assert_loaded(model: Deep3DRegressor, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


def test_module_matches_spec_table():
    model = Deep3DRegressor()
    table = deep3d_table()
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == table
    assert len(table) == 332  # spec 3.1
    assert sum(p.numel() for p in model.parameters()) == 24_034_625  # spec 3.1


def test_load_epoch20_net_recon(epoch20, state):
    _assert_loaded(load_deep3d(epoch20), state)


def test_load_sadtalker_safetensors_prefix(state, tmp_path):
    bundle = {f"face_3drecon.{k}": v for k, v in state.items()}
    bundle["audio2exp.netG.audio_encoder.0.conv_block.0.weight"] = torch.zeros(32, 1, 3, 3)  # other sub-models
    bundle["audio2pose.netG.encoder.fc.weight"] = torch.zeros(4, 4)
    path = tmp_path / "SadTalker_V0.0.2_256.safetensors"
    save_file(bundle, str(path))
    _assert_loaded(load_deep3d(path), state)


def test_safetensors_without_bn_counters_loads(state, tmp_path):
    # Spec 11: whether SadTalker's file stores num_batches_tracked is unknown; both must load.
    bundle = {f"face_3drecon.{k}": v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "bundle.safetensors"
    save_file(bundle, str(path))
    model = load_deep3d(path)
    assert int(model.backbone.bn1.num_batches_tracked) == 0
    torch.testing.assert_close(model.backbone.bn1.running_var, state["backbone.bn1.running_var"])


def test_bare_safetensors_roundtrip(tmp_path):
    src = Deep3DRegressor()
    path = tmp_path / "deep3d.safetensors"
    save_file(src.state_dict(), str(path))
    _assert_loaded(load_deep3d(path), src.state_dict())


def _bisenet_like_state() -> dict[str, torch.Tensor]:
    return {"cp.resnet.conv1.weight": torch.zeros(64, 3, 7, 7), "conv_out.conv_out.weight": torch.zeros(16, 256, 1, 1)}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 600
    return msg


def test_bisenet_file_is_rejected(tmp_path):
    pth = tmp_path / "seg.pth"
    torch.save(_bisenet_like_state(), pth)
    with pytest.raises(CheckpointError) as exc:
        load_deep3d(pth)
    assert "net_recon" in _one_line(exc)
    st = tmp_path / "seg.safetensors"
    save_file(_bisenet_like_state(), str(st))
    with pytest.raises(CheckpointError) as exc:
        load_deep3d(st)
    msg = _one_line(exc)
    assert "missing" in msg and "unexpected" in msg


def test_missing_key_is_named(state, tmp_path):
    broken = {k: v for k, v in state.items() if k != "final_layers.6.bias"}
    path = tmp_path / "missing.pth"
    torch.save({"net_recon": broken}, path)
    with pytest.raises(CheckpointError) as exc:
        load_deep3d(path)
    msg = _one_line(exc)
    assert "1 missing" in msg and "final_layers.6.bias" in msg


def test_misshaped_key_is_named(state, tmp_path):
    broken = dict(state)
    broken["final_layers.1.weight"] = torch.zeros(63, 2048, 1, 1)
    path = tmp_path / "misshaped.pth"
    torch.save({"net_recon": broken}, path)
    with pytest.raises(CheckpointError) as exc:
        load_deep3d(path)
    msg = _one_line(exc)
    assert "wrong shape" in msg and "final_layers.1.weight" in msg


def test_truncated_and_absent_files(epoch20, tmp_path):
    data = epoch20.read_bytes()
    cut = tmp_path / "epoch_20.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        load_deep3d(cut)
    assert "re-download" in _one_line(exc)
    with pytest.raises(WeightsMissingError):
        load_deep3d(tmp_path / "nope.pth")


def test_pickled_code_is_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"net_recon": {"x": torch.zeros(1)}, "cfg": Deep3DConfig()}, path)  # needs a class to unpickle
    with pytest.raises(CheckpointError, match="unsafe"):
        load_deep3d(path)


def test_head_order_and_output_shapes(state, tmp_path):
    # Zero head weights, distinct biases: the output is the bias vector, so slices map to heads 0..6.
    st = dict(state)
    biases = torch.arange(257, dtype=torch.float32)
    offset = 0
    for i, n in enumerate(HEAD_DIMS):
        st[f"final_layers.{i}.weight"] = torch.zeros(n, 2048, 1, 1)
        st[f"final_layers.{i}.bias"] = biases[offset: offset + n]
        offset += n
    path = tmp_path / "heads.pth"
    torch.save({"net_recon": st}, path)
    coeffs = load_deep3d(path).predict(torch.rand(2, 3, 224, 224))
    assert isinstance(coeffs, FaceCoeffs)
    shapes = {k: tuple(getattr(coeffs, k).shape) for k in ("id", "exp", "tex", "angle", "gamma", "trans")}
    assert shapes == {"id": (2, 80), "exp": (2, 64), "tex": (2, 80), "angle": (2, 3), "gamma": (2, 27),
                      "trans": (2, 3)}
    torch.testing.assert_close(coeffs.to_vector(), biases.expand(2, -1))
    assert coeffs.trans.tolist() == [[254.0, 255.0, 256.0]] * 2  # (tx, ty) from head 5, tz from head 6


def test_forward_matches_pooled_linear_heads(epoch20, state):
    model = load_deep3d(epoch20)
    x = torch.rand(1, 3, 224, 224)
    pooled = model.backbone(x)  # [B, 2048]
    weight = torch.cat([state[f"final_layers.{i}.weight"][:, :, 0, 0] for i in range(7)])
    bias = torch.cat([state[f"final_layers.{i}.bias"] for i in range(7)])
    torch.testing.assert_close(model(x), pooled @ weight.T + bias, rtol=1e-4, atol=1e-5)


def test_forward_rejects_wrong_size():
    with pytest.raises(InputError, match="preprocess"):
        Deep3DRegressor().eval()(torch.rand(1, 3, 256, 256))


def test_preprocess_generator_image_maps_range_like_nfs():
    img = torch.empty(1, 3, 64, 64)
    img[:, 0], img[:, 1], img[:, 2] = -1.0, 0.0, 1.0
    out = preprocess_generator_image(img)
    assert out.shape == (1, 3, 224, 224)
    # (x * 127.5 + 128) / 255: -1 -> 0.5/255 (the +128 quirk), 0 -> 128/255, 1 -> clamped to 1.
    torch.testing.assert_close(out[:, 0], torch.full((1, 224, 224), 0.5 / 255))
    torch.testing.assert_close(out[:, 1], torch.full((1, 224, 224), 128 / 255))
    torch.testing.assert_close(out[:, 2], torch.ones(1, 224, 224))
    x = torch.rand(2, 3, 100, 100) * 2 - 1
    ref = (F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False) * 127.5 + 128).clamp(0, 255) / 255
    torch.testing.assert_close(preprocess_generator_image(x), ref)
    assert preprocess_generator_image(x).min() >= 0 and preprocess_generator_image(x).max() <= 1


def test_preprocess_rgb_image_uint8_and_float():
    photo = torch.randint(0, 256, (1, 3, 512, 512), dtype=torch.uint8)
    out = preprocess_rgb_image(photo)
    assert out.shape == (1, 3, 224, 224) and out.dtype == torch.float32
    torch.testing.assert_close(out * 255, (out * 255).round())  # on the uint8 grid, like PIL output / 255
    flat = preprocess_rgb_image(torch.full((1, 3, 500, 500), 255, dtype=torch.uint8))
    torch.testing.assert_close(flat, torch.ones(1, 3, 224, 224))
    # Antialiased shrink averages a fine checkerboard to ~0.5 instead of aliasing it.
    checker = ((torch.arange(512)[:, None] + torch.arange(512)[None]) % 2).float().expand(1, 3, -1, -1)
    assert (preprocess_rgb_image(checker) - 0.5).abs().max() < 0.05


def test_preprocess_rejects_bad_input():
    with pytest.raises(InputError, match="uint8"):
        preprocess_generator_image(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(InputError, match=r"\[B, 3, H, W\]"):
        preprocess_generator_image(torch.zeros(3, 8, 8))
    with pytest.raises(InputError, match=r"\[B, 3, H, W\]"):
        preprocess_rgb_image(torch.zeros(1, 8, 8, 3))
