"""Official kwargs + tensor shapes -> GeneratorConfig (stylenerf.legacy.config; spec-stylenerf.md 1.2-1.5)."""
from __future__ import annotations

import copy
import logging
import re

import pytest
import torch
from official_pickle import official_init_kwargs, official_shapes, variant_names, write_official_pickle

from stylenerf import generator
from stylenerf.legacy import load_official_generator_state, read_official_pickle
from stylenerf.legacy.config import (LegacyFormatError, config_from_official, describe_mismatch, expected_state_shapes,
                                     official_fp16_blocks)

VARIANTS = variant_names()


def _state(variant: str) -> dict[str, torch.Tensor]:
    """Tensors of the right shapes (values irrelevant except alpha = 1, the trained value)."""
    state = {name: torch.empty(shape) for name, shape in official_shapes(variant).items()}
    state["synthesis.alpha"] = torch.ones([])
    return state


def _parse(variant: str) -> tuple[int, str, int, int]:
    m = re.fullmatch(r"ffhq(\d+)-(\w+)-F(\d+)(-cb2)?", variant)
    return int(m[1]), m[2], int(m[3]), 65536 if m[4] else 32768


def test_all_ten_variants_are_in_the_table():
    assert len(VARIANTS) == 10


@pytest.mark.parametrize("variant", VARIANTS)
def test_config_reproduces_the_official_table(variant):
    res, mode, feat, base = _parse(variant)
    cfg = config_from_official(official_init_kwargs(variant), _state(variant))
    assert {k: list(v) for k, v in expected_state_shapes(cfg).items()} == official_shapes(variant)
    assert cfg.img_resolution == res and cfg.nerf.rgb_out_dim == feat and cfg.nerf.feat_bg == feat
    assert cfg.upsampler.mode == mode and cfg.upsampler.channel_base == base and cfg.upsampler.kernel_size == 1
    assert cfg.block_resolutions == [r for r in (64, 128, 256, 512, 1024) if r <= res]
    assert cfg.num_ws == {256: 17, 512: 19, 1024: 21}[res]
    table = official_shapes(variant)
    for r in cfg.block_resolutions:  # C(r) = min(channel_base / r, 1024)
        assert cfg.upsampler.channels(r) == table[f"synthesis.b{r}.conv1.weight"][0] == min(base // r, 1024)
    assert cfg.nerf.fg_hidden == 128 and cfg.nerf.fg_blocks == 8 and cfg.nerf.num_ws == 10
    assert cfg.nerf.bg_hidden == 64 and cfg.nerf.bg_blocks == 4 and cfg.nerf.z_dim_bg == 32
    assert cfg.upsampler.magnitude_ema_beta > 0 and cfg.upsampler.conv_clamp == 256
    assert cfg.renderer.n_ray_samples == 14 and cfg.camera.fov == 12


def test_shapes_win_over_contradicting_kwargs(caplog):
    kwargs = official_init_kwargs("ffhq512-nn_cat-F256")  # the yaml; tensors say pixelshuffle F=64 (issue #29)
    with caplog.at_level(logging.WARNING, logger="stylenerf.legacy.config"):
        cfg = config_from_official(kwargs, _state("ffhq512-pixelshuffle-F64"))
    assert cfg.upsampler.mode == "pixelshuffle" and cfg.nerf.rgb_out_dim == 64
    assert "upsample_mode='nn_cat'" in caplog.text and "rgb_out_dim=256" in caplog.text


def test_channel_base_multiplier_and_width_fit(caplog):
    kwargs = official_init_kwargs("ffhq1024-pixelshuffle-F256")  # says 1 (x32768), tensors are 2x wider
    with caplog.at_level(logging.WARNING, logger="stylenerf.legacy.config"):
        cfg = config_from_official(kwargs, _state("ffhq1024-pixelshuffle-F256-cb2"))
    assert cfg.upsampler.channel_base == 65536 and cfg.upsampler.channel_max == 1024
    assert "channel_base=32768" in caplog.text
    del kwargs["synthesis_kwargs"]["upsampler_kwargs"]["channel_base"]  # only the yaml multiplier left
    kwargs["synthesis_kwargs"]["channel_base"] = 2
    assert config_from_official(kwargs, _state("ffhq1024-pixelshuffle-F256-cb2")).upsampler.channel_base == 65536


def test_absent_keys_use_code_defaults_then_shapes(caplog):
    variant = "ffhq256-pixelshuffle-F64"
    minimal = {"z_dim": 512, "w_dim": 512, "img_resolution": 256, "img_channels": 3,
               "synthesis_kwargs": {"upsample_mode": "pixelshuffle", "rgb_out_dim": 64, "z_dim_bg": 32,
                                    "magnitude_ema_beta": 0.999}}
    with caplog.at_level(logging.WARNING, logger="stylenerf.legacy.config"):
        cfg = config_from_official(minimal, _state(variant))
    assert cfg.upsampler.kernel_size == 1 and "kernel_size=3" in caplog.text  # code default 3, tensors 1x1
    assert cfg.nerf.bg_hidden == 64 and cfg.nerf.bg_blocks == 4
    assert cfg.camera.fov == pytest.approx(49.13) and cfg.camera.ray_align_corner is True  # CameraRay defaults
    assert cfg.upsampler.conv_clamp is None  # code default when absent
    assert {k: list(v) for k, v in expected_state_shapes(cfg).items()} == official_shapes(variant)


def test_magnitude_ema_follows_the_w_avg_buffers(caplog):
    kwargs = official_init_kwargs("ffhq256-pixelshuffle-F64")
    kwargs["synthesis_kwargs"]["magnitude_ema_beta"] = -1
    with caplog.at_level(logging.WARNING, logger="stylenerf.legacy.config"):
        assert config_from_official(kwargs, _state("ffhq256-pixelshuffle-F64")).upsampler.magnitude_ema_beta > 0
    assert "w_avg buffers are present" in caplog.text
    state = {k: v for k, v in _state("ffhq256-pixelshuffle-F64").items() if not k.endswith("conv0.w_avg")}
    with pytest.raises(LegacyFormatError, match=r"3 unexpected \(synthesis\.b\d+\.conv1\.w_avg"):
        config_from_official(official_init_kwargs("ffhq256-pixelshuffle-F64"), state)  # half the buffers gone


def test_noblur_suffix_is_kept():
    kwargs = official_init_kwargs("ffhq256-nn_cat-F256")
    kwargs["synthesis_kwargs"]["upsample_mode"] = "nn_cat_noblur"
    cfg = config_from_official(kwargs, _state("ffhq256-nn_cat-F256"))
    assert cfg.upsampler.mode == "nn_cat" and cfg.upsampler.blur is False


def _set(kwargs: dict, path: str, value) -> dict:
    node = kwargs
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    return kwargs


@pytest.mark.parametrize("path,value,option", [
    ("c_dim", 10, "c_dim"),
    ("synthesis_kwargs.use_noise", True, "use_noise"),
    ("synthesis_kwargs.foreground_kwargs.use_viewdirs", True, "foreground_kwargs.use_viewdirs"),
    ("synthesis_kwargs.background_kwargs.positional_encoding", "hash", "background_kwargs.positional_encoding"),
    ("synthesis_kwargs.foreground_kwargs.normalized_feat", True, "background_kwargs.normalized_feat"),
    ("synthesis_kwargs.camera_kwargs.angular_camera", False, "camera_kwargs.angular_camera"),
    ("synthesis_kwargs.camera_kwargs.depth_transform", "log", "camera_kwargs.depth_transform"),
    ("synthesis_kwargs.renderer_kwargs.sigma_type", "abs", "renderer_kwargs.sigma_type"),
    ("synthesis_kwargs.upsampler_kwargs.no_2d_renderer", True, "upsampler_kwargs.no_2d_renderer"),
    ("synthesis_kwargs.architecture", "resnet", "architecture"),
    ("synthesis_kwargs.module_name", "training.networks.SynthesisNetwork", "synthesis_kwargs.module_name"),
])
def test_unsupported_options_are_refused_by_name(path, value, option):
    kwargs = _set(official_init_kwargs("ffhq256-pixelshuffle-F64"), path, value)
    with pytest.raises(LegacyFormatError, match=rf"unsupported StyleNeRF option {re.escape(option)}="):
        config_from_official(kwargs, _state("ffhq256-pixelshuffle-F64"))


def test_nerf_input_and_other_upsample_modes_are_refused():
    kwargs, state = official_init_kwargs("ffhq256-pixelshuffle-F64"), _state("ffhq256-pixelshuffle-F64")
    with pytest.raises(LegacyFormatError, match=r"NeRFInput"):
        config_from_official(kwargs, state, synthesis_attrs={"I": {"class_name": "NeRFInput"}})
    no_adapter = {k: v for k, v in state.items() if ".adapter." not in k}
    bilinear = _set(copy.deepcopy(kwargs), "synthesis_kwargs.upsample_mode", "bilinear")
    with pytest.raises(LegacyFormatError, match=r"upsample_mode='bilinear'"):
        config_from_official(bilinear, no_adapter)
    noisy = {**state, "synthesis.b64.conv0.noise_const": torch.zeros(64, 64)}
    with pytest.raises(LegacyFormatError, match="use_noise"):
        config_from_official(kwargs, noisy)


def test_tensor_table_mismatches_are_listed():
    kwargs, state = official_init_kwargs("ffhq256-pixelshuffle-F64"), _state("ffhq256-pixelshuffle-F64")
    extra = {**state, "synthesis.extra.weight": torch.zeros(2)}
    with pytest.raises(LegacyFormatError, match=r"1 unexpected \(synthesis\.extra\.weight\)"):
        config_from_official(kwargs, extra)
    with pytest.raises(LegacyFormatError, match="fg_nerf.fc_in.weight"):
        config_from_official(kwargs, {k: v for k, v in state.items() if "fg_nerf.fc_in.weight" not in k})
    bad = {**state, "synthesis.b128.torgb.weight": torch.zeros(3, 7, 1, 1)}
    with pytest.raises(LegacyFormatError, match=r"wrong shape .*b128\.torgb\.weight \[3, 7, 1, 1\] vs \[3, 256, 1, 1"):
        config_from_official(kwargs, bad)


def test_describe_mismatch_is_one_line():
    text = describe_mismatch({"a": (1,), "b": (2,), "c": (3,)}, {"a": (1,), "b": (5,), "d": ()})
    assert text == "1 missing (c); 1 unexpected (d); 1 wrong shape [file vs model] (b [5] vs [2])"
    assert describe_mismatch({"a": (1,)}, {"a": (1,)}) is None


def test_alpha_other_than_one_warns(caplog):
    state = _state("ffhq256-pixelshuffle-F64")
    state["synthesis.alpha"] = torch.tensor(0.25)
    with caplog.at_level(logging.WARNING, logger="stylenerf.legacy.config"):
        config_from_official(official_init_kwargs("ffhq256-pixelshuffle-F64"), state)
    assert "synthesis.alpha = 0.25" in caplog.text


# ---- against the generator implementation ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_generator_state_dict_equals_official_table(variant):
    cfg = config_from_official(official_init_kwargs(variant), _state(variant))
    shapes = {k: list(v.shape) for k, v in generator.Generator(cfg).state_dict().items()}
    assert shapes == official_shapes(variant)


def test_synthetic_pickle_loads_strictly_into_generator(tmp_path):
    path = tmp_path / "ffhq_256.pkl"
    values = write_official_pickle(path, "ffhq256-pixelshuffle-F256", seed=5)
    cfg, state = load_official_generator_state(path)
    model = generator.Generator(cfg)
    model.load_state_dict(state, strict=True)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, values[name], rtol=0, atol=0)


