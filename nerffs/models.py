"""Construction of the model set: seeded random "smoke" models, or the official files from the weights dir.

Smoke models have the real architectures (tiny where the architecture allows it) and seeded random weights,
so the whole pipeline runs on a fresh machine without any download. Their output is labelled smoke
everywhere (log, file metadata). Official weights are looked up through ``nerffs.weights``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from nerffs.audio.audio2exp import Audio2Exp
from nerffs.face3d.bfm import ParametricFaceModel
from nerffs.face3d.parsing import BiSeNet, ParsingConfig
from nerffs.face3d.recon import Deep3DRegressor
from nerffs.face3d.synthetic import synthetic_face_model
from nerffs.lipaint.model import LipaintNet
from nerffs.talking.loop import TalkingModels
from stylenerf import Generator
from stylenerf.config import tiny_config

log = logging.getLogger(__name__)

SMOKE = "smoke"


@dataclass
class ModelSet:
    """All networks of the pipeline plus a label saying where their weights came from."""

    talking: TalkingModels
    audio2exp: Audio2Exp
    label: str
    """'smoke' (seeded random weights) or 'official:<weights dir>'."""

    @property
    def is_smoke(self) -> bool:
        return self.label == SMOKE

    def to(self, device: torch.device | str) -> "ModelSet":
        t = self.talking
        for m in (t.generator, t.face_model, t.deep3d, t.parser, t.lipaint, self.audio2exp):
            m.to(device)
        return self


def _frozen(module: torch.nn.Module) -> torch.nn.Module:
    return module.eval().requires_grad_(False)


def smoke_models(seed: int = 0, resolution: int = 128, num_vertices: int = 4000) -> ModelSet:
    """Seeded random models for every component (deterministic for a given seed).

    The Deep3D heads are scaled down so the random regressor predicts small coefficients (a face near the
    image centre) instead of arbitrary poses; everything else keeps its default initialisation.
    """
    torch.manual_seed(seed)
    g = Generator(tiny_config(resolution))
    deep3d = Deep3DRegressor()
    with torch.no_grad():
        for head in deep3d.final_layers:
            head.weight.mul_(1e-3)
            head.bias.zero_()
    parser = BiSeNet(ParsingConfig.barbershop16(input_size=64))
    lipaint = LipaintNet(w_dim=g.w_dim, exp_dim=64, hidden=g.w_dim)
    talking = TalkingModels(generator=_frozen(g), face_model=synthetic_face_model(num_vertices, seed=seed),
                            deep3d=_frozen(deep3d), parser=_frozen(parser), lipaint=_frozen(lipaint))
    log.warning("using SMOKE models: seeded random weights for every network; the output is not a face")
    return ModelSet(talking=talking, audio2exp=_frozen(Audio2Exp()), label=SMOKE)


def official_models(root: str | os.PathLike | None = None, generator: str = "stylenerf_ffhq512",
                    parsing: str = "bisenet_seg16") -> ModelSet:
    """Load every official file through the weights registry (missing files: one error naming all of them
    and the command that fetches them)."""
    from nerffs import weights  # the registry; imported lazily so smoke runs never need it

    names = [generator, "sadtalker", "bfm_front", parsing, "lipaintnet"]
    missing = weights.missing(names, root)
    if missing:
        from nerffs.errors import WeightsMissingError

        raise WeightsMissingError(f"missing weights {', '.join(missing)} in {weights.weights_dir(root)}; "
                                  f"fetch them with: {weights.fetch_command(missing)} (or use the smoke preset)")
    from nerffs.audio.audio2exp import load_audio2exp
    from nerffs.face3d.parsing import load_bisenet
    from nerffs.face3d.recon import load_deep3d
    from nerffs.lipaint.model import load_lipaint
    from stylenerf.io import load_generator

    path = lambda n: weights.resolve(n, root)  # noqa: E731
    talking = TalkingModels(generator=_frozen(load_generator(path(generator))),
                            face_model=ParametricFaceModel.from_mat(path("bfm_front")),
                            deep3d=_frozen(load_deep3d(path("sadtalker"))), parser=_frozen(load_bisenet(path(parsing))),
                            lipaint=_frozen(load_lipaint(path("lipaintnet"))))
    return ModelSet(talking=talking, audio2exp=_frozen(load_audio2exp(path("sadtalker"))),
                    label=f"official:{Path(weights.weights_dir(root))}")
