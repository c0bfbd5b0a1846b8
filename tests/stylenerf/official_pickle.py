"""Test helper: write synthetic pickles in the official StyleNeRF snapshot format (spec-stylenerf.md 6.1-6.3).

No official code is needed or imported. The pure-Python pickler is extended with three stand-in types whose
opcodes are written by hand, so globals that do not exist here (``torch_utils.persistence.
_reconstruct_persistent_obj``, ``omegaconf.*``, ``dnnlib.util.EasyDict``) can be named:

* ``FakeGlobal(module, name)``  -> ``GLOBAL module name``;
* ``FakeCall(func, args)``      -> ``func`` ``args`` ``REDUCE`` (persistent objects, tensors, storages);
* ``FakeObject(cls, state)``    -> ``cls () NEWOBJ state BUILD`` (torch.nn containers, OmegaConf objects);
* ``FakeDict(cls, items)``      -> ``cls () NEWOBJ`` + ``SETITEMS`` (EasyDict).

Layout written (protocol 3, as Python 3.7 would): a dict with ``training_set_kwargs`` (EasyDict), ``G``,
``D`` (optional), ``G_ema`` and ``augment_pipe`` (None). Networks are persistent records whose ``module_src``
raises and writes a marker file if anyone executes it. Tensors are ``_rebuild_parameter`` /
``_rebuild_tensor_v2`` over storages serialised with ``torch.storage._load_from_bytes`` of a legacy
``torch.save``. Plain float attributes are numpy float64 scalars pickled with the numpy-1.x name
``numpy.core.multiarray.scalar``. Constructor kwargs are OmegaConf-like objects linked to a root config with
unresolved interpolations (``${spec.map}``, ``${num_fp16_res}``, a relative ``${..channel_max}``, a
string-embedded one) and a resolver call elsewhere in the root that must never be needed. The mapping
network also carries a ``None`` parameter and a non-persistent buffer, which a loader must skip.
"""
from __future__ import annotations

import copy
import io
import json
import math
import pickle
import re
import warnings
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

KEYS_JSON = Path(__file__).resolve().parents[1] / "data" / "official_keys_stylenerf.json"
BUFFER_LEAVES = ("resample_filter", "w_avg", "alpha", "noise_const")
VARIANT = re.compile(r"ffhq(?P<res>\d+)-(?P<mode>pixelshuffle|nn_cat)-F(?P<feat>\d+)(?P<cb2>-cb2)?")


@dataclass(eq=False)
class FakeGlobal:
    """A global named by module and attribute; it need not exist in this interpreter."""

    module: str
    name: str

    def __call__(self, *args: Any) -> Any:  # save_reduce insists on a callable; never called
        raise RuntimeError(f"{self.module}.{self.name} is a pickling stand-in")


@dataclass(eq=False)
class FakeCall:
    func: FakeGlobal
    args: tuple


@dataclass(eq=False)
class FakeObject:
    cls: FakeGlobal
    state: Any = None


@dataclass(eq=False)
class FakeDict:
    cls: FakeGlobal
    items: dict


class OfficialPickler(pickle._Pickler):  # noqa: SLF001 - the pure-Python pickler's dispatch table is extensible
    """Pickler that writes the stand-in types above as raw opcodes."""

    dispatch = dict(pickle._Pickler.dispatch)  # noqa: SLF001
    _numpy_scalar = FakeGlobal("numpy.core.multiarray", "scalar")

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, np.generic):  # numpy 1.x spelling, as in the released files
            return self._numpy_scalar, (obj.dtype, obj.tobytes())
        return NotImplemented

    def save_fake_global(self, obj: FakeGlobal) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    def save_fake_call(self, obj: FakeCall) -> None:
        self.save(obj.func)
        self.save(obj.args)
        self.write(pickle.REDUCE)
        self.memoize(obj)

    def save_fake_object(self, obj: FakeObject) -> None:
        self.save(obj.cls)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)  # before the state, so _parent cycles become memo references
        self.save(obj.state)
        self.write(pickle.BUILD)

    def save_fake_dict(self, obj: FakeDict) -> None:
        self.save(obj.cls)
        self.save(())
        self.write(pickle.NEWOBJ)
        self.memoize(obj)
        self._batch_setitems(iter(obj.items.items()))

    dispatch[FakeGlobal] = save_fake_global
    dispatch[FakeCall] = save_fake_call
    dispatch[FakeObject] = save_fake_object
    dispatch[FakeDict] = save_fake_dict


