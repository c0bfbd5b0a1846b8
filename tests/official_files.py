"""Test helper: a complete weights directory of synthetic files in every official format (spec-pipeline.md 10).

``build_official_dir(root)`` writes, at the registry path of every asset ``nerffs.models.official_models`` loads:

* ``stylenerf/ffhq_512.pkl``: an official StyleNeRF training snapshot (persistent-class records with embedded
  module sources, OmegaConf kwargs with interpolations, legacy tensor storages; ``tests/stylenerf/official_pickle``)
  holding a *small* generator. The loaders take the architecture from the stored kwargs and the tensor shapes, so
  the smallest one they accept keeps the official structure (10 NeRF styles, Rv = 32, 8 mapping layers, two
  upsampler blocks) with narrow layers (w_dim 32, NeRF width 16) at 128 px;
* ``sadtalker/SadTalker_V0.0.2_256.safetensors``: the ``audio2exp.*`` (Audio2Exp), ``audio2pose.*`` (Audio2Pose)
  and ``face_3drecon.*`` (Deep3D ResNet-50 regressor, without BatchNorm counters) entries plus two stand-ins for
  the face-renderer parts;
* ``bfm/BFM_model_front.mat``: Deep3D's layout (float32 values, int32 1-based indices) of the 4000-vertex
  synthetic dome the smoke preset uses (the loader accepts any vertex count);
* ``parsing/seg.pth``: a 16-class BiSeNet state dict (``torch.save``, zip format);
* ``lipaint/LipaintNet.pt``: ``{'model_state_dict': ..., 'epoch': ...}`` with w_dim matching the generator.

The networks have seeded random weights chosen like the smoke set (the Deep3D heads scaled down so the regressor
predicts a face near the centre), so a pipeline run on them finishes in seconds and proves the plumbing of the
official path; the output is not a face. Nothing here touches the network.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from nerffs.audio.audio2exp import Audio2Exp
from nerffs.audio.audio2pose import Audio2Pose
from nerffs.face3d.bfm import ParametricFaceModel
from nerffs.face3d.parsing import BiSeNet, ParsingConfig
from nerffs.face3d.recon import Deep3DRegressor
from nerffs.face3d.synthetic import synthetic_face_model
from nerffs.lipaint.model import LipaintNet
from nerffs.weights import asset_path
from stylenerf import Generator
from stylenerf.config import GeneratorConfig, MappingConfig, NeRFConfig, RendererConfig, UpsamplerConfig
from tests.nerffs.face3d.synthetic_bfm import write_synthetic_bfm
from tests.stylenerf.official_pickle import (EASYDICT, FakeDict, OfficialPickler, build_generator, embedded_source,
                                             official_init_kwargs)

GENERATOR = "stylenerf_ffhq512"
"""The generator asset ``official_models`` loads by default."""
OFFICIAL_NAMES = (GENERATOR, "sadtalker", "bfm_front", "bisenet_seg16", "lipaintnet")
"""Every asset of the official model set, in the order ``official_models`` lists them."""
OTHER_SADTALKER_PARTS = ("kp_extractor.stand_in.weight", "he_estimator.stand_in.weight")
"""Stand-ins for the face-renderer parts of the bundle, which nerffs never reads (each loader must pick its own
prefix)."""


@dataclass
class OfficialFiles:
    """A weights directory written by :func:`build_official_dir` and what was written into it."""

    root: Path
    paths: dict[str, Path]
    """Registry name -> file."""
    states: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """Component (``generator``, ``audio2exp``, ``audio2pose``, ``deep3d``, ``parser``, ``lipaint``) -> the tensors
    written, by the names our modules use (the generator: official names)."""
    generator_config: GeneratorConfig | None = None


def small_generator_config() -> GeneratorConfig:
    """A small generator that the official loader reads without falling back from any stored option.

    The official structure is kept where the snapshot format fixes it: 8 mapping layers (``${spec.map}``),
    10 NeRF styles (8 foreground blocks), Rv = 32 (the stored helper objects), pixelshuffle with magnitude EMA.
    """
    return GeneratorConfig(
        img_resolution=128, z_dim=32, w_dim=32, resolution_vol=32, mapping=MappingConfig(num_layers=8),
        nerf=NeRFConfig(rgb_out_dim=16, fg_hidden=16, fg_blocks=8, bg_hidden=16, bg_blocks=2, z_dim_bg=8,
                        n_freq_posenc=6),
        renderer=RendererConfig(n_ray_samples=8, n_bg_samples=4),
        upsampler=UpsamplerConfig(channel_base=1024, channel_max=32, num_fp16_blocks=1))


def official_kwargs(cfg: GeneratorConfig) -> dict:
    """``G_ema._init_kwargs`` as the official training code would store them for ``cfg`` (spec-stylenerf 1.2).

    Starts from the released 256 px kwargs and changes every entry the small architecture differs in, so
    ``stylenerf.legacy.config.config_from_official`` needs no shape-over-kwargs fallback.
    """
    kw = copy.deepcopy(official_init_kwargs("ffhq256-pixelshuffle-F64"))
    n, u = cfg.nerf, cfg.upsampler
    kw.update(z_dim=cfg.z_dim, w_dim=cfg.w_dim, img_resolution=cfg.img_resolution)
    kw["mapping_kwargs"]["num_layers"] = cfg.mapping.num_layers
    sk = kw["synthesis_kwargs"]
    sk.update(channel_base=u.channel_base, channel_max=u.channel_max, kernel_size=u.kernel_size,
              upsample_mode=u.upsample_mode, z_dim_bg=n.z_dim_bg, resolution_vol=cfg.resolution_vol,
              resolution_start=cfg.resolution_vol, rgb_out_dim=n.rgb_out_dim,
              magnitude_ema_beta=u.magnitude_ema_beta)
    sk["renderer_kwargs"].update(n_ray_samples=cfg.renderer.n_ray_samples, n_bg_samples=cfg.renderer.n_bg_samples)
    for key, hidden, blocks, z in (("foreground_kwargs", n.fg_hidden, n.fg_blocks, 0),
                                   ("background_kwargs", n.bg_hidden, n.bg_blocks, n.z_dim_bg)):
        sk[key].update(hidden_size=hidden, n_blocks=blocks, n_freq_posenc=n.n_freq_posenc, w_dim=cfg.w_dim,
                       rgb_out_dim=n.rgb_out_dim, z_dim=z)
    sk["upsampler_kwargs"].update(channel_base=u.channel_base, channel_max=u.channel_max, in_res=cfg.resolution_vol,
                                  out_res=cfg.img_resolution)
    return kw


def write_generator_pickle(path: Path, cfg: GeneratorConfig, state: dict[str, torch.Tensor]) -> None:
    """Write ``state`` (official names) as an official StyleNeRF snapshot of the architecture ``cfg``.

    The embedded module sources write ``<path>.executed`` if anyone runs them (the loaders never must).
    """
    kwargs = official_kwargs(cfg)
    marker = path.with_name(path.name + ".executed")
    sources = {"networks": embedded_source(marker, "training/networks.py"),
               "stylenerf": embedded_source(marker, "training/stylenerf.py")}
    g_ema = build_generator(state, kwargs, sources, omegaconf=True)
    snapshot = {
        "training_set_kwargs": _easydict({"class_name": "training.dataset.ImageFolderDataset", "path": "ffhq.zip",
                                          "resolution": cfg.img_resolution, "use_labels": False,
                                          "max_size": 70000, "xflip": True}),
        "G": g_ema, "G_ema": g_ema, "augment_pipe": None}
    with open(path, "wb") as f:
        OfficialPickler(f, protocol=3).dump(snapshot)


def _easydict(items: dict) -> FakeDict:
    return FakeDict(EASYDICT, items)


def write_sadtalker(path: Path, audio2exp: dict[str, torch.Tensor], deep3d: dict[str, torch.Tensor],
                    audio2pose: dict[str, torch.Tensor]) -> None:
    """The SadTalker V0.0.2 bundle: ``audio2exp.*``, ``audio2pose.*``, ``face_3drecon.*`` and stand-ins for the
    other sub-models."""
    tensors = {f"audio2exp.{k}": v for k, v in audio2exp.items()}
    tensors.update({f"audio2pose.{k}": v for k, v in audio2pose.items()})
    # Spec 11: unknown whether the bundle stores BatchNorm counters; the Deep3D part here has none (the loader
    # fills them), the Audio2Exp part keeps them.
    tensors.update({f"face_3drecon.{k}": v for k, v in deep3d.items() if not k.endswith("num_batches_tracked")})
    tensors.update({name: torch.zeros(4, 3) for name in OTHER_SADTALKER_PARTS})
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path),
              metadata={"format": "pt"})


def write_bfm_front(path: Path, model: ParametricFaceModel) -> None:
    """``BFM_model_front.mat`` in Deep3D's layout (spec-pipeline 3.3) holding ``model``'s arrays."""
    b = {k: v.numpy() for k, v in model.named_buffers()}
    nv = model.num_vertices
    fields = {"meanshape": b["mean_shape"].reshape(1, 3 * nv), "idBase": b["id_base"], "exBase": b["exp_base"],
              "meantex": b["mean_tex"].reshape(1, 3 * nv), "texBase": b["tex_base"], "tri": b["tri"] + 1,
              "point_buf": b["point_buf"] + 1, "keypoints": (b["keypoints"] + 1).reshape(1, -1),
              "skinmask": b["skinmask"].reshape(1, nv)}
    write_synthetic_bfm(path, layout="deep3d", fields=fields)


def _models(seed: int, cfg: GeneratorConfig) -> dict[str, torch.nn.Module]:
    """Seeded random networks of every official component (chosen as in ``nerffs.models.smoke_models``)."""
    torch.manual_seed(seed)
    generator = Generator(cfg)
    deep3d = Deep3DRegressor()
    with torch.no_grad():  # small coefficients: a centred, frontal face instead of an arbitrary pose
        for head in deep3d.final_layers:
            head.weight.mul_(1e-3)
            head.bias.zero_()
    return {"generator": generator, "deep3d": deep3d, "audio2exp": Audio2Exp(), "audio2pose": Audio2Pose(),
            "parser": BiSeNet(ParsingConfig.barbershop16()),
            "lipaint": LipaintNet(w_dim=cfg.w_dim, exp_dim=64, hidden=cfg.w_dim),
            "face_model": synthetic_face_model(4000, seed=seed)}


def build_official_dir(root: str | Path, seed: int = 0) -> OfficialFiles:
    """Write every official file ``official_models`` loads under ``root`` (the registry's relative paths).

    Returns:
        the paths and the tensors written (to compare with what the loaders return).
    """
    root = Path(root)
    cfg = small_generator_config()
    m = _models(seed, cfg)
    paths = {name: asset_path(name, root) for name in OFFICIAL_NAMES}
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    states = {"generator": {k: v.detach().clone() for k, v in m["generator"].state_dict().items()},
              "audio2exp": m["audio2exp"].state_dict(), "audio2pose": m["audio2pose"].state_dict(),
              "deep3d": m["deep3d"].state_dict(),
              "parser": m["parser"].state_dict(), "lipaint": m["lipaint"].state_dict()}
    write_generator_pickle(paths[GENERATOR], cfg, states["generator"])
    write_sadtalker(paths["sadtalker"], states["audio2exp"], states["deep3d"], states["audio2pose"])
    write_bfm_front(paths["bfm_front"], m["face_model"])
    torch.save(states["parser"], paths["bisenet_seg16"])
    torch.save({"model_state_dict": states["lipaint"], "epoch": 100}, paths["lipaintnet"])
    return OfficialFiles(root=root, paths=paths, states=states, generator_config=cfg)


def corrupt(path: Path) -> None:
    """Cut a file to half its size (what an interrupted copy leaves; every format detects it)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


def link_copy(files: OfficialFiles, dest: Path, *, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """A second weights directory at ``dest`` whose files are symlinks into ``files.root`` (except ``skip``).

    Returns:
        registry name -> path in ``dest`` (also for the skipped names, which do not exist there).
    """
    out = {}
    for name, src in files.paths.items():
        target = asset_path(name, dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        if name not in skip:
            target.symlink_to(src)
        out[name] = target
    return out


__all__ = ["GENERATOR", "OFFICIAL_NAMES", "OfficialFiles", "build_official_dir", "corrupt", "link_copy",
           "official_kwargs", "small_generator_config", "write_bfm_front", "write_generator_pickle",
           "write_sadtalker"]
