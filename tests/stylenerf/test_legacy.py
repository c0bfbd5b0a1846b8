"""Code-free reading of official StyleNeRF pickles (stylenerf.legacy; spec-stylenerf.md section 6)."""
from __future__ import annotations

import io
import logging
import pickle
import pickletools
import struct
import sys
from pathlib import Path

import pytest
import torch
from official_pickle import official_init_kwargs, official_shapes, write_official_pickle

from stylenerf.legacy import (LegacyFormatError, StubObject, UnsafePickleError, flatten_module,
                              load_official_generator_state, read_official_pickle, restricted_loads)
from stylenerf.legacy.omegaconf_kwargs import to_plain

VARIANT = "ffhq256-pixelshuffle-F64"


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], Path]:
    path = tmp_path_factory.mktemp("official") / "ffhq_256.pkl"
    marker = path.with_name("module_src_was_executed")
    values = write_official_pickle(path, VARIANT, seed=3, include_d=True, marker=marker)
    return path, values, marker


def _globals_in(path: Path) -> set[str]:
    return {arg for op, arg, _ in pickletools.genops(path.read_bytes()) if op.name == "GLOBAL"}


# ---- contents ----------------------------------------------------------------------------------------------------
def test_g_ema_names_shapes_and_values_match_what_was_written(official):
    path, values, _ = official
    ckpt = read_official_pickle(path)
    table = official_shapes(VARIANT)
    assert set(ckpt.g_ema) == set(table)  # includes mapping.w_avg / synthesis.alpha, skips None + non-persistent
    for name, shape in table.items():
        assert list(ckpt.g_ema[name].shape) == shape, name
        assert ckpt.g_ema[name].dtype == torch.float32
        torch.testing.assert_close(ckpt.g_ema[name], values[name], rtol=0, atol=0)
    assert not any(t.requires_grad for t in ckpt.g_ema.values())


def test_g_ema_is_read_not_g(official):
    path, values, _ = official
    ckpt = read_official_pickle(path)
    # G was written with seed + 1: equality with G_ema's values proves the right network was flattened.
    torch.testing.assert_close(ckpt.g_ema["mapping.fc0.weight"], values["mapping.fc0.weight"], rtol=0, atol=0)


def test_the_file_really_uses_the_official_globals(official):
    found = _globals_in(official[0])
    for name in ("torch_utils.persistence _reconstruct_persistent_obj", "torch.storage _load_from_bytes",
                 "torch._utils _rebuild_tensor_v2", "torch._utils _rebuild_parameter",
                 "omegaconf.dictconfig DictConfig",
                 "omegaconf.nodes AnyNode", "numpy.core.multiarray scalar", "torch.nn.modules.container ModuleList",
                 "typing Any", "dnnlib.util EasyDict", "collections defaultdict", "builtins set"):
        assert name in found


def test_omegaconf_kwargs_are_resolved_to_plain_python(official):
    kwargs = read_official_pickle(official[0]).g_init_kwargs
    assert kwargs == official_init_kwargs(VARIANT)
    assert kwargs["mapping_kwargs"]["num_layers"] == 8 and type(kwargs["mapping_kwargs"]["num_layers"]) is int
    assert kwargs["synthesis_kwargs"]["num_fp16_res"] == 4
    assert kwargs["synthesis_kwargs"]["upsampler_kwargs"]["channel_max"] == 1024  # relative ${..channel_max}
    assert kwargs["synthesis_kwargs"]["module_name"] == "training.stylenerf.NeRFSynthesisNetwork"  # embedded ref
    assert isinstance(kwargs["synthesis_kwargs"]["camera_kwargs"]["range_u"], list)  # ListConfig -> list


def test_easydict_kwargs_without_omegaconf(tmp_path):
    path = tmp_path / "plain.pkl"
    write_official_pickle(path, "ffhq256-nn_cat-F256", seed=1, omegaconf=False)
    assert not any(g.startswith("omegaconf") for g in _globals_in(path))
    ckpt = read_official_pickle(path)
    assert ckpt.g_init_kwargs == official_init_kwargs("ffhq256-nn_cat-F256")
    assert ckpt.d is None
    assert set(ckpt.g_ema) == set(official_shapes("ffhq256-nn_cat-F256"))


