"""LPIPS without torchvision: metric properties, head files from the lpips package, torchvision-name loading.

No ImageNet trunk is available offline, so the trunks here are either random (labelled) or a fixed analytic
trunk (Gaussian and derivative-of-Gaussian filters in the first convolution, identity pass-through in the
others) that makes the perceptual ordering "blurred is worse than shifted by one pixel" testable. The linear
heads are always the real v0.1 files shipped with the lpips package.
"""
from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nerffs.errors import CheckpointError, WeightsMissingError
from nerffs.inversion import lpips as lp_mod
from nerffs.inversion.lpips import LPIPS, load_lpips

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lpips") is None,
                                reason="lpips package (linear heads) not installed: pip install --no-deps lpips==0.1.4")

NETS = ("vgg", "alex")
# torchvision conv indices and shapes in `features` (vgg16 / alexnet), as in torchvision's checkpoints.
TV_CONVS = {
    "vgg": {0: (64, 3, 3), 2: (64, 64, 3), 5: (128, 64, 3), 7: (128, 128, 3), 10: (256, 128, 3),
            12: (256, 256, 3), 14: (256, 256, 3), 17: (512, 256, 3), 19: (512, 512, 3), 21: (512, 512, 3),
            24: (512, 512, 3), 26: (512, 512, 3), 28: (512, 512, 3)},
    "alex": {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)},
}


@pytest.fixture(autouse=True)
def _no_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path / "weights"))


