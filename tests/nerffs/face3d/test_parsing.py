"""BiSeNet face parsing: official key layout for 16/19 classes (spec-pipeline.md 5), strict loading and errors,
class maps, input normalisation and masks (spec-stylenerf.md 7.4)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from nerffs.errors import CheckpointError, InputError, WeightsMissingError
from nerffs.face3d.parsing import (AttentionRefinement, BiSeNet, FeatureFusion, ParsingConfig, labels_to_mask,
                                   load_bisenet, normalize_for_parsing)

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")} | {
        f"{prefix}.num_batches_tracked": ()}


def _cbr(prefix: str, out_ch: int, in_ch: int, k: int) -> dict[str, tuple[int, ...]]:
    """ConvBNReLU: '.conv' (no bias) + '.bn'."""
    return {f"{prefix}.conv.weight": (out_ch, in_ch, k, k), **_bn(f"{prefix}.bn", out_ch)}


def bisenet_table(n: int) -> dict[str, tuple[int, ...]]:
    """Spec 5 key layout: cp.resnet (ResNet-18, torchvision names), ARMs, heads, FFM, three outputs."""
    t = {"cp.resnet.conv1.weight": (64, 3, 7, 7), **_bn("cp.resnet.bn1", 64)}
    in_ch = 64
    for stage, width in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"cp.resnet.layer{stage}.{b}"
            t[f"{p}.conv1.weight"] = (width, in_ch if b == 0 else width, 3, 3)
            t.update(_bn(f"{p}.bn1", width))
            t[f"{p}.conv2.weight"] = (width, width, 3, 3)
            t.update(_bn(f"{p}.bn2", width))
            if b == 0 and stage > 1:
                t[f"{p}.downsample.0.weight"] = (width, in_ch, 1, 1)
                t.update(_bn(f"{p}.downsample.1", width))
        in_ch = width
    for name, src in (("arm16", 256), ("arm32", 512)):
        t.update(_cbr(f"cp.{name}.conv", 128, src, 3))
        t[f"cp.{name}.conv_atten.weight"] = (128, 128, 1, 1)
        t.update(_bn(f"cp.{name}.bn_atten", 128))
    t.update(_cbr("cp.conv_head32", 128, 128, 3))
    t.update(_cbr("cp.conv_head16", 128, 128, 3))
    t.update(_cbr("cp.conv_avg", 128, 512, 1))
    t.update(_cbr("ffm.convblk", 256, 256, 1))
    t["ffm.conv1.weight"] = (64, 256, 1, 1)
    t["ffm.conv2.weight"] = (256, 64, 1, 1)
    for name, src, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64), ("conv_out32", 128, 64)):
        t.update(_cbr(f"{name}.conv", mid, src, 3))
        t[f"{name}.conv_out.weight"] = (n, mid, 1, 1)
    return t


def synthetic_state(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in bisenet_table(n).items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(80_000, dtype=torch.int64)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=gen) + 0.5
        elif len(shape) == 4:
            state[name] = torch.randn(shape, generator=gen) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            state[name] = torch.randn(shape, generator=gen) * 0.1
    return state


@pytest.fixture(scope="module", params=[16, 19])
def checkpoint(request, tmp_path_factory) -> tuple[int, Path, dict[str, torch.Tensor]]:
    n = request.param
    state = synthetic_state(n)
    path = tmp_path_factory.mktemp(f"bisenet{n}") / ("seg.pth" if n == 16 else "79999_iter.pth")
    torch.save(state, path)  # both official files are flat state dicts
    return n, path, state


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and len(msg) < 600
    return msg


@pytest.mark.parametrize("n", [16, 19])
def test_module_matches_spec_table(n):
    net = BiSeNet(ParsingConfig.for_num_classes(n))
    table = bisenet_table(n)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == table
    assert len(table) == 191  # spec 5
    if n == 16:
        assert sum(p.numel() for p in net.parameters()) == 13_299_264  # spec 5


def test_load_infers_class_count_and_loads_exactly(checkpoint):
    n, path, state = checkpoint
    net = load_bisenet(path)
    assert net.config.num_classes == n
    own = net.state_dict()
    assert set(own) == set(state)
    assert all(torch.equal(own[k], v) for k, v in state.items())
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert load_bisenet(path, num_classes=n).config.num_classes == n


def test_class_count_mismatch_is_explained(checkpoint):
    n, path, _ = checkpoint
    other = 19 if n == 16 else 16
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path, num_classes=other)
    assert f"has {n} classes" in _one_line(exc)


def test_dataparallel_prefix_and_safetensors(tmp_path):
    state = synthetic_state(16, seed=1)
    path = tmp_path / "seg.safetensors"
    save_file({f"module.{k}": v for k, v in state.items()}, str(path))
    net = load_bisenet(path, official_clamp=True)
    assert net.config.official_clamp
    assert torch.equal(net.state_dict()["ffm.conv2.weight"], state["ffm.conv2.weight"])


def test_wrong_files_are_rejected(tmp_path):
    deep3d = {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7), "final_layers.0.weight": torch.zeros(80, 2048, 1, 1)}
    path = tmp_path / "epoch_20.pth"
    torch.save({"net_recon": deep3d}, path)  # no top-level tensors at all
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path)
    _one_line(exc)
    torch.save(deep3d, path)
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path)
    assert "conv_out.conv_out.weight" in _one_line(exc)
    odd = synthetic_state(16)
    odd["conv_out.conv_out.weight"] = torch.zeros(11, 256, 1, 1)
    torch.save(odd, path)
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path)
    assert "11 classes" in _one_line(exc)
    with pytest.raises(WeightsMissingError):
        load_bisenet(tmp_path / "absent.pth")


def test_missing_misshaped_and_truncated(tmp_path):
    state = synthetic_state(16)
    path = tmp_path / "seg.pth"
    torch.save({k: v for k, v in state.items() if k != "cp.arm16.bn_atten.running_var"}, path)
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path)
    assert "1 missing" in _one_line(exc) and "cp.arm16.bn_atten.running_var" in str(exc.value)
    bad = dict(state)
    bad["conv_out16.conv_out.weight"] = torch.zeros(16, 128, 1, 1)
    torch.save(bad, path)
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path)
    assert "wrong shape" in _one_line(exc) and "conv_out16.conv_out.weight" in str(exc.value)
    torch.save(state, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError) as exc:
        load_bisenet(path)
    _one_line(exc)


def test_output_shapes():
    net = BiSeNet(ParsingConfig.celebamask19(input_size=64)).eval()
    x = torch.randn(2, 3, 64, 80)
    main, aux16, aux32 = net(x, return_aux=True)
    assert main.shape == aux16.shape == aux32.shape == (2, 19, 64, 80)
    torch.testing.assert_close(net(x), main)
    labels = net.parse(torch.rand(2, 3, 100, 100) * 2 - 1)
    assert labels.shape == (2, 64, 64) and labels.dtype == torch.int64
    assert labels.min() >= 0 and labels.max() < 19
    with pytest.raises(InputError):
        net(torch.randn(2, 64, 64))


def test_attention_blocks_match_formulas():
    arm = AttentionRefinement(8, 4).eval()
    x = torch.randn(2, 8, 6, 6)
    feat = F.relu(arm.conv.bn(F.conv2d(x, arm.conv.conv.weight, padding=1)))
    att = torch.sigmoid(arm.bn_atten(F.conv2d(feat.mean((2, 3), keepdim=True), arm.conv_atten.weight)))
    torch.testing.assert_close(arm(x), feat * att)
    ffm = FeatureFusion(8, 8).eval()
    a, b = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    feat = F.relu(ffm.convblk.bn(F.conv2d(torch.cat([a, b], 1), ffm.convblk.conv.weight)))
    att = torch.sigmoid(F.conv2d(F.relu(F.conv2d(feat.mean((2, 3), keepdim=True), ffm.conv1.weight)), ffm.conv2.weight))
    torch.testing.assert_close(ffm(a, b), feat * att + feat)


def test_main_path_wiring_matches_spec():
    """Spec 5 data flow, written out step by step with the network's own sub-blocks."""
    net = BiSeNet(ParsingConfig.barbershop16(input_size=64)).eval()
    cp = net.cp
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        _, f8, f16, f32 = cp.resnet.forward_stages(x)
        ctx = F.interpolate(cp.conv_avg(F.adaptive_avg_pool2d(f32, 1)), size=f32.shape[2:], mode="nearest")
        head32 = cp.conv_head32(F.interpolate(cp.arm32(f32) + ctx, size=f16.shape[2:], mode="nearest"))
        head16 = cp.conv_head16(F.interpolate(cp.arm16(f16) + head32, size=f8.shape[2:], mode="nearest"))
        main = F.interpolate(net.conv_out(net.ffm(f8, head16)), size=(64, 64), mode="bilinear", align_corners=True)
        aux16 = F.interpolate(net.conv_out16(head16), size=(64, 64), mode="bilinear", align_corners=True)
        aux32 = F.interpolate(net.conv_out32(head32), size=(64, 64), mode="bilinear", align_corners=True)
        got = net(x, return_aux=True)
    for g, e in zip(got, (main, aux16, aux32)):
        torch.testing.assert_close(g, e)


