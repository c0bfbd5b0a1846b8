"""Official StyleNeRF constructor kwargs + tensor shapes -> ``GeneratorConfig`` (spec-stylenerf.md 1.2-1.4, 6.2).

The released pickles were not trained with the current yaml verbatim (spec 1.3), so the config is driven by
the kwargs stored in the pickle, with the code defaults of spec 1.2 where a key is absent, and is then
cross-checked against the tensor shapes: F from ``fg_nerf.feat_out``, the upsample mode from the adapter
shape, ``magnitude_ema_beta > 0`` from the ``w_avg`` buffers, the upsampler widths, the kernel size, the NeRF
widths/depths and the mapping depth. Where kwargs and shapes disagree the shapes win (with a warning): the
tensors are what will be loaded. The upsampler's float16 blocks follow the official ``Upsampler`` rule
(``official_fp16_blocks``), not ``num_fp16_res``. Options this implementation does not have are refused with
``LegacyFormatError`` naming the option. Finally the complete expected name/shape table
(``expected_state_shapes``) must equal the checkpoint's.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from typing import Any

from stylenerf.config import (CameraConfig, GeneratorConfig, MappingConfig, NeRFConfig, RendererConfig,
                              UpsamplerConfig)

log = logging.getLogger(__name__)

_BASE_CHANNELS = 32768
"""Official ``channel_base`` multiplier unit: C(r) = min(32768 * channel_base / r, channel_max) (spec 1.2)."""
_CAMERA_CLASS_DEFAULTS = {"fov": 49.13, "ray_align_corner": True}
"""CameraRay class defaults that differ from the FFHQ yaml (spec 1.2); other absent keys use the yaml values."""
_CAMERA_KEYS = ("fov", "ray_align_corner", "depth_range", "range_u", "range_v", "range_radius", "gaussian_camera",
                "angular_camera", "bg_start", "depth_transform", "dists_normalized")
_RENDERER_KEYS = ("n_ray_samples", "n_bg_samples", "hierarchical", "sigma_type", "white_background", "no_background")


class LegacyFormatError(ValueError):
    """A checkpoint is corrupt, not a StyleNeRF snapshot, or uses an option nerffs does not implement."""


# ---- expected names and shapes ------------------------------------------------------------------------------------
def expected_state_shapes(cfg: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """The official ``G_ema`` parameter/buffer names and shapes for a config (spec 1.4).

    Args:
        cfg: generator configuration.

    Returns:
        dict name -> shape, e.g. ``'synthesis.fg_nerf.fc_in.weight': (128, 60, 1, 1)``.
    """
    w, n, u, rgb = cfg.w_dim, cfg.nerf, cfg.upsampler, cfg.img_channels
    shapes: dict[str, tuple[int, ...]] = {"synthesis.alpha": ()}

    def layer(prefix: str, weight: tuple[int, ...], *, affine: int | None = None, filt: bool = False,
              w_avg: bool = False) -> None:
        shapes[f"{prefix}.weight"], shapes[f"{prefix}.bias"] = weight, (weight[0],)
        if affine is not None:  # style affine FC(w_dim -> input channels)
            shapes[f"{prefix}.affine.weight"], shapes[f"{prefix}.affine.bias"] = (affine, w), (affine,)
        if filt:
            shapes[f"{prefix}.resample_filter"] = (4, 4)
        if w_avg:
            shapes[f"{prefix}.w_avg"] = ()

    fg, bg, pe = "synthesis.fg_nerf", "synthesis.bg_nerf", 2 * n.n_freq_posenc
    layer(f"{fg}.fc_in", (n.fg_hidden, 3 * pe, 1, 1), affine=3 * pe, filt=True)
    for i in range(n.fg_blocks - 1):
        layer(f"{fg}.blocks.{i}", (n.fg_hidden, n.fg_hidden, 1, 1), affine=n.fg_hidden, filt=True)
    layer(f"{fg}.sigma_out", (1, n.fg_hidden, 1, 1), affine=n.fg_hidden)
    layer(f"{fg}.feat_out", (n.rgb_out_dim, n.fg_hidden, 1, 1), affine=n.fg_hidden)
    layer(f"{fg}.to_rgb", (rgb, n.rgb_out_dim, 1, 1), filt=True)
    layer(f"{bg}.fc_in", (n.bg_hidden, 4 * pe + n.z_dim_bg), filt=True)
    for i in range(n.bg_blocks - 1):
        layer(f"{bg}.blocks.{i}", (n.bg_hidden, n.bg_hidden), filt=True)
    layer(f"{bg}.sigma_out", (1, n.bg_hidden))
    layer(f"{bg}.feat_out", (n.feat_bg, n.bg_hidden))
    layer(f"{bg}.to_rgb", (rgb, n.feat_bg, 1, 1), filt=True)

    k, ema, c_in = u.kernel_size, u.magnitude_ema_beta > 0, n.rgb_out_dim
    for res in cfg.block_resolutions:
        c_out, b = u.channels(res), f"synthesis.b{res}"
        shapes[f"{b}.resample_filter"] = (4, 4)
        layer(f"{b}.conv0", (c_out, c_in, k, k), affine=c_in, filt=True, w_avg=ema)
        if u.mode == "pixelshuffle":  # Conv(C -> C/4, lrelu) -> Conv(C/4 -> 4C): 4 sub-pixels per channel
            layer(f"{b}.conv0.adapter.0", (c_out // 4, c_out, 1, 1), filt=True)
            layer(f"{b}.conv0.adapter.1", (4 * c_out, c_out // 4, 1, 1), filt=True)
        else:  # nn_cat: Conv(2C -> C/4, lrelu) -> Conv(C/4 -> C) on [nearest, neighbour average]
            layer(f"{b}.conv0.adapter.0", (c_out // 4, 2 * c_out, 1, 1), filt=True)
            layer(f"{b}.conv0.adapter.1", (c_out, c_out // 4, 1, 1), filt=True)
        layer(f"{b}.conv1", (c_out, c_out, k, k), affine=c_out, filt=True, w_avg=ema)
        layer(f"{b}.torgb", (rgb, c_out, 1, 1), affine=c_out)
        c_in = c_out

    for i in range(cfg.mapping.num_layers):
        layer(f"mapping.fc{i}", (w, cfg.z_dim if i == 0 else w))
    shapes["mapping.w_avg"] = (w,)
    return shapes


def describe_mismatch(expected: Mapping[str, tuple[int, ...]], actual: Mapping[str, tuple[int, ...]],
                      limit: int = 3) -> str | None:
    """One-line summary of missing / unexpected / misshaped names, or None when the tables agree."""
    missing = [k for k in expected if k not in actual]
    unexpected = [k for k in actual if k not in expected]
    wrong = [f"{k} {list(actual[k])} vs {list(v)}" for k, v in expected.items()
             if k in actual and tuple(actual[k]) != tuple(v)]
    parts = [f"{len(items)} {label} ({', '.join(items[:limit])}{', ...' if len(items) > limit else ''})"
             for label, items in (("missing", missing), ("unexpected", unexpected),
                                  ("wrong shape [file vs model]", wrong)) if items]
    return "; ".join(parts) or None


# ---- facts read from the tensors -----------------------------------------------------------------------------------
def _shape(sd: Mapping[str, Any], name: str) -> tuple[int, ...]:
    if name not in sd:
        raise LegacyFormatError(f"checkpoint has no tensor {name!r}; not a StyleNeRF FFHQ generator")
    return tuple(sd[name].shape)


def _indices(sd: Mapping[str, Any], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := re.fullmatch(pattern, k))})


def _shape_facts(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Architecture numbers implied by the tensor shapes alone."""
    fcs = _indices(sd, r"mapping\.fc(\d+)\.weight")
    reses = _indices(sd, r"synthesis\.b(\d+)\.conv1\.weight")
    if not fcs or fcs != list(range(len(fcs))) or not reses:
        raise LegacyFormatError("checkpoint lacks mapping.fc*/synthesis.b*.conv1 tensors; not a StyleNeRF generator")
    fg_in, bg_in = _shape(sd, "synthesis.fg_nerf.fc_in.weight"), _shape(sd, "synthesis.bg_nerf.fc_in.weight")
    if fg_in[1] % 6:
        raise LegacyFormatError(f"synthesis.fg_nerf.fc_in takes {fg_in[1]} inputs, not 6*L: a foreground latent or "
                                "a non-'normal' positional encoding, which nerffs does not implement")
    first = reses[0]
    outs = {r: _shape(sd, f"synthesis.b{r}.conv1.weight")[0] for r in reses}
    adapter = sd.get(f"synthesis.b{first}.conv0.adapter.0.weight")
    mode = None
    if adapter is not None:
        ratio = adapter.shape[1] / outs[first]
        mode = {1.0: "pixelshuffle", 2.0: "nn_cat"}.get(ratio)
        if mode is None:
            raise LegacyFormatError(f"synthesis.b{first}.conv0.adapter.0.weight {list(adapter.shape)} fits neither "
                                    "the pixelshuffle nor the nn_cat upsampler")
    return {
        "num_layers": len(fcs), "z_dim": _shape(sd, "mapping.fc0.weight")[1],
        "w_dim": _shape(sd, f"mapping.fc{fcs[-1]}.weight")[0],
        "fg_hidden": fg_in[0], "fg_blocks": 1 + len(_indices(sd, r"synthesis\.fg_nerf\.blocks\.(\d+)\.weight")),
        "n_freq_posenc": fg_in[1] // 6, "bg_in": bg_in[1], "bg_hidden": bg_in[0],
        "bg_blocks": 1 + len(_indices(sd, r"synthesis\.bg_nerf\.blocks\.(\d+)\.weight")),
        "rgb_out_dim": _shape(sd, "synthesis.fg_nerf.feat_out.weight")[0],
        "rgb_out_dim_bg": _shape(sd, "synthesis.bg_nerf.feat_out.weight")[0],
        "img_channels": _shape(sd, "synthesis.fg_nerf.to_rgb.weight")[0],
        "resolutions": reses, "channels": outs, "kernel_size": _shape(sd, f"synthesis.b{first}.conv1.weight")[-1],
        "upsample_mode": mode, "magnitude_ema": f"synthesis.b{first}.conv0.w_avg" in sd,
    }


