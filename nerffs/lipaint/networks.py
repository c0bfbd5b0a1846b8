"""The networks LipaintNet works with, built in one place: seeded random ("smoke") or from the official files.

LipaintNet's objective (paper 4.4) runs through the StyleNeRF generator, Deep3D and the BFM face model; the frame
loop adds the face parser that masks the mouth LipaintNet fills. ``nerffs.models`` assembles the pipeline's model
sets from these builders and ``nerffs.lipaint.train`` trains with the very same ones, so a LipaintNet trained on
the smoke set drops into the smoke pipeline (and one trained on the official files into the official set).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from nerffs import weights
from nerffs.face3d.bfm import ParametricFaceModel
from nerffs.face3d.coeffs import LAYOUT
from nerffs.face3d.parsing import BiSeNet, ParsingConfig, load_bisenet
from nerffs.face3d.recon import Deep3DConfig, Deep3DRegressor, load_deep3d
from nerffs.face3d.resnet import ResNetConfig
from nerffs.face3d.synthetic import synthetic_face_model
from nerffs.lipaint.model import LipaintNet, load_lipaint
from stylenerf import Generator
from stylenerf.config import tiny_config
from stylenerf.io import load_generator

M = TypeVar("M", bound=nn.Module)

EXP_DIM = LAYOUT["exp"][1] - LAYOUT["exp"][0]
"""LipaintNet's expression input: the 64 BFM09 expression coefficients."""


@dataclass
class TalkingModels:
    """The per-photo-independent networks of the method (eval mode, no gradients, one device): the one container
    of them, built here for the smoke and official sets, by ``nerffs.offline`` for its own, and used by the frame
    loop (``nerffs.talking.loop``, which needs all five) and LipaintNet training."""

    generator: Generator
    face_model: ParametricFaceModel
    deep3d: Deep3DRegressor
    parser: BiSeNet | None
    """The face parser (or any module with its interface); None when not asked for (LipaintNet training does not
    parse faces)."""
    lipaint: LipaintNet | None
    """None when not asked for (training starts a new one or loads ``init_lipaint``)."""


def frozen(module: M) -> M:
    """``module`` in eval mode without parameter gradients (gradients still flow through it)."""
    return module.eval().requires_grad_(False)


def new_lipaint(generator: Generator) -> LipaintNet:
    """A freshly initialised LipaintNet for ``generator``'s W space (from the global torch RNG)."""
    return LipaintNet(w_dim=generator.w_dim, exp_dim=EXP_DIM, hidden=generator.w_dim)


def _quiet_heads(net: Deep3DRegressor) -> Deep3DRegressor:
    """Scale a random regressor's heads down so it predicts small coefficients (a face near the image centre)
    instead of arbitrary poses."""
    with torch.no_grad():
        for head in net.final_layers:
            head.weight.mul_(1e-3)
            head.bias.zero_()
    return net


def seeded_networks(seed: int = 0, resolution: int = 128, num_vertices: int = 4000) -> TalkingModels:
    """Seeded random networks with the official architectures (a tiny generator), every one of them.

    Deterministic for a given seed: ``torch.manual_seed(seed)``, then generator, Deep3D, parser and LipaintNet
    are initialised in that order (the global RNG continues from there for the caller). The Deep3D heads are
    scaled down (``_quiet_heads``); everything else keeps its default initialisation.
    """
    torch.manual_seed(seed)
    g = Generator(tiny_config(resolution))
    deep3d = _quiet_heads(Deep3DRegressor())
    parser = BiSeNet(ParsingConfig.barbershop16(input_size=64))
    lipaint = new_lipaint(g)
    return TalkingModels(generator=frozen(g), face_model=synthetic_face_model(num_vertices, seed=seed),
                    deep3d=frozen(deep3d), parser=frozen(parser), lipaint=frozen(lipaint))


def small_deep3d(seed: int) -> Deep3DRegressor:
    """A seeded ResNet-18 regressor on 64-px crops, heads scaled down as in ``seeded_networks`` (10x faster on CPU
    than the ResNet-50 on 224 px; for smoke training). Leaves the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 2)
        net = Deep3DRegressor(Deep3DConfig(backbone=ResNetConfig.resnet18(), input_size=64))
    return frozen(_quiet_heads(net))


def load_networks(root: str | os.PathLike | None, generator: str, parsing: str | None = None,
                  lipaint: bool = True) -> TalkingModels:
    """The official networks from the weights registry (the caller has checked that the files are present).

    Args:
        root: weights directory (None: ``$NERFFS_WEIGHTS`` or ``~/.cache/nerffs/weights``).
        generator: registry name of the StyleNeRF generator (``stylenerf_ffhq512``, ...).
        parsing: registry name of the BiSeNet file, or None for no parser.
        lipaint: also load the released LipaintNet (``lipaintnet``).

    Raises:
        CheckpointError (and the generator's checkpoint errors): a file is unreadable; the line names it.
    """
    def path(name: str):
        return weights.resolve(name, root)

    return TalkingModels(generator=frozen(load_generator(path(generator))),
                    face_model=ParametricFaceModel.from_mat(path("bfm_front")),
                    deep3d=frozen(load_deep3d(path("sadtalker"))),
                    parser=frozen(load_bisenet(path(parsing))) if parsing else None,
                    lipaint=frozen(load_lipaint(path("lipaintnet"))) if lipaint else None)