# ---- upsampler fp16 (spec 2.6: official Upsampler.build_network, use_fp16 = res >= 2 * first block res) -----------
FP16_BLOCKS = {256: 2, 512: 3, 1024: 4}  # b128 ... bR; b64 (the first block) stays float32


@pytest.mark.parametrize("variant", VARIANTS)
def test_fp16_blocks_are_all_but_the_first(variant):
    res = _parse(variant)[0]
    cfg = config_from_official(official_init_kwargs(variant), _state(variant))
    assert cfg.upsampler.num_fp16_blocks == FP16_BLOCKS[res] == len(cfg.block_resolutions) - 1
    synthesis = generator.Generator(cfg).synthesis
    assert {r: getattr(synthesis, f"b{r}").use_fp16 for r in cfg.block_resolutions} == {
        r: r >= 128 for r in cfg.block_resolutions}


@pytest.mark.parametrize("where,value", [
    ("synthesis", 4), ("synthesis", 0), ("synthesis", 2), ("synthesis", "${num_fp16_res}"), ("absent", None),
    ("top", 4), ("top", 0),
])
def test_fp16_blocks_ignore_num_fp16_res(where, value):
    """NeRFSynthesisNetwork never reads num_fp16_res (it ends in SynthesisLayer's **unused_kwargs)."""
    for variant in ("ffhq256-pixelshuffle-F64", "ffhq512-nn_cat-F256", "ffhq1024-pixelshuffle-F256-cb2"):
        kwargs = official_init_kwargs(variant, num_fp16_res=value if where == "synthesis" else None)
        if where == "top":
            kwargs["num_fp16_res"] = value
        cfg = config_from_official(kwargs, _state(variant))
        assert cfg.upsampler.num_fp16_blocks == FP16_BLOCKS[cfg.img_resolution]