def scene(res: int, seed: int) -> torch.Tensor:
    """[1, 3, res, res] in [-1, 1]: smooth colour field plus overlapping discs with sharp edges."""
    g = torch.Generator().manual_seed(seed)
    img = F.interpolate(torch.randn(1, 3, res // 8, res // 8, generator=g), size=(res, res), mode="bicubic") * 0.4
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    for _ in range(6):
        c, r = torch.rand(2, generator=g) * 1.6 - 0.8, torch.rand(1, generator=g) * 0.4 + 0.1
        m = ((xx - c[0]) ** 2 + (yy - c[1]) ** 2 < r**2).float()
        img = img * (1 - m) + (torch.rand(3, 1, 1, generator=g) * 2 - 1) * m
    return img.clamp(-1, 1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(3 * sigma) * 2 + 1
    t = torch.arange(k, dtype=torch.float32) - k // 2
    w = torch.exp(-t**2 / (2 * sigma**2))
    w = w / w.sum()
    x = F.pad(x, (k // 2,) * 4, mode="reflect")
    x = F.conv2d(x, w.view(1, 1, 1, k).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, w.view(1, 1, k, 1).repeat(3, 1, 1, 1), groups=3)


def shift_right(x: torch.Tensor) -> torch.Tensor:
    """Shift by one pixel, repeating the first column."""
    return torch.cat([x[..., :1], x[..., :-1]], dim=-1)


def set_analytic_trunk(model: LPIPS, sigma: float = 0.7) -> None:
    """First conv: +/- Gaussian, d/dx and d/dy of Gaussian per colour channel; later convs: identity."""
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            conv.weight.zero_()
            conv.bias.zero_()
            k = conv.kernel_size[0]
            mid = k // 2
            if i > 0:
                for o in range(conv.out_channels):
                    conv.weight[o, o % conv.in_channels, mid, mid] = 1.0
                continue
            t = torch.arange(k, dtype=torch.float32) - mid
            g = torch.exp(-t**2 / (2 * sigma**2))
            g = g / g.sum()
            dg = -t * g / sigma**2
            filters = [g[:, None] * g[None, :], g[:, None] * dg[None, :], dg[:, None] * g[None, :]]
            patterns = []
            for ch in range(3):
                for sign in (1.0, -1.0):
                    for f in filters:
                        w = torch.zeros(3, k, k)
                        w[ch] = sign * f
                        patterns.append(w)
            for o in range(conv.out_channels):
                conv.weight[o] = patterns[o % len(patterns)]


@pytest.fixture(scope="module")
def random_metrics() -> dict[str, LPIPS]:
    """Real heads + RANDOM trunks (not a perceptual metric; fine for structural properties)."""
    return {net: load_lpips(net, allow_random=True, random_seed=3) for net in NETS}


@pytest.mark.parametrize("net", NETS)
def test_identical_images_give_zero_and_different_positive(random_metrics, net):
    x, y = scene(64, 0), scene(64, 1)
    metric = random_metrics[net]
    assert metric(x, x).item() == 0.0
    assert metric(x, y).item() > 1e-3


@pytest.mark.parametrize("net", NETS)
def test_symmetric_and_batched(random_metrics, net):
    metric = random_metrics[net]
    x, y = torch.cat([scene(64, 2), scene(64, 3)]), torch.cat([scene(64, 4), scene(64, 5)])
    d_xy, d_yx = metric(x, y), metric(y, x)
    assert d_xy.shape == (2,)
    torch.testing.assert_close(d_xy, d_yx, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(metric(x[1:], y[1:]), d_xy[1:], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(metric.distance(x, metric.layer_features(y)), d_xy)


@pytest.mark.parametrize("net", NETS)
def test_blur_is_farther_than_one_pixel_shift(net):
    """With an edge-detecting trunk, a sigma-2 blur must cost more than a 1-pixel shift, and more than sigma 1."""
    metric = load_lpips(net, allow_random=True)
    set_analytic_trunk(metric)
    for seed in (10, 11):
        x = scene(64, seed)
        d_shift, d_blur1, d_blur2 = (metric(x, y).item() for y in (shift_right(x), gaussian_blur(x, 1.0),
                                                                  gaussian_blur(x, 2.0)))
        assert d_blur2 > 1.2 * d_shift
        assert d_blur2 > d_blur1 > 0


def test_gradients_reach_the_input(random_metrics):
    x = scene(64, 6).requires_grad_(True)
    random_metrics["vgg"](x, scene(64, 7)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in random_metrics["vgg"].parameters())


@pytest.mark.parametrize("net", NETS)
def test_heads_load_from_package_files_without_importing_lpips(random_metrics, net):
    path = lp_mod.head_path(net)
    assert path.parent.parent.parent == lp_mod.lpips_package_dir()
    state = torch.load(path, map_location="cpu", weights_only=True)
    for k, head in enumerate(random_metrics[net].heads):
        assert torch.equal(head.weight, state[f"lin{k}.model.1.weight"])
        assert (head.weight >= 0).all() and head.weight.sum() > 0
    assert "lpips" not in sys.modules and "torchvision" not in sys.modules


def _torchvision_like_state(net: str, seed: int) -> dict[str, torch.Tensor]:
    """Synthetic checkpoint with torchvision's feature names/shapes (classifier entries shrunk: they are ignored)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for idx, (cout, cin, k) in TV_CONVS[net].items():
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.01
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.01
    for idx in ((0, 3, 6) if net == "vgg" else (1, 4, 6)):
        state[f"classifier.{idx}.weight"] = torch.zeros(4, 4)
        state[f"classifier.{idx}.bias"] = torch.zeros(4)
    return state


@pytest.mark.parametrize("net", NETS)
def test_torchvision_named_checkpoint_loads(tmp_path, net):
    state = _torchvision_like_state(net, seed=1)
    path = tmp_path / "weights" / lp_mod.BACKBONE_FILES[net]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    metric = load_lpips(net)  # found through $NERFFS_WEIGHTS
    assert metric.backbone_source == str(path)
    own = metric.state_dict()
    for name, tensor in state.items():
        if name.startswith("features."):
            assert torch.equal(own[name], tensor)
    assert not metric.training and not any(p.requires_grad for p in metric.parameters())


@pytest.mark.parametrize("net", NETS)
def test_missing_backbone_names_file_and_directory(tmp_path, net):
    with pytest.raises(WeightsMissingError) as info:
        load_lpips(net)
    msg = str(info.value)
    assert lp_mod.BACKBONE_FILES[net].split("/")[1] in msg
    assert str(tmp_path / "weights" / "torchvision") in msg
    assert "\n" not in msg


def test_wrong_checkpoint_is_a_one_line_error(tmp_path):
    state = _torchvision_like_state("alex", seed=2)
    state["features.3.weight"] = torch.zeros(192, 64, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="misshaped"):
        load_lpips("alex", backbone_path=path)
    vgg_for_alex = tmp_path / "vgg.pth"
    torch.save(_torchvision_like_state("vgg", seed=3), vgg_for_alex)
    with pytest.raises(CheckpointError):
        load_lpips("alex", backbone_path=vgg_for_alex)
    with pytest.raises(ValueError, match="'vgg' or 'alex'"):
        load_lpips("squeeze")
