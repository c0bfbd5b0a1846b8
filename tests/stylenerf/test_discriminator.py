"""The StyleNeRF discriminator: official names/shapes (spec-stylenerf.md 1.6), strict loading, forward."""
from __future__ import annotations

import pytest
import torch

from stylenerf.discriminator import (Discriminator, DiscriminatorConfig, config_from_state,
                                     discriminator_from_state, minibatch_std)


def spec_table(resolution: int, fmaps: float) -> dict[str, tuple[int, ...]]:
    """Names and shapes written out from the rules of spec 1.6 (independent of the implementation)."""
    c = lambda r: min(int(32768 * fmaps) // r, 512)  # noqa: E731
    table: dict[str, tuple[int, ...]] = {"alpha": ()}
    r = resolution
    while r >= 8:
        table |= {f"b{r}.resample_filter": (4, 4),
                  f"b{r}.fromrgb.weight": (c(r), 3, 1, 1), f"b{r}.fromrgb.bias": (c(r),),
                  f"b{r}.conv0.weight": (c(r), c(r), 3, 3), f"b{r}.conv0.bias": (c(r),),
                  f"b{r}.conv1.weight": (c(r // 2), c(r), 3, 3), f"b{r}.conv1.bias": (c(r // 2),)}
        table |= {f"b{r}.{n}.resample_filter": (4, 4) for n in ("fromrgb", "conv0", "conv1")}
        r //= 2
    table |= {"b4.fromrgb.weight": (512, 3, 1, 1), "b4.fromrgb.bias": (512,), "b4.fromrgb.resample_filter": (4, 4),
              "b4.conv.weight": (512, 513, 3, 3), "b4.conv.bias": (512,), "b4.conv.resample_filter": (4, 4),
              "b4.fc.weight": (512, 8192), "b4.fc.bias": (512,), "b4.out.weight": (1, 512), "b4.out.bias": (1,)}
    return table


@pytest.mark.parametrize("resolution,fmaps", [(256, 0.5), (512, 1.0)])
def test_official_names_and_shapes(resolution, fmaps):
    with torch.device("meta"):
        d = Discriminator(DiscriminatorConfig.official(resolution))
    got = {k: tuple(v.shape) for k, v in d.state_dict().items()}
    assert got == spec_table(resolution, fmaps)
    if resolution == 512:  # spec 1.6: 27.77 M parameters
        assert round(sum(p.numel() for p in d.parameters()) / 1e6, 2) == 27.77


def test_config_inferred_from_state_and_strict_load():
    cfg = DiscriminatorConfig(img_resolution=32, channel_base=256, channel_max=16, mbstd_group_size=4)
    src = Discriminator(cfg)
    state = {k: v.clone() for k, v in src.state_dict().items()}  # flat dotted names, like legacy.read_official_pickle
    got = config_from_state(state, mbstd_group_size=4)
    assert (got.img_resolution, got.channel_base, got.channel_max, got.architecture) == (32, 256, 16, "skip")
    d = discriminator_from_state(state, mbstd_group_size=4)
    img = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(d(img), src(img))
    bad = dict(state)
    bad.pop("alpha")
    with pytest.raises(RuntimeError):
        Discriminator(cfg).load_state_dict(bad, strict=True)


@pytest.mark.parametrize("arch", ["skip", "resnet", "orig"])
def test_forward_shapes_and_gradients(arch):
    torch.manual_seed(0)
    d = Discriminator(DiscriminatorConfig(img_resolution=32, architecture=arch, channel_base=256, channel_max=16))
    img = torch.randn(3, 3, 64, 64, requires_grad=True)  # resized to 32 inside
    logits = d(img)
    assert logits.shape == (3, 1) and torch.isfinite(logits).all()
    torch.nn.functional.softplus(-logits).mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_minibatch_std_groups():
    x = torch.randn(6, 4, 2, 2)
    y = minibatch_std(x, group_size=4)  # largest divisor of 6 that is <= 4: 3
    assert y.shape == (6, 5, 2, 2)
    std = x.reshape(3, 2, 4, 2, 2).std(dim=0, unbiased=False).mean(dim=[1, 2, 3])
    torch.testing.assert_close(y[:2, 4, 0, 0], std, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[2:4, 4, 0, 0], std)