@pytest.mark.parametrize("res", sorted(FP16_BLOCKS))
@pytest.mark.parametrize("omegaconf", [True, False], ids=["interpolated", "plain"])
@pytest.mark.parametrize("num_fp16_res", [4, 0, None], ids=["fp16res4", "fp16res0", "absent"])
def test_fp16_blocks_from_synthetic_pickles(tmp_path, res, omegaconf, num_fp16_res):
    variant = {256: "ffhq256-pixelshuffle-F64", 512: "ffhq512-pixelshuffle-F64",
               1024: "ffhq1024-pixelshuffle-F256-cb2"}[res]
    path = tmp_path / f"ffhq_{res}.pkl"
    write_official_pickle(path, variant, seed=1, omegaconf=omegaconf, num_fp16_res=num_fp16_res)
    ckpt = read_official_pickle(path)
    stored = ckpt.g_init_kwargs["synthesis_kwargs"].get("num_fp16_res")
    assert stored == num_fp16_res  # "${num_fp16_res}" resolved through the root config when interpolated
    cfg, _ = load_official_generator_state(path)
    assert cfg.upsampler.num_fp16_blocks == FP16_BLOCKS[res]


def test_official_fp16_blocks_rule():
    assert official_fp16_blocks([64, 128, 256, 512, 1024]) == 4
    assert official_fp16_blocks([64, 128]) == 1 and official_fp16_blocks([64]) == 0
    assert official_fp16_blocks([]) == 0  # no_2d_renderer: no upsampler at all


