"""The networks are built in one place (nerffs.lipaint.networks): the smoke pipeline and LipaintNet training get
the same ones, and nerffs.lipaint never reaches up into nerffs.models."""
import ast
from pathlib import Path

import pytest
import torch

from nerffs.lipaint import networks
from nerffs.lipaint.networks import EXP_DIM, new_lipaint, seeded_networks, small_deep3d
from nerffs.lipaint.train import TrainConfig, smoke_training_models
from nerffs.models import smoke_models

LIPAINT = Path(networks.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("path", sorted(LIPAINT.glob("*.py")), ids=lambda p: p.name)
def test_lipaint_does_not_import_the_model_sets(path):
    higher = ("nerffs.models", "nerffs.pipeline", "nerffs.talking", "nerffs.offline")
    assert not [m for m in _imported_modules(path) if m.startswith(higher)]


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_smoke_pipeline_and_smoke_training_share_the_networks():
    pipeline = smoke_models(0, resolution=64, num_vertices=2000).talking
    training = smoke_training_models(TrainConfig.preset("smoke"))  # seed 0, 64 px, 2000 vertices
    for name in ("generator", "parser", "lipaint"):
        assert _same_weights(getattr(pipeline, name), getattr(training, name)), name
    torch.testing.assert_close(pipeline.face_model.exp_base, training.face_model.exp_base)
    # training swaps in the small Deep3D (ResNet-18 on 64 px), quietened the same way
    assert training.deep3d.config.input_size == 64 and pipeline.deep3d.config.input_size == 224
    for net in (training.deep3d, pipeline.deep3d):
        assert all(head.bias.abs().max() == 0 for head in net.final_layers)


def test_seeded_networks_are_frozen_deterministic_and_seed_dependent():
    a, b, c = seeded_networks(1, 64, 500), seeded_networks(1, 64, 500), seeded_networks(2, 64, 500)
    assert _same_weights(a.generator, b.generator) and _same_weights(a.lipaint, b.lipaint)
    assert not _same_weights(a.generator, c.generator)
    for net in (a.generator, a.deep3d, a.parser, a.lipaint):
        assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert a.lipaint.w_dim == a.generator.w_dim and a.lipaint.exp_dim == EXP_DIM == 64


def test_small_deep3d_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    small_deep3d(0)
    torch.testing.assert_close(torch.rand(3), expected)


def test_new_lipaint_fits_the_generator():
    g = seeded_networks(0, 64, 500).generator
    net = new_lipaint(g)
    w = torch.zeros(2, g.w_dim)
    assert net(w, torch.zeros(2, EXP_DIM)).shape == (2, g.w_dim)