def test_class_maps_follow_spec_ids():
    c16, c19 = ParsingConfig.barbershop16(), ParsingConfig.celebamask19()
    assert (c16.num_classes, c19.num_classes) == (16, 19)
    assert c16.mouth_ids == (7, 8, 9) and c16.static_ids == (10, 14, 15)
    assert c19.mouth_ids == (11, 12, 13) and c19.static_ids == (14, 16, 17)
    with pytest.raises(ValueError, match="class_names"):
        ParsingConfig(mouth_classes=("teeth",))


def test_equivalent_label_maps_give_identical_masks():
    # One scene described by class names; the 19-class set splits eyes/brows/ears into left and right.
    names = [["background", "hair", "hair", "background"],
             ["skin", "eyes", "nose", "skin"],
             ["upper_lip", "mouth", "lower_lip", "ears"],
             ["neck", "cloth", "necklace", "hat"]]
    to19 = {"eyes": "left_eye", "ears": "right_ear"}
    c16, c19 = ParsingConfig.barbershop16(), ParsingConfig.celebamask19()
    lab16 = torch.tensor([[c16.class_names.index(n) for n in row] for row in names])[None]
    lab19 = torch.tensor([[c19.class_names.index(to19.get(n, n)) for n in row] for row in names])[None]
    assert not torch.equal(lab16, lab19)
    mouth16, mouth19 = labels_to_mask(lab16, c16.mouth_ids), labels_to_mask(lab19, c19.mouth_ids)
    torch.testing.assert_close(mouth16, mouth19)
    assert mouth16[0, 0].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]]
    static16, static19 = labels_to_mask(lab16, c16.static_ids), labels_to_mask(lab19, c19.static_ids)
    torch.testing.assert_close(static16, static19)
    assert static16[0, 0].tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 0, 0]]
    # Using the 16-class ids on 19-class labels selects the wrong parts (spec 5: not interchangeable).
    assert not torch.equal(labels_to_mask(lab19, c16.mouth_ids), mouth16)