PERSISTENT = FakeGlobal("torch_utils.persistence", "_reconstruct_persistent_obj")
LOAD_FROM_BYTES = FakeGlobal("torch.storage", "_load_from_bytes")
REBUILD_TENSOR = FakeGlobal("torch._utils", "_rebuild_tensor_v2")
REBUILD_PARAMETER = FakeGlobal("torch._utils", "_rebuild_parameter")
EASYDICT = FakeGlobal("dnnlib.util", "EasyDict")
TYPING_ANY = FakeGlobal("typing", "Any")


def official_shapes(variant: str) -> dict[str, list[int]]:
    """Name -> shape table of one variant of tests/data/official_keys_stylenerf.json."""
    return json.loads(KEYS_JSON.read_text())[variant]


def variant_names() -> list[str]:
    return sorted(json.loads(KEYS_JSON.read_text()))


# ---- tensors ---------------------------------------------------------------------------------------------------------
def _tensor(t: torch.Tensor) -> FakeCall:
    t = t.detach().contiguous()
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()  # a view: store only its own elements, as a fresh tensor would be
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation: the legacy format is the point here
        torch.save(t.storage(), buf, _use_new_zipfile_serialization=False)
    storage = FakeCall(LOAD_FROM_BYTES, (buf.getvalue(),))
    return FakeCall(REBUILD_TENSOR, (storage, 0, tuple(t.shape), tuple(t.stride()), False, OrderedDict()))


def _parameter(t: torch.Tensor) -> FakeCall:
    return FakeCall(REBUILD_PARAMETER, (_tensor(t), True, OrderedDict()))