def test_fp16_blocks_stay_float32_on_cpu():
    """On CPU num_fp16_blocks changes nothing: every block computes in float32, bit-identical to 0 blocks."""
    from stylenerf.config import tiny_config

    cfg32 = tiny_config(128)  # blocks b32, b64, b128
    cfg16 = tiny_config(128)
    cfg16.upsampler.num_fp16_blocks = official_fp16_blocks(cfg16.block_resolutions)
    assert cfg16.upsampler.num_fp16_blocks == 2
    torch.manual_seed(0)
    g32 = generator.Generator(cfg32).eval()
    g16 = generator.Generator(cfg16).eval()
    g16.load_state_dict(g32.state_dict(), strict=True)
    assert [getattr(g16.synthesis, f"b{r}").use_fp16 for r in cfg16.block_resolutions] == [False, True, True]
    dtypes: list[torch.dtype] = []
    for r in cfg16.block_resolutions:
        getattr(g16.synthesis, f"b{r}").register_forward_hook(
            lambda mod, args, out: dtypes.extend(t.dtype for t in out if t is not None))
    z = torch.randn(2, cfg32.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out32 = g32(z, rng=torch.Generator().manual_seed(2)).img
        out16 = g16(z, rng=torch.Generator().manual_seed(2)).img
    assert dtypes and all(d == torch.float32 for d in dtypes)
    assert out16.dtype == torch.float32 and out16.shape == (2, 3, 128, 128)
    torch.testing.assert_close(out16, out32, rtol=0, atol=0)