class _FixedLabels(BiSeNet):
    """BiSeNet whose logits are a one-hot of a fixed label map: tests the mask plumbing, not the weights."""

    def __init__(self, config: ParsingConfig, labels: torch.Tensor):
        super().__init__(config)
        self.labels = labels  # [h, w]
        self.seen: torch.Tensor | None = None

    def forward(self, x, return_aux=False):
        self.seen = x
        lab = F.interpolate(self.labels[None, None].float(), size=x.shape[2:], mode="nearest")[:, 0].long()
        return F.one_hot(lab, self.config.num_classes).permute(0, 3, 1, 2).float().expand(x.shape[0], -1, -1, -1)


@pytest.mark.parametrize("config", [ParsingConfig.barbershop16(input_size=32),
                                    ParsingConfig.celebamask19(input_size=32)])
def test_mouth_and_static_masks(config):
    labels = torch.zeros(32, 32, dtype=torch.int64)
    labels[20:26, 10:22] = config.class_names.index("upper_lip")
    labels[26:28, 10:22] = config.class_names.index("mouth")
    labels[0:6, :] = config.class_names.index("hair")
    labels[28:, :] = config.class_names.index("cloth")
    labels[8:12, 8:12] = config.class_names.index("nose")
    net = _FixedLabels(config, labels).eval()
    image = torch.rand(2, 3, 64, 64) * 2 - 1
    mouth = net.mouth_mask(image)
    assert mouth.shape == (2, 1, 64, 64) and mouth.dtype == torch.float32
    expected = torch.zeros(64, 64)
    expected[40:56, 20:44] = 1
    torch.testing.assert_close(mouth[1, 0], expected)
    static = net.static_mask(image, size=32)
    assert static.shape == (2, 1, 32, 32)
    assert static[0, 0, :6].eq(1).all() and static[0, 0, 28:].eq(1).all() and static[0, 0, 6:28].eq(0).all()
    assert net.seen.shape == (2, 3, 32, 32)  # parsed at config.input_size


def test_normalisation_flag_differs_on_negative_values():
    image = torch.full((1, 3, 32, 32), -0.5)
    image[..., :16] = 1.0
    rescale = normalize_for_parsing(image, ParsingConfig(input_size=32))
    clamp = normalize_for_parsing(image, ParsingConfig(input_size=32, official_clamp=True))
    torch.testing.assert_close(rescale[..., 16:], ((0.25 - MEAN) / STD).expand(1, 3, 32, 16))  # (x + 1) / 2
    torch.testing.assert_close(clamp[..., 16:], ((0.0 - MEAN) / STD).expand(1, 3, 32, 16))     # clamp(x, 0, 1)
    torch.testing.assert_close(rescale[..., :16], clamp[..., :16])  # both map +1 to white
    resized = normalize_for_parsing(torch.zeros(2, 3, 20, 30), ParsingConfig(input_size=32))
    assert resized.shape == (2, 3, 32, 32)
    torch.testing.assert_close(resized, ((0.5 - MEAN) / STD).expand(2, 3, 32, 32))
    with pytest.raises(InputError, match="float"):
        normalize_for_parsing(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), ParsingConfig(input_size=32))