def random_values(shapes: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Small deterministic values; ``alpha`` is 1 (trained), ``w_avg`` scalars positive."""
    gen = torch.Generator().manual_seed(seed)
    values: dict[str, torch.Tensor] = {}
    for name, shape in shapes.items():
        t = torch.randn(shape, generator=gen) * 0.1
        if name == "synthesis.alpha":
            t = torch.ones([])
        elif name.endswith("w_avg") and not shape:
            t = 1.0 + t.abs()
        values[name] = t
    return values


# ---- module records --------------------------------------------------------------------------------------------------
_STYLENERF_CLASSES = {"synthesis": "NeRFSynthesisNetwork", "fg_nerf": "NeRFBlock", "bg_nerf": "NeRFBlock"}


def _class_of(path: str, root_class: str) -> tuple[str, str]:
    """(source group, class name) of the module at a dotted path: 'networks', 'stylenerf' or 'torch'."""
    leaf = path.rsplit(".", 1)[-1]
    if not path:
        return ("networks" if root_class == "Generator" else "stylenerf"), root_class
    if leaf in _STYLENERF_CLASSES:
        return "stylenerf", _STYLENERF_CLASSES[leaf]
    if leaf == "blocks":
        return "torch", "ModuleList"
    if leaf == "adapter":
        return "torch", "Sequential"
    if leaf.isdigit() and ".blocks." in f".{path}":
        return "stylenerf", "Style2Layer"
    if leaf == "fc_in" and "_nerf" in path:
        return "stylenerf", "Style2Layer"
    by_leaf = {"mapping": "MappingNetwork", "affine": "FullyConnectedLayer", "sigma_out": "ToRGBLayer",
               "feat_out": "ToRGBLayer", "torgb": "ToRGBLayer", "conv0": "SynthesisLayer", "conv1": "SynthesisLayer"}
    if leaf in by_leaf:
        return "networks", by_leaf[leaf]
    if re.fullmatch(r"fc\d+", leaf):
        return "networks", "FullyConnectedLayer"
    if re.fullmatch(r"b\d+", leaf):
        return "networks", "SynthesisBlock" if root_class == "Generator" else "DiscriminatorBlock"
    return "networks", "Conv2dLayer"


def _tree(names: list[str]) -> dict:
    root: dict = {"params": [], "buffers": [], "children": {}}
    for name in names:
        node = root
        *parents, leaf = name.split(".")
        for part in parents:
            node = node["children"].setdefault(part, {"params": [], "buffers": [], "children": {}})
        node["buffers" if leaf in BUFFER_LEAVES else "params"].append((leaf, name))
    return root


def _module(path: str, node: dict, values: dict[str, torch.Tensor], sources: dict[str, str], root_class: str,
            extra: dict[str, dict]) -> FakeCall | FakeObject:
    modules = OrderedDict((child, _module(f"{path}.{child}" if path else child, sub, values, sources, root_class,
                                          extra)) for child, sub in node["children"].items())
    state: dict[str, Any] = {
        "training": False,
        "_parameters": OrderedDict((leaf, _parameter(values[name])) for leaf, name in node["params"]),
        "_buffers": OrderedDict((leaf, _tensor(values[name])) for leaf, name in node["buffers"]),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": OrderedDict(), "_forward_hooks": OrderedDict(), "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(), "_load_state_dict_pre_hooks": OrderedDict(),
        "_modules": modules,
    }
    group, class_name = _class_of(path, root_class)
    if group == "torch":
        return FakeObject(FakeGlobal("torch.nn.modules.container", class_name), state)
    state.update({"_init_args": (), "_init_kwargs": {}, "weight_gain": np.float64(0.5), "activation": "lrelu"})
    state.update(extra.get(path, {}))
    meta = {"type": "class", "version": 6, "module_src": sources[group], "class_name": class_name, "state": state}
    return FakeCall(PERSISTENT, (meta,))


def _record(class_name: str, source: str, state: dict) -> FakeCall:
    return FakeCall(PERSISTENT, ({"type": "class", "version": 6, "module_src": source, "class_name": class_name,
                                  "state": state},))


def embedded_source(marker: Path, module: str) -> str:
    """A module source that fails loudly (and leaves ``marker``) if anyone executes it."""
    return (f"# {module}: stand-in for the module source embedded in official snapshots.\n"
            "import pathlib\n"
            f"pathlib.Path({str(marker)!r}).write_text('embedded module_src was executed')\n"
            "raise RuntimeError('embedded module source must never be executed')\n")


# ---- constructor kwargs ----------------------------------------------------------------------------------------------
def official_init_kwargs(variant: str, *, num_fp16_res: int | None = 4) -> dict[str, Any]:
    """The plain, resolved ``G_ema._init_kwargs`` a correct loader must return for a variant (spec 1.2, 6.2).

    ``num_fp16_res`` is the training option (``conf/config.yaml``: 4; ``--fp32`` runs store 0); None leaves the
    key out of ``synthesis_kwargs``.
    """
    m = VARIANT.fullmatch(variant)
    if m is None:
        raise ValueError(f"unknown variant {variant!r}")
    res, feat, cb = int(m["res"]), int(m["feat"]), 2 if m["cb2"] else 1
    kwargs = {
        "z_dim": 512, "w_dim": 512, "c_dim": 0, "img_resolution": res, "img_channels": 3,
        "mapping_kwargs": {"num_layers": 8},
        "synthesis_kwargs": {
            "module_name": "training.stylenerf.NeRFSynthesisNetwork", "num_fp16_res": 4,
            "channel_base": cb, "channel_max": 1024, "conv_clamp": 256, "kernel_size": 1, "architecture": "skip",
            "upsample_mode": m["mode"], "z_dim_bg": 32, "z_dim": 0, "resolution_vol": 32, "resolution_start": 32,
            "rgb_out_dim": feat, "use_noise": False, "magnitude_ema_beta": 0.999, "progressive": True,
            "camera_kwargs": {"range_v": [math.pi / 2 - 0.155, math.pi / 2 + 0.155], "range_u": [-0.3, 0.3],
                              "range_radius": [1.0, 1.0], "depth_range": [0.88, 1.12], "fov": 12,
                              "gaussian_camera": True, "angular_camera": True, "depth_transform": None,
                              "dists_normalized": False, "ray_align_corner": True, "bg_start": 0.5},
            "renderer_kwargs": {"n_bg_samples": 4, "n_ray_samples": 14, "abs_sigma": False, "hierarchical": True,
                                "no_background": False},
            "foreground_kwargs": {"positional_encoding": "normal", "downscale_p_by": 1, "use_style": "StyleGAN2",
                                  "predict_rgb": True, "use_viewdirs": False, "normalized_feat": False,
                                  "z_dim": 0, "w_dim": 512, "rgb_out_dim": feat, "activation": "lrelu"},
            "background_kwargs": {"positional_encoding": "normal", "hidden_size": 64, "n_blocks": 4,
                                  "downscale_p_by": 1, "skips": [], "inverse_sphere": True, "predict_rgb": True,
                                  "use_viewdirs": False, "normalized_feat": False, "z_dim": 32, "w_dim": 512,
                                  "rgb_out_dim": feat, "activation": "lrelu"},
            "upsampler_kwargs": {"channel_base": 32768 * cb, "channel_max": 1024, "no_2d_renderer": False,
                                 "no_residual_img": False, "block_reses": None, "shared_rgb_style": False,
                                 "upsample_type": "bilinear", "img_channels": 3, "in_res": 32, "out_res": res},
        },
    }
    if num_fp16_res is None:
        del kwargs["synthesis_kwargs"]["num_fp16_res"]
    else:
        kwargs["synthesis_kwargs"]["num_fp16_res"] = num_fp16_res
    return kwargs


_INTERPOLATIONS = {
    ("mapping_kwargs", "num_layers"): "${spec.map}",
    ("synthesis_kwargs", "num_fp16_res"): "${num_fp16_res}",
    ("synthesis_kwargs", "upsampler_kwargs", "channel_max"): "${..channel_max}",
    ("synthesis_kwargs", "module_name"): "training.${model.synthesis_module}.NeRFSynthesisNetwork",
}


def _omega(value: Any, parent: FakeObject | None, key: Any) -> FakeObject:
    """OmegaConf-like object graph: DictConfig/ListConfig with _content, AnyNode with _val, all with _parent."""
    if isinstance(value, (dict, list)):
        kind = "dictconfig.DictConfig" if isinstance(value, dict) else "listconfig.ListConfig"
        node = FakeObject(FakeGlobal(*f"omegaconf.{kind}".rsplit(".", 1)))
        meta = FakeObject(FakeGlobal("omegaconf.base", "ContainerMetadata"), {
            "ref_type": TYPING_ANY, "object_type": dict if isinstance(value, dict) else list, "optional": True,
            "key": key, "flags": {}, "flags_root": False, "resolver_cache": defaultdict(dict),
            "key_type": TYPING_ANY, "element_type": TYPING_ANY})
        items = value.items() if isinstance(value, dict) else enumerate(value)
        content = {k: _omega(v, node, k) for k, v in items}
        node.state = {"_metadata": meta, "_parent": parent,
                      "_content": content if isinstance(value, dict) else list(content.values())}
        return node
    meta = FakeObject(FakeGlobal("omegaconf.base", "Metadata"), {
        "ref_type": TYPING_ANY, "object_type": None, "optional": True, "key": key, "flags": {}, "flags_root": False})
    return FakeObject(FakeGlobal("omegaconf.nodes", "AnyNode"), {"_metadata": meta, "_parent": parent, "_val": value})


def _omega_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Top-level plain dict whose mapping/synthesis kwargs are DictConfigs inside a root training config.

    A key absent from ``kwargs`` (e.g. ``synthesis_kwargs.num_fp16_res``) stays absent, also from the root.
    """
    g_kwargs = {k: copy.deepcopy(kwargs[k]) for k in ("z_dim", "w_dim", "mapping_kwargs", "synthesis_kwargs")}
    for path, text in _INTERPOLATIONS.items():
        node = g_kwargs
        for part in path[:-1]:
            node = node[part]
        if path[-1] in node:
            node[path[-1]] = text
    options: dict[str, Any] = {"data": "/datasets/ffhq1024x1024.zip", "run_dir": "${now:%Y-%m-%d_%H-%M-%S}",
                               "spec": {"name": "paper512", "fmaps": 1, "map": 8, "mbstd": 8}}
    if "num_fp16_res" in kwargs["synthesis_kwargs"]:
        options["num_fp16_res"] = kwargs["synthesis_kwargs"]["num_fp16_res"]
    options["model"] = {"name": "stylenerf_ffhq", "synthesis_module": "stylenerf", "G_kwargs": g_kwargs}
    root = _omega(options, None, None)
    g_node = root.state["_content"]["model"].state["_content"]["G_kwargs"]
    top = {k: v for k, v in kwargs.items() if k not in ("mapping_kwargs", "synthesis_kwargs")}
    top.update({k: g_node.state["_content"][k] for k in ("mapping_kwargs", "synthesis_kwargs")})
    return top


def _easydict(value: Any) -> Any:
    if isinstance(value, dict):
        return FakeDict(EASYDICT, {k: _easydict(v) for k, v in value.items()})
    return value


# ---- the snapshot ----------------------------------------------------------------------------------------------------
def _helpers(kwargs: dict[str, Any], source: str) -> dict[str, Any]:
    sk = kwargs["synthesis_kwargs"]
    k_inv = torch.diag(torch.tensor([0.1051042, 0.1051042, 1.0, 1.0]))[None]
    camera = {**sk["camera_kwargs"], "camera_matrix": _tensor(k_inv)}
    cam = _record("CameraRay", source, camera)
    renderer = {k: v for k, v in sk["renderer_kwargs"].items() if k != "abs_sigma"}
    vol = _record("VolumeRenderer", source, {**renderer, "sigma_type": "relu", "C": cam, "I": None})
    reses = [2**i for i in range(6, int(math.log2(kwargs["img_resolution"])) + 1)]
    up = _record("Upsampler", source, {**sk["upsampler_kwargs"], "out_res_log2": int(math.log2(reses[-1])),
                                       "block_resolutions": reses, "num_ws": 2 * len(reses) + 1})
    return {"C": cam, "I": None, "V": vol, "U": up, "resolution_vol": 32, "rgb_out_dim": sk["rgb_out_dim"],
            "img_resolution": kwargs["img_resolution"], "num_ws": 10 + 2 * len(reses) + 1}


def build_generator(values: dict[str, torch.Tensor], kwargs: dict[str, Any], sources: dict[str, str], *,
                    omegaconf: bool, evil: FakeCall | None = None) -> FakeCall:
    """Persistent-record graph of a Generator holding ``values`` (official names)."""
    extra = {"synthesis": _helpers(kwargs, sources["stylenerf"]),
             "mapping": {"z_dim": 512, "c_dim": 0, "w_dim": 512, "num_ws": 0, "w_avg_beta": np.float64(0.995)}}
    if evil is not None:
        extra["synthesis"]["evil"] = evil
    record = _module("", _tree(list(values)), values, sources, "Generator", extra)
    state = record.args[0]["state"]
    state["_init_kwargs"] = _omega_kwargs(kwargs) if omegaconf else _easydict(kwargs)
    state.update({k: kwargs[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")})
    mapping_state = state["_modules"]["mapping"].args[0]["state"]
    mapping_state["_parameters"]["unused_bias"] = None
    mapping_state["_buffers"]["scratch"] = _tensor(torch.zeros(3))
    mapping_state["_non_persistent_buffers_set"] = {"scratch"}
    return record


def write_official_pickle(path: str | Path, variant: str, *, seed: int = 0, include_d: bool = False,
                         omegaconf: bool = True, evil_global: tuple[str, str, tuple] | None = None,
                         marker: Path | None = None, num_fp16_res: int | None = 4) -> dict[str, torch.Tensor]:
    """Write a synthetic official snapshot of ``variant`` (a key of official_keys_stylenerf.json).

    Args:
        path: output file.
        variant: e.g. ``'ffhq256-pixelshuffle-F64'``.
        seed: seed of the G_ema values (G uses seed + 1).
        include_d: add a small ``D`` record.
        omegaconf: store kwargs as OmegaConf-like objects with interpolations (else EasyDicts, resolved).
        evil_global: ``(module, name, args)`` of a call planted inside G_ema's synthesis state.
        marker: file the embedded module sources would create if executed (default ``<path>.executed``).
        num_fp16_res: stored ``synthesis_kwargs.num_fp16_res`` (with ``omegaconf`` as the interpolation
            ``${num_fp16_res}`` into the root config, which holds the value); None stores no such key.

    Returns:
        the G_ema tensors written (official names).
    """
    path = Path(path)
    marker = marker or path.with_name(path.name + ".executed")
    sources = {"networks": embedded_source(marker, "training/networks.py"),
               "stylenerf": embedded_source(marker, "training/stylenerf.py")}
    shapes = official_shapes(variant)
    kwargs = official_init_kwargs(variant, num_fp16_res=num_fp16_res)
    g_ema_values = random_values(shapes, seed)
    evil = FakeCall(FakeGlobal(evil_global[0], evil_global[1]), tuple(evil_global[2])) if evil_global else None
    snapshot: dict[str, Any] = {
        "training_set_kwargs": _easydict({"class_name": "training.dataset.ImageFolderDataset", "path": "ffhq.zip",
                                          "resolution": kwargs["img_resolution"], "use_labels": False,
                                          "max_size": 70000, "xflip": True}),
        "G": build_generator(random_values(shapes, seed + 1), kwargs, sources, omegaconf=omegaconf),
    }
    if include_d:
        d_values = random_values({"b4.out.weight": [1, 512], "b4.out.bias": [1], "b8.fromrgb.weight": [512, 3, 1, 1],
                                  "b8.resample_filter": [4, 4], "alpha": []}, seed + 2)
        snapshot["D"] = _module("", _tree(list(d_values)), d_values, sources, "Discriminator", {})
    snapshot["G_ema"] = build_generator(g_ema_values, kwargs, sources, omegaconf=omegaconf, evil=evil)
    snapshot["augment_pipe"] = None
    with open(path, "wb") as f:
        OfficialPickler(f, protocol=3).dump(snapshot)
    return g_ema_values
