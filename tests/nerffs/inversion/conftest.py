"""Fixtures shared by the inversion tests: tiny random generators, a target image, random-trunk LPIPS."""
from __future__ import annotations

import importlib.util

import pytest
import torch

from stylenerf import Generator, get_preset
from stylenerf.camera import camera_from_angles


@pytest.fixture(scope="module", autouse=True)
def _one_thread(single_thread):
    """Many tiny optimisation steps at 64 x 64: single-threaded (see ``single_thread``), module-wide so
    module-scoped fixtures that optimise run single-threaded too."""
    yield


def tiny_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    return Generator(get_preset("tiny")).eval()


@pytest.fixture(scope="session")
def generator() -> Generator:
    """The tiny random generator being inverted (64 x 64, w_dim 32, z_dim_bg 8)."""
    return tiny_generator(0)


@pytest.fixture(scope="session")
def camera() -> torch.Tensor:
    """A slightly turned camera [1, 4, 4] (not the frontal one, so the pose really is used)."""
    return camera_from_angles(0.1, 1.5)


@pytest.fixture(scope="session")
def target(camera) -> torch.Tensor:
    """[1, 3, 64, 64]: an image rendered by a DIFFERENT random tiny generator."""
    other = tiny_generator(1)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        ws = other.mapping(torch.randn(1, other.z_dim, generator=g))
        return other.synthesis(ws, camera, bg_latent=torch.randn(1, 8, generator=g), freeze_bg=True).img


@pytest.fixture(scope="session")
def metrics():
    """LPIPS-vgg and LPIPS-alex with the real lpips heads and RANDOM trunks (labelled; no ImageNet files here)."""
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("lpips package (linear heads) not installed")
    from nerffs.inversion.lpips import load_lpips

    return {net: load_lpips(net, backbone_path="/nonexistent", allow_random=True, random_seed=1)
            for net in ("vgg", "alex")}
