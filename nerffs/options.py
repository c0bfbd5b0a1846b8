"""Validation of a run's options in the user's own words, before any model is loaded or any file written.

A run's options are flat ``PipelineConfig`` overrides (``exp_scale=1.2``, ``camera='orbit'``). The stage configs
check themselves too, but late (some only when the frame loop starts) and in internal names
(``AudioConfig.ref_momentum``); :func:`check_options` checks every option up front and names it the way the
user wrote it: the keyword for library calls, the flag for CLIs (``names={'ref_momentum': '--momentum'}``).
:func:`check_paths` checks the run's files the same way.
"""
from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nerffs.config import PipelineConfig
from nerffs.errors import InputError
from nerffs.inversion.config import PRESETS as INVERSION_PRESETS
from nerffs.render.camera_spec import CameraSpec

log = logging.getLogger(__name__)

Rule = tuple[Callable[[Any], bool], str]


def _number(lo: float | None = None, hi: float | None = None) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (lo is None or v >= lo) and (hi is None or v <= hi)
    return ok


def _whole(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if v is None:
            return optional
        if isinstance(v, bool) or not isinstance(v, int):
            return False
        return (lo is None or v >= lo) and (hi is None or v <= hi)
    return ok


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda v: v in choices


def _listed(choices: tuple[str, ...]) -> str:
    """``'a', 'b' or 'c'``."""
    quoted = [repr(c) for c in choices]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


RULES: dict[str, Rule] = {
    "exp_scale": (_number(0.0), "must be a number >= 0"),
    "ref_momentum": (_number(0.0, 1.0), "must be between 0 and 1"),
    "mask_window": (_whole(1), "must be a whole number of frames >= 1"),
    "blink": (_one_of("none", "random"), "must be 'none' or 'random'"),
    "blink_strength": (_number(0.0, 2.0), "must be between 0 and 2"),
    "batch_size": (_whole(1, optional=True), "must be a whole number of frames >= 1"),
    "deform_mode": (_one_of("world", "official"), "must be 'world' or 'official'"),
    "pose": (_one_of("none", "audio", "driving"), "must be 'none', 'audio' or 'driving'"),
    "pose_style": (_whole(0, 45), "must be a whole number from 0 to 45"),
    "pose_scale": (_number(0.0), "must be a number >= 0"),
    "head_motion": (_one_of("deform", "camera"), "must be 'deform' or 'camera'"),
    "expression": (_one_of("audio", "driving"), "must be 'audio' or 'driving'"),
    "source": (_one_of("auto", "pti", "sample"), "must be 'auto', 'pti' or 'sample'"),
    "inversion_preset": (_one_of(*INVERSION_PRESETS.names()), f"must be {_listed(INVERSION_PRESETS.names())}"),
    "truncation_psi": (_number(0.0, 2.0), "must be a number between 0 and 2 (0.7 is usual)"),
    "quality": (_whole(0, 10), "must be a whole number from 0 to 10"),
    "max_size": (_whole(16, optional=True), "must be a whole number of pixels >= 16"),
    "face_index": (_whole(0, optional=True), "must be a whole number >= 0 (0 = the best face)"),
}
"""Option -> (check, what a valid value is)."""

FLAG_ALIASES: dict[str, str] = {"ref_momentum": "momentum", "deform_mode": "deform", "batch_size": "batch",
                                 "source": "identity", "truncation_psi": "trunc"}
"""The config fields whose CLI flag has a shorter name; every other flag is the field's name (``--exp-scale``)."""


def flag_name(field: str) -> str:
    """The CLI flag of a flat ``PipelineConfig`` field: ``ref_momentum`` -> ``--momentum``, ``exp_scale`` ->
    ``--exp-scale``."""
    return "--" + FLAG_ALIASES.get(field, field).replace("_", "-")


def flag_dest(field: str) -> str:
    """argparse's attribute name for ``flag_name(field)``."""
    return flag_name(field)[2:].replace("-", "_")


_INTERNAL = re.compile(r"\b[A-Z][A-Za-z]*Config\.([a-z_]+)")


def option_name(field: str, names: Mapping[str, str] | None) -> str:
    """How the user wrote ``field``: ``names[field]`` (e.g. a CLI flag) or the keyword itself."""
    return (names or {}).get(field, field)


def check_options(options: Mapping[str, Any], base: PipelineConfig, names: Mapping[str, str] | None = None
                  ) -> PipelineConfig:
    """``base.replace(**options)`` after checking every option.

    Args:
        options: flat ``PipelineConfig`` overrides of one run.
        base: the config the options apply to (the pipeline's).
        names: how the user spells each field (CLI flags); fields not in it are named by their keyword.

    Raises:
        InputError: one line naming the option as the user wrote it, the value and what is allowed.
    """
    for field, value in options.items():
        rule = RULES.get(field)
        if rule is not None and not rule[0](value):
            raise InputError(f"{option_name(field, names)} {rule[1]}, got {value!r}")
    if "camera" in options:
        CameraSpec.parse(options["camera"])  # its errors quote the spec the user gave
    try:
        cfg = base.replace(**options)
    except (ValueError, TypeError) as exc:  # a stage's own check: translate Config.field to the user's name
        message = _INTERNAL.sub(lambda m: option_name(m.group(1), names), str(exc).splitlines()[0] if str(exc) else "")
        raise InputError(message or f"invalid options: {type(exc).__name__}") from None
    _check_combinations(cfg, names)
    return cfg


def _check_combinations(cfg: PipelineConfig, names: Mapping[str, str] | None) -> None:
    r = cfg.render
    n = lambda field: option_name(field, names)  # noqa: E731
    if (r.resume or r.restart) and not r.frames_dir:
        raise InputError(f"{n('resume' if r.resume else 'restart')} needs {n('frames_dir')} (the folder of frames "
                         "to continue from or discard)")
    if r.resume and r.restart:
        raise InputError(f"{n('resume')} and {n('restart')} exclude each other: continue the frames or discard them")
    if r.frames_dir and Path(r.frames_dir).exists() and not Path(r.frames_dir).is_dir():
        raise InputError(f"{n('frames_dir')} {r.frames_dir} is a file; give a folder for the frames")
    if r.save_coefficients is not None and Path(r.save_coefficients).suffix.lower() != ".npz":
        raise InputError(f"{n('save_coefficients')} must name an .npz file, got {r.save_coefficients!r}")
    if r.save_control_points and r.save_coefficients is None:
        raise InputError(f"{n('save_control_points')} needs {n('save_coefficients')} (the .npz they go into)")


def check_paths(image: Any, audio: str | os.PathLike | None, output: str | os.PathLike, needs_audio: bool) -> None:
    """A run's files: the photo and speech exist and are files (a folder is called one), the output is a
    writable ``.mp4`` (an existing one is replaced once the new video is complete, with a warning).

    Raises:
        InputError: one line naming the path and what is wrong with it.
    """
    _check_file(image, "photo", "an image file (jpg, png, webp)")
    if audio is None and needs_audio:
        raise InputError("no audio given; pass a speech recording (or drive expressions with a video: "
                         "expression='driving', camera='driving:CLIP')")
    _check_file(audio, "audio", "a speech recording (wav, mp3, m4a, flac, ogg)")
    out = Path(output)
    if out.is_dir():
        raise InputError(f"the output {out} is a directory; give a file name ending in .mp4")
    if out.suffix.lower() != ".mp4":
        raise InputError(f"output must be an .mp4 file, got {out.name!r}")
    parent = out.parent if str(out.parent) else Path(".")
    try:  # a real probe: permissions, read-only or virtual file systems, missing parents we cannot create
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".nerffs-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write the output to {parent} ({exc.strerror or exc}); choose another "
                         "output path") from None
    if out.exists():
        log.warning("%s exists; it will be replaced once the new video is complete", out)


def _check_file(path: Any, what: str, expected: str) -> None:
    """A path input must be an existing file (a folder is named as such); arrays and images pass."""
    if not isinstance(path, (str, os.PathLike)):
        return
    p = Path(path)
    if p.is_dir():
        raise InputError(f"the {what} {p} is a directory; pass {expected}")
    if not p.is_file():
        raise InputError(f"{'image' if what == 'photo' else what} not found: {p}")