def test_helper_attributes_discriminator_and_dataset(official):
    ckpt = read_official_pickle(official[0])
    attrs = ckpt.synthesis_attrs
    assert attrs["C"]["class_name"] == "CameraRay" and attrs["C"]["fov"] == 12 and attrs["C"]["ray_align_corner"]
    assert len(attrs["C"]["camera_matrix"][0]) == 4
    assert attrs["V"]["n_ray_samples"] == 14 and attrs["V"]["C"] == "<CameraRay>"
    assert attrs["U"]["block_resolutions"] == [64, 128, 256]
    assert attrs["I"] is None
    assert attrs["synthesis"]["num_ws"] == 17
    assert ckpt.d is not None and list(ckpt.d["b4.out.weight"].shape) == [1, 512]
    assert ckpt.training_set_kwargs["resolution"] == 256


def test_embedded_source_is_kept_as_text_and_never_executed(official):
    path, _, marker = official
    ckpt = read_official_pickle(path)
    assert {"Generator", "NeRFSynthesisNetwork", "NeRFBlock", "SynthesisLayer", "CameraRay"} <= set(ckpt.module_sources)
    assert "must never be executed" in ckpt.module_sources["NeRFBlock"]
    assert not marker.exists()
    assert not [m for m in sys.modules if m.startswith("_imported_module_")]
    assert "torch_utils.persistence" not in sys.modules and "omegaconf" not in sys.modules


def test_load_official_generator_state(official):
    cfg, state = load_official_generator_state(official[0])
    assert cfg.img_resolution == 256 and cfg.nerf.rgb_out_dim == 64 and cfg.num_ws == 17
    assert cfg.camera.ray_align_corner is True and cfg.camera.fov == 12.0
    assert set(state) == set(official_shapes(VARIANT))


# ---- refusals -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("module,name,args", [
    ("os", "system", lambda m: (f"touch {m}",)),
    ("builtins", "eval", lambda m: (f"open({str(m)!r}, 'w').write('pwned')",)),
    ("subprocess", "Popen", lambda m: (["touch", str(m)],)),
])
def test_malicious_globals_are_refused_before_running(tmp_path, module, name, args):
    path, marker = tmp_path / "evil.pkl", tmp_path / "payload_ran"
    write_official_pickle(path, VARIANT, seed=0, evil_global=(module, name, args(marker)))
    assert f"{module} {name}" in _globals_in(path)  # the payload really is in the stream
    with pytest.raises(UnsafePickleError, match=rf"refusing to load {module}\.{name} from .*evil\.pkl"):
        read_official_pickle(path)
    assert not marker.exists()


def _raw(*parts: bytes) -> bytes:
    return pickle.PROTO + b"\x03" + b"".join(parts) + pickle.STOP


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


@pytest.mark.parametrize("payload,message", [
    # torch.float32 is an allowed *value*, never a callable.
    (_raw(_global("torch", "float32"), pickle.EMPTY_TUPLE, pickle.REDUCE), "refusing to call a dtype"),
    (_raw(_global("builtins", "getattr"), pickle.EMPTY_TUPLE, pickle.REDUCE), "builtins.getattr"),
    (_raw(_global("torch", "load"), pickle.EMPTY_TUPLE, pickle.REDUCE), "torch.load"),
    # BUILD may only fill inert records, not call __setstate__ on real objects.
    (_raw(_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE, pickle.REDUCE, pickle.EMPTY_DICT,
          pickle.BINUNICODE + b"\x01\x00\x00\x00x", pickle.NONE, pickle.SETITEM, pickle.BUILD), "refusing to set"),
    (_raw(pickle.NONE, pickle.BINPERSID), "refusing persistent id"),
    (_raw(_global("numpy", "dtype"), pickle.BINUNICODE + b"\x02\x00\x00\x00O8", pickle.TUPLE1, pickle.REDUCE),
     "refusing call numpy.dtype"),
    (_raw(_global("torch_utils.persistence", "_reconstruct_persistent_obj"), pickle.EMPTY_DICT, pickle.TUPLE1,
          pickle.REDUCE), "unexpected metadata"),
    (_raw(_global("builtins", "list"), _global("collections", "OrderedDict"), pickle.TUPLE1, pickle.REDUCE),
     "refusing call builtins.list"),
    (_raw(_global("builtins", "bytes"), pickle.BININT + struct.pack("<i", 10**9), pickle.TUPLE1, pickle.REDUCE),
     "refusing call builtins.bytes"),
])
def test_disallowed_operations_are_refused(tmp_path, payload, message):
    path = tmp_path / "crafted.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafePickleError, match=message):
        read_official_pickle(path)