# ---- kwargs helpers --------------------------------------------------------------------------------------------------
def _section(kwargs: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = kwargs.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise LegacyFormatError(f"checkpoint kwargs {key} is a {type(value).__name__}, expected a mapping")
    return dict(value)


def _refuse(option: str, value: Any, supported: str) -> LegacyFormatError:
    return LegacyFormatError(f"checkpoint uses unsupported StyleNeRF option {option}={value!r}; nerffs implements "
                             f"only {supported}")


def _pick(name: str, stated: Any, measured: Any) -> Any:
    """The tensor-implied value, warning when the stored kwargs say otherwise."""
    if stated is not None and stated != measured:
        log.warning("checkpoint kwargs (or the code default) give %s=%r but the tensors imply %r; using the tensors",
                    name, stated, measured)
    return measured


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LegacyFormatError(f"checkpoint option {name}={value!r} is not a number (unresolved interpolation?)")
    return value


def _check_supported(kw: dict, sk: dict, fk: dict, bk: dict, uk: dict, attrs: Mapping[str, Any],
                     sd: Mapping[str, Any]) -> None:
    """Raise for every stored option that selects behaviour nerffs does not implement."""
    if kw.get("c_dim") or "mapping.embed.weight" in sd:
        raise _refuse("c_dim", kw.get("c_dim", "embed present"), "unconditional generators (c_dim=0)")
    module = sk.get("module_name")
    if module is not None and not str(module).endswith("NeRFSynthesisNetwork"):
        raise _refuse("synthesis_kwargs.module_name", module, "NeRFSynthesisNetwork")
    if sk.get("use_noise") or any(k.endswith(("noise_const", "noise_strength")) for k in sd):
        raise _refuse("use_noise", sk.get("use_noise", "noise buffers present"), "use_noise=False")
    if sk.get("architecture", "skip") != "skip":
        raise _refuse("architecture", sk["architecture"], "'skip'")
    if attrs.get("I") is not None or any(k.startswith("synthesis.I.") for k in sd):
        raise _refuse("NeRFInput (synthesis.I)", "present", "FFHQ models without a NeRF input module (I=None)")
    for label, sub in (("foreground_kwargs", fk), ("background_kwargs", bk)):
        for key, ok, supported in (
                ("positional_encoding", lambda v: v in (None, "normal"), "'normal'"),
                ("use_viewdirs", lambda v: not v, "False"), ("use_skip", lambda v: not v, "False"),
                ("use_pos", lambda v: not v, "False"), ("final_sigmoid_act", lambda v: not v, "False"),
                ("predict_rgb", lambda v: v is None or bool(v), "True"),
                ("downscale_p_by", lambda v: v in (None, 1), "1"),
                ("magnitude_ema_beta", lambda v: v is None or v <= 0, "<= 0 inside the NeRF")):
            if key in sub and not ok(sub[key]):
                raise _refuse(f"{label}.{key}", sub[key], supported)
    if fk.get("activation", "lrelu") != "lrelu":
        raise _refuse("foreground_kwargs.activation", fk["activation"], "'lrelu'")
    if bk.get("inverse_sphere") is False:
        raise _refuse("background_kwargs.inverse_sphere", False, "True")
    if bk.get("n_freq_posenc", 10) != fk.get("n_freq_posenc", 10):
        raise _refuse("background_kwargs.n_freq_posenc", bk.get("n_freq_posenc", 10),
                      "the same frequency count as the foreground")
    if bool(fk.get("normalized_feat", False)) != bool(bk.get("normalized_feat", False)):
        raise _refuse("background_kwargs.normalized_feat", bk.get("normalized_feat", False),
                      "the same value as foreground_kwargs.normalized_feat")
    for key, bad in (("no_2d_renderer", True), ("shared_rgb_style", True)):
        if bool(uk.get(key, False)) == bad:
            raise _refuse(f"upsampler_kwargs.{key}", uk[key], str(not bad))
    start = sk.get("resolution_start")
    if start is not None and start != sk.get("resolution_vol", start):
        raise _refuse("resolution_start", start, "resolution_start == resolution_vol")


# ---- sub-configs -----------------------------------------------------------------------------------------------------
def official_fp16_blocks(block_resolutions: list[int]) -> int:
    """How many upsampler blocks the official code builds with ``use_fp16=True`` (spec 2.6).

    ``training/stylenerf.py`` ``Upsampler.build_network`` sets ``fp16_resolution = block_resolutions[0] * 2`` and
    ``use_fp16 = res >= fp16_resolution``: every block but the first (b128 and up for Rv = 32, i.e. 2 / 3 / 4
    blocks at 256 / 512 / 1024). ``synthesis_kwargs.num_fp16_res`` plays no part: NeRFSynthesisNetwork passes it on
    in ``**block_kwargs`` and it ends in ``SynthesisLayer``'s ``**unused_kwargs`` (the StyleGAN2 formula
    ``max(2 ** (log2(R) + 1 - num_fp16_res), 8)`` belongs to ``training.networks.SynthesisNetwork``, not used here).

    Args:
        block_resolutions: upsampler block resolutions in order, e.g. ``[64, 128, 256]``.

    Returns:
        the number of highest-resolution blocks in float16 (``UpsamplerConfig.num_fp16_blocks``).
    """
    if not block_resolutions:
        return 0
    fp16_resolution = block_resolutions[0] * 2
    return sum(res >= fp16_resolution for res in block_resolutions)


def _fit_channels(outs: dict[int, int], base: int, cmax: int) -> tuple[int, int]:
    """channel_base/channel_max that reproduce the upsampler widths C(r) = min(base // r, cmax)."""
    def fits(b: int, m: int) -> bool:
        return all(min(b // r, m) == c for r, c in outs.items())

    if fits(base, cmax):
        return base, cmax
    top = max(outs.values())
    free = [(r, c) for r, c in sorted(outs.items()) if c < top]
    fit_base = free[0][0] * free[0][1] if free else max(base, top * max(outs))
    fit_max = top if min(outs) * top < fit_base or not free else max(cmax, top)
    if not fits(fit_base, fit_max):
        raise LegacyFormatError(f"upsampler widths {outs} follow no min(channel_base / r, channel_max) rule")
    log.warning("checkpoint kwargs give channel_base=%d, channel_max=%d but the upsampler tensors imply %d, %d; "
                "using the tensors", base, cmax, fit_base, fit_max)
    return fit_base, fit_max


def _upsampler(sk: dict, uk: dict, facts: dict) -> UpsamplerConfig:
    stated_mode = str(sk.get("upsample_mode", "default"))
    mode = facts["upsample_mode"]
    if mode is None:
        raise _refuse("upsample_mode", stated_mode, "'pixelshuffle' or 'nn_cat' (optionally with 'noblur')")
    if stated_mode.replace("noblur", "").strip("_-") != mode:
        log.warning("checkpoint kwargs say upsample_mode=%r but the adapter tensors are %s; using %s",
                    stated_mode, mode, mode)
        stated_mode = mode + ("_noblur" if "noblur" in stated_mode else "")
    raw_base = uk.get("channel_base", sk.get("channel_base", 1))
    raw_base = _number("channel_base", raw_base)
    # The yaml multiplier (1, 2) and the absolute value injected into upsampler_kwargs are both seen in practice.
    base = int(raw_base * _BASE_CHANNELS) if raw_base <= 64 else int(raw_base)
    cmax = int(_number("channel_max", uk.get("channel_max", sk.get("channel_max", 1024))))
    base, cmax = _fit_channels(facts["channels"], base, cmax)
    beta = float(_number("magnitude_ema_beta", sk.get("magnitude_ema_beta", -1)))
    if facts["magnitude_ema"] != (beta > 0):
        measured = 0.999 if facts["magnitude_ema"] else -1.0
        log.warning("checkpoint kwargs say magnitude_ema_beta=%g but w_avg buffers are %s; using %g", beta,
                    "present" if facts["magnitude_ema"] else "absent", measured)
        beta = measured
    clamp = sk.get("conv_clamp")
    return UpsamplerConfig(
        channel_base=base, channel_max=cmax,
        kernel_size=_pick("kernel_size", sk.get("kernel_size", 3), facts["kernel_size"]),
        conv_clamp=None if clamp is None else float(_number("conv_clamp", clamp)),
        upsample_mode=stated_mode, magnitude_ema_beta=beta,
        no_residual_img=bool(uk.get("no_residual_img", False)),
        # Whatever num_fp16_res says (absent, 0 from --fp32, 4, an interpolation): official_fp16_blocks.
        num_fp16_blocks=official_fp16_blocks(facts["resolutions"]))


def _merged(stated: dict, attrs: Mapping[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any]:
    """Kwargs overlaid with the attributes the helper object actually holds (these are what ran)."""
    return {**stated, **{k: v for k, v in (attrs or {}).items() if k in keys}}


def _camera(ck: dict, attrs: Mapping[str, Any] | None) -> CameraConfig:
    cam = _merged(ck, attrs, _CAMERA_KEYS)
    for key, bad, supported in (("angular_camera", False, "True"), ("dists_normalized", True, "False")):
        if key in cam and bool(cam[key]) == bad:
            raise _refuse(f"camera_kwargs.{key}", cam[key], supported)
    if cam.get("depth_transform") is not None:
        raise _refuse("camera_kwargs.depth_transform", cam["depth_transform"], "None")
    default = CameraConfig()
    absent = [k for k in ("fov", "ray_align_corner", "depth_range", "range_u", "range_v", "range_radius",
                          "gaussian_camera", "bg_start") if k not in cam]
    if absent:
        log.warning("checkpoint camera settings lack %s; assuming the CameraRay class defaults %s and the FFHQ "
                    "yaml values otherwise", absent, _CAMERA_CLASS_DEFAULTS)
    radius = cam.get("range_radius", default.radius)
    radius = tuple(radius) if isinstance(radius, (list, tuple)) else (radius, radius)
    if radius[0] != radius[-1]:
        log.warning("camera range_radius %s: random cameras use a fixed radius %g in nerffs", radius, radius[0])
    return CameraConfig(
        fov=float(cam.get("fov", _CAMERA_CLASS_DEFAULTS["fov"])),
        ray_align_corner=bool(cam.get("ray_align_corner", _CAMERA_CLASS_DEFAULTS["ray_align_corner"])),
        depth_range=tuple(map(float, cam.get("depth_range", default.depth_range))),
        range_u=tuple(map(float, cam.get("range_u", default.range_u))),
        range_v=tuple(map(float, cam.get("range_v", default.range_v))),
        radius=float(radius[0]), gaussian_camera=bool(cam.get("gaussian_camera", default.gaussian_camera)),
        bg_start=float(cam.get("bg_start", default.bg_start)))


def _renderer(rk: dict, attrs: Mapping[str, Any] | None) -> RendererConfig:
    ren = _merged(rk, attrs, _RENDERER_KEYS)
    if ren.get("sigma_type", "relu") != "relu":
        raise _refuse("renderer_kwargs.sigma_type", ren["sigma_type"], "'relu'")
    for key in ("white_background", "no_background"):
        if ren.get(key):
            raise _refuse(f"renderer_kwargs.{key}", ren[key], "False")
    default = RendererConfig()
    absent = [k for k in ("n_ray_samples", "n_bg_samples", "hierarchical") if k not in ren]
    if absent:
        log.warning("checkpoint renderer settings lack %s; assuming the FFHQ yaml values", absent)
    return RendererConfig(n_ray_samples=int(ren.get("n_ray_samples", default.n_ray_samples)),
                          n_bg_samples=int(ren.get("n_bg_samples", default.n_bg_samples)),
                          hierarchical=bool(ren.get("hierarchical", default.hierarchical)))


def _check_alpha(sd: Mapping[str, Any]) -> None:
    alpha = sd.get("synthesis.alpha")
    if alpha is not None and alpha.numel() == 1 and float(alpha) != 1.0:
        log.warning("synthesis.alpha = %g, not 1 (spec 3.6): the official code would ignore camera_RT for alpha <= 0 "
                    "and blend resolutions; nerffs always renders the fully trained path", float(alpha))


# ---- public ----------------------------------------------------------------------------------------------------------
def config_from_official(init_kwargs: Mapping[str, Any], state_dict: Mapping[str, Any], *,
                         synthesis_attrs: Mapping[str, Any] | None = None) -> GeneratorConfig:
    """Build the ``GeneratorConfig`` of an official generator from its stored kwargs and tensors.

    Args:
        init_kwargs: ``G_ema._init_kwargs`` as plain Python (z_dim, w_dim, img_resolution, img_channels, c_dim,
            mapping_kwargs, synthesis_kwargs with camera/renderer/foreground/background/upsampler kwargs).
        state_dict: ``G_ema`` tensors with the official names (anything with a ``.shape`` works).
        synthesis_attrs: optional plain attributes of the synthesis helpers (``C``, ``I``, ``V``, ``U``) as
            returned by ``read_official_pickle``; camera/renderer values found there override the kwargs.

    Returns:
        the configuration whose ``expected_state_shapes`` equals the checkpoint's names and shapes.

    Raises:
        LegacyFormatError: an unsupported option (named in the message), or tensors that fit no config.
    """
    kw = dict(init_kwargs)
    sk = _section(kw, "synthesis_kwargs")
    mk, fk, bk = _section(kw, "mapping_kwargs"), _section(sk, "foreground_kwargs"), _section(sk, "background_kwargs")
    uk = _section(sk, "upsampler_kwargs")
    attrs = dict(synthesis_attrs or {})
    _check_supported(kw, sk, fk, bk, uk, attrs, state_dict)
    facts = _shape_facts(state_dict)

    n_freq = _pick("n_freq_posenc", fk.get("n_freq_posenc", 10), facts["n_freq_posenc"])
    z_dim_bg = facts["bg_in"] - 4 * 2 * n_freq
    if z_dim_bg < 0:
        raise LegacyFormatError(f"synthesis.bg_nerf.fc_in takes {facts['bg_in']} inputs, fewer than the 4-D "
                                f"positional encoding ({8 * n_freq})")
    feat = _pick("rgb_out_dim", sk.get("rgb_out_dim", 256), facts["rgb_out_dim"])
    feat_bg = _pick("rgb_out_dim_bg", sk.get("rgb_out_dim_bg") or feat, facts["rgb_out_dim_bg"])
    nerf = NeRFConfig(
        rgb_out_dim=feat, rgb_out_dim_bg=None if feat_bg == feat else feat_bg,
        fg_hidden=_pick("foreground_kwargs.hidden_size", fk.get("hidden_size", 128), facts["fg_hidden"]),
        fg_blocks=_pick("foreground_kwargs.n_blocks", fk.get("n_blocks", 8), facts["fg_blocks"]),
        bg_hidden=_pick("background_kwargs.hidden_size", bk.get("hidden_size", 128), facts["bg_hidden"]),
        bg_blocks=_pick("background_kwargs.n_blocks", bk.get("n_blocks", 8), facts["bg_blocks"]),
        z_dim_bg=_pick("z_dim_bg", sk.get("z_dim_bg", 128), z_dim_bg), n_freq_posenc=n_freq,
        normalized_feat=bool(fk.get("normalized_feat", False)))
    reses = facts["resolutions"]
    cfg = GeneratorConfig(
        img_resolution=_pick("img_resolution", kw.get("img_resolution"), reses[-1]),
        img_channels=_pick("img_channels", kw.get("img_channels"), facts["img_channels"]),
        z_dim=_pick("z_dim", kw.get("z_dim"), facts["z_dim"]), w_dim=_pick("w_dim", kw.get("w_dim"), facts["w_dim"]),
        resolution_vol=_pick("resolution_vol", sk.get("resolution_vol", 32), reses[0] // 2),
        mapping=MappingConfig(num_layers=_pick("mapping_kwargs.num_layers", mk.get("num_layers", 8),
                                               facts["num_layers"]),
                              lr_multiplier=float(mk.get("lr_multiplier", 0.01)),
                              w_avg_beta=float(mk.get("w_avg_beta", 0.995))),
        nerf=nerf, camera=_camera(_section(sk, "camera_kwargs"), attrs.get("C")),
        renderer=_renderer(_section(sk, "renderer_kwargs"), attrs.get("V")),
        upsampler=_upsampler(sk, uk, facts))
    if cfg.block_resolutions != reses or any(2**int(math.log2(r)) != r for r in reses):
        raise LegacyFormatError(f"upsampler blocks {reses} are not the powers of two 2*Rv ... R")
    stored = (attrs.get("U") or {}).get("block_resolutions")
    if stored is not None and list(stored) != reses:
        log.warning("Upsampler.block_resolutions %s differ from the blocks present %s", stored, reses)
    _check_alpha(state_dict)
    problem = describe_mismatch(expected_state_shapes(cfg), {k: tuple(v.shape) for k, v in state_dict.items()})
    if problem:
        raise LegacyFormatError(f"checkpoint tensors do not match the StyleNeRF architecture of its kwargs: {problem}")
    return cfg
