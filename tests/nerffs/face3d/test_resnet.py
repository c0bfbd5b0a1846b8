"""ResNet-18/50 backbones: torchvision names and shapes, block arithmetic, eval-mode BatchNorm."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nerffs.face3d.resnet import BasicBlock, Bottleneck, ResNet, ResNetConfig


def _bn_names(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def _torchvision_table(bottleneck: bool, depths: tuple[int, ...], fc: int | None) -> dict[str, tuple[int, ...]]:
    """The torchvision state-dict layout, written out from the architecture description (not from our module)."""
    table = {"conv1.weight": (64, 3, 7, 7), **_bn_names("bn1", 64)}
    in_ch = 64
    for stage, (width, depth) in enumerate(zip((64, 128, 256, 512), depths), start=1):
        out_ch = width * (4 if bottleneck else 1)
        for b in range(depth):
            p = f"layer{stage}.{b}"
            src = in_ch if b == 0 else out_ch
            if bottleneck:
                convs = [(width, src, 1, 1), (width, width, 3, 3), (out_ch, width, 1, 1)]
            else:
                convs = [(width, src, 3, 3), (width, width, 3, 3)]
            for i, shape in enumerate(convs, start=1):
                table[f"{p}.conv{i}.weight"] = shape
                table.update(_bn_names(f"{p}.bn{i}", shape[0]))
            if b == 0 and (stage > 1 or src != out_ch):
                table[f"{p}.downsample.0.weight"] = (out_ch, src, 1, 1)
                table.update(_bn_names(f"{p}.downsample.1", out_ch))
        in_ch = out_ch
    if fc is not None:
        table.update({"fc.weight": (fc, in_ch), "fc.bias": (fc,)})
    return table


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name, bottleneck, depths, entries, params", [
    ("resnet18", False, (2, 2, 2, 2), 122, 11_689_512),
    ("resnet50", True, (3, 4, 6, 3), 320, 25_557_032),
])
def test_names_and_shapes_match_torchvision_layout(name, bottleneck, depths, entries, params):
    config = getattr(ResNetConfig, name)(num_classes=1000)
    model = ResNet(config)
    table = _torchvision_table(bottleneck, depths, fc=1000)
    assert _shapes(model) == table
    assert list(model.state_dict()) == list(table)  # same order, too
    assert len(table) == entries
    # Published torchvision ImageNet parameter counts.
    assert sum(p.numel() for p in model.parameters()) == params


def test_no_fc_variant_drops_only_fc():
    model = ResNet(ResNetConfig.resnet18())
    assert model.fc is None
    assert _shapes(model) == _torchvision_table(False, (2, 2, 2, 2), fc=None)


def test_stage_shapes_and_pooled_output():
    model = ResNet(ResNetConfig.resnet18()).eval()
    x = torch.randn(2, 3, 64, 96)
    stages = model.forward_stages(x)
    assert [tuple(s.shape) for s in stages] == [(2, 64, 16, 24), (2, 128, 8, 12), (2, 256, 4, 6), (2, 512, 2, 3)]
    pooled = model(x)
    assert pooled.shape == (2, 512)
    torch.testing.assert_close(pooled, stages[-1].mean(dim=(2, 3)))


def test_fc_logits_shape():
    model = ResNet(ResNetConfig(block="basic", layers=(1, 1, 1, 1), num_classes=7)).eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 7)


def test_bad_config_and_input_raise():
    with pytest.raises(ValueError, match="block"):
        ResNetConfig(block="dense", layers=(2, 2, 2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="four"):
        ResNetConfig(block="basic", layers=(2, 2, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        ResNet(ResNetConfig.resnet18())(torch.randn(1, 4, 32, 32))


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=gen) + 0.5
            m.bias.data = torch.randn(c, generator=gen) * 0.1
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Inference BatchNorm: (x - running_mean) / sqrt(running_var + eps) * weight + bias."""
    shape = (1, -1, 1, 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def test_basic_block_matches_functional_formula():
    gen = torch.Generator().manual_seed(1)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    block = BasicBlock(8, 16, stride=2, downsample=down)
    _randomize_bn(block, gen)
    block.eval()
    x = torch.randn(2, 8, 10, 10, generator=gen)
    h = F.relu(_bn(F.conv2d(x, block.conv1.weight, stride=2, padding=1), block.bn1))
    h = _bn(F.conv2d(h, block.conv2.weight, padding=1), block.bn2)
    short = _bn(F.conv2d(x, down[0].weight, stride=2), down[1])
    expected = F.relu(h + short)
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_bottleneck_matches_functional_formula_with_stride_on_3x3():
    gen = torch.Generator().manual_seed(2)
    down = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
    block = Bottleneck(8, 4, stride=2, downsample=down)
    _randomize_bn(block, gen)
    block.eval()
    x = torch.randn(2, 8, 9, 9, generator=gen)
    h = F.relu(_bn(F.conv2d(x, block.conv1.weight), block.bn1))                      # 1x1, stride 1
    h = F.relu(_bn(F.conv2d(h, block.conv2.weight, stride=2, padding=1), block.bn2))  # 3x3 carries the stride
    h = _bn(F.conv2d(h, block.conv3.weight), block.bn3)
    expected = F.relu(h + _bn(F.conv2d(x, down[0].weight, stride=2), down[1]))
    out = block(x)
    assert out.shape == (2, 16, 5, 5)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # Identity shortcut when shapes agree.
    same = Bottleneck(16, 4).eval()
    _randomize_bn(same, gen)
    y = torch.randn(1, 16, 5, 5, generator=gen)
    h = F.relu(_bn(F.conv2d(y, same.conv1.weight), same.bn1))
    h = F.relu(_bn(F.conv2d(h, same.conv2.weight, padding=1), same.bn2))
    torch.testing.assert_close(same(y), F.relu(_bn(F.conv2d(h, same.conv3.weight), same.bn3) + y),
                               rtol=1e-5, atol=1e-5)


def test_eval_batchnorm_uses_running_stats_and_does_not_update_them():
    gen = torch.Generator().manual_seed(3)
    model = ResNet(ResNetConfig(block="basic", layers=(1, 1, 1, 1)))
    _randomize_bn(model, gen)
    model.eval()
    x = torch.randn(2, 3, 32, 32, generator=gen) * 3 + 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stem = F.relu(_bn(F.conv2d(x, model.conv1.weight, stride=2, padding=3), model.bn1))
    torch.testing.assert_close(model.relu(model.bn1(model.conv1(x))), stem)
    out_eval = model(x)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # Same input through a batch-of-one gives the same rows: no batch statistics are involved.
    torch.testing.assert_close(model(x[:1]), out_eval[:1], rtol=1e-5, atol=1e-6)
    model.train()
    out_train = model(x)
    assert not torch.allclose(out_train, out_eval, atol=1e-3)
    assert not torch.equal(model.bn1.running_mean, before["bn1.running_mean"])