def test_allowed_containers_still_load(tmp_path):
    # Sanity check of the crafted-opcode helper: an allowed call in the same shape is accepted.
    path = tmp_path / "ok.pkl"
    path.write_bytes(_raw(_global("collections", "OrderedDict"), pickle.EMPTY_TUPLE, pickle.REDUCE))
    with pytest.raises(LegacyFormatError, match="no persistent 'G_ema'"):
        read_official_pickle(path)


def test_modules_pickled_by_torch_itself_flatten_like_state_dict():
    # Cross-check of the allow-list against the reduce protocol of the installed torch (nn containers by
    # class reference, _rebuild_parameter, int64 buffers such as num_batches_tracked).
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm2d(4))
    stub = restricted_loads(pickle.dumps(model, protocol=3))
    assert isinstance(stub, StubObject) and stub.qualname == "torch.nn.modules.container.Sequential"
    flat = flatten_module(stub)
    assert list(flat) == list(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(flat[name], tensor) and flat[name].dtype == tensor.dtype


def test_self_containing_module_graph_is_rejected():
    loop = StubObject("torch.nn.modules.container.ModuleList")
    loop.state = {"_parameters": {}, "_buffers": {}, "_modules": {"0": loop}}
    with pytest.raises(LegacyFormatError, match="contains itself"):
        flatten_module(loop)


# ---- damaged or foreign files ---------------------------------------------------------------------------------------
def test_truncated_pickle_gives_a_clear_error(official, tmp_path):
    data = official[0].read_bytes()
    for cut in (len(data) // 2, len(data) - 3, 40):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        with pytest.raises(LegacyFormatError, match="truncated or corrupt"):
            read_official_pickle(path)


def test_foreign_files_are_rejected(tmp_path):
    missing = tmp_path / "nope.pkl"
    with pytest.raises(FileNotFoundError, match="nope.pkl"):
        read_official_pickle(missing)
    text = tmp_path / "text.pkl"
    text.write_text("hello")
    with pytest.raises(LegacyFormatError, match="not a pickle"):
        read_official_pickle(text)
    zipped = tmp_path / "zip.pkl"
    torch.save({"w": torch.zeros(2)}, zipped)
    with pytest.raises(LegacyFormatError, match="zip"):
        read_official_pickle(zipped)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"model": [1, 2, 3]}, protocol=3))
    with pytest.raises(LegacyFormatError, match="G_ema"):
        read_official_pickle(other)


# ---- OmegaConf edge cases -------------------------------------------------------------------------------------------
def _node(value, parent=None):
    node = StubObject("omegaconf.nodes.AnyNode")
    node.state = {"_val": value, "_parent": parent, "_metadata": None}
    return node


def _dict_config(content: dict, parent=None):
    cfg = StubObject("omegaconf.dictconfig.DictConfig")
    cfg.state = {"_content": {}, "_parent": parent, "_metadata": None}
    for key, value in content.items():
        cfg.state["_content"][key] = _dict_config(value, cfg) if isinstance(value, dict) else _node(value, cfg)
    return cfg


def test_unresolvable_interpolations_are_kept_as_text(caplog):
    root = _dict_config({"a": "${b}", "b": "${a}", "when": "${now:%Y}", "gone": "${no.such.key}", "n": 3,
                         "sub": {"x": "${.y}", "y": "${..n}", "s": "n=${n}!"}})
    with caplog.at_level(logging.WARNING, logger="stylenerf.legacy.omegaconf_kwargs"):
        plain = to_plain(root)
    assert plain["when"] == "${now:%Y}" and plain["gone"] == "${no.such.key}"
    assert plain["a"] in ("${a}", "${b}")  # a reference cycle ends as text instead of hanging
    assert plain["sub"] == {"x": 3, "y": 3, "s": "n=3!"}
    assert "now:%Y" in caplog.text


def test_to_plain_numpy_and_records():
    import numpy as np

    assert to_plain({"g": np.float64(0.5), "t": (np.int64(2),)}) == {"g": 0.5, "t": (2,)}
    assert type(to_plain(np.float64(0.5))) is float
    assert to_plain(StubObject("torch.nn.modules.container.ModuleList")) == "<torch.nn.modules.container.ModuleList>"
    buf = io.BytesIO()
    assert to_plain(buf) is buf  # unknown objects pass through untouched
