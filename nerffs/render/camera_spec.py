"""The camera spec of a talking-head video: which camera mode, with which parameters, as a typed value.

A spec is parsed once at the boundary (CLI, app, jobs CSV) from its text form and then passed down;
:func:`nerffs.render.cameras.camera_path` turns it into per-frame cameras. Angles are radians: yaw is the azimuth
around world +z (positive moves the camera toward world +y), pitch the elevation (positive moves it up).

Modes (``CameraSpec.mode``):

* ``input``: the camera of the input photo's head pose on every frame (NFS's audio-driven modes).
* ``fixed``: the input camera turned by a constant (``yaw``, ``pitch``): a novel view.
* ``orbit``: an ellipse around the input view, ``yaw = A sin(2 pi t / P)``, ``pitch = B cos(2 pi t / P)``
  (it starts looking from above).
* ``keyframes``: (time, yaw, pitch) keys joined by a C1 cubic Hermite spline, eased in and out at the ends.
* ``driving``: per-frame head poses of driving frames (a folder of images or a video), optionally smoothed.

In every mode ``yaw`` / ``pitch`` turn the result further (a novel view on top of the path).

Text form (``CameraSpec.parse``; ``str(spec)`` gives it back)::

    input                              input:yaw=0.2          (== fixed:yaw=0.2)
    fixed:yaw=0.3,pitch=-0.1           angles may end in "deg": fixed:yaw=15deg (|radians| > pi/2 are refused)
    orbit:yaw=0.4,pitch=0.1,period=4   amplitudes and seconds per loop; view_yaw= / view_pitch= add a view offset
    keyframes:0:0:0;2:0.4:0;4:0:0      time_s:yaw:pitch keys; options after a comma: ,view_yaw=0.1
    driving:PATH                       a folder of frames or a video; options: ,smooth=5,yaw=0.2,pitch=0
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace

from nerffs.errors import InputError

MODES = ("input", "fixed", "orbit", "keyframes", "driving")
"""The camera modes, in the order the documentation lists them."""

_MAX_PITCH = math.pi / 2 - 1e-3  # cameras.orbit_offset adds pitches only while they stay inside the poles
MAX_RADIANS = math.pi / 2
"""Angles written in radians beyond this are refused as a likely degree value without 'deg' (write 120deg to mean
it): a quarter turn is already far outside the views StyleNeRF was trained on."""
_OPTION = re.compile(r"^\s*([A-Za-z_]+)\s*=(.*)$")


@dataclass(frozen=True)
class CameraSpec:
    """Which camera each video frame is rendered from (see the module docstring for the modes).

    Attributes:
        mode: ``"input"``, ``"fixed"``, ``"orbit"``, ``"keyframes"`` or ``"driving"``.
        yaw: extra azimuth offset in radians applied on top of the mode (a novel view); for ``"fixed"`` the
            offset from the input pose. Positive turns the camera toward world +y.
        pitch: extra elevation offset in radians (positive looks from above); |pitch| < pi/2.
        orbit_yaw: ``"orbit"`` yaw amplitude A in radians.
        orbit_pitch: ``"orbit"`` pitch amplitude B in radians.
        orbit_period: ``"orbit"`` seconds per loop (> 0).
        keyframes: ``"keyframes"`` keys ``(time_s, yaw, pitch)``, offsets from the input pose in radians;
            stored sorted by time, times distinct. Before the first / after the last key the path holds it.
        driving: ``"driving"`` path to a folder of images or a video (read by :mod:`nerffs.driving`).
        smooth: ``"driving"`` moving-average window over the driving head angles, in frames (1 = none).
    """

    mode: str = "input"
    yaw: float = 0.0
    pitch: float = 0.0
    orbit_yaw: float = 0.35
    orbit_pitch: float = 0.12
    orbit_period: float = 4.0
    keyframes: tuple[tuple[float, float, float], ...] = ()
    driving: str | None = None
    smooth: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown camera mode {self.mode!r}; use one of {', '.join(MODES)}")
        for name in ("yaw", "pitch", "orbit_yaw", "orbit_pitch", "orbit_period"):
            object.__setattr__(self, name, _finite_float(getattr(self, name), f"CameraSpec.{name}"))
        object.__setattr__(self, "keyframes", _normalise_keyframes(self.keyframes))
        if self.driving is not None:
            object.__setattr__(self, "driving", os.fspath(self.driving))
        self._check_mode_fields()
        self._check_pitch()

    def _check_mode_fields(self) -> None:
        if self.mode == "keyframes" and not self.keyframes:
            raise InputError("camera mode 'keyframes' needs at least one (time_s, yaw, pitch) key, "
                             "e.g. 'keyframes:0:0:0;2:0.4:0'")
        if self.mode != "keyframes" and self.keyframes:
            raise InputError(f"camera keyframes were given but the mode is {self.mode!r}; use mode 'keyframes'")
        if self.mode == "driving" and not self.driving:
            raise InputError("camera mode 'driving' needs a folder of frames or a video, e.g. 'driving:clip.mp4'")
        if self.mode != "driving" and self.driving is not None:
            raise InputError(f"a driving path was given but the camera mode is {self.mode!r}; use mode 'driving'")
        if isinstance(self.smooth, bool) or not isinstance(self.smooth, int) or self.smooth < 1:
            raise InputError(f"CameraSpec.smooth must be a whole number of frames >= 1, got {self.smooth!r}")
        if self.orbit_period <= 0:
            raise InputError(f"orbit period must be > 0 seconds, got {self.orbit_period}")

    def _check_pitch(self) -> None:
        worst = abs(self.pitch)
        if self.mode == "orbit":
            worst += abs(self.orbit_pitch)
        if self.mode == "keyframes":
            worst += max(abs(k[2]) for k in self.keyframes)
        if worst > _MAX_PITCH:
            raise InputError(f"camera pitch offsets reach {worst:.3f} rad, beyond the pole (pi/2); "
                             "use smaller pitch values (radians, or add 'deg')")

    @classmethod
    def parse(cls, text: str) -> CameraSpec:
        """Read the text form (module docstring), e.g. ``"orbit:yaw=0.4,pitch=0.1,period=4"``.

        Raises:
            InputError: one line naming the bad part and showing the expected form.
        """
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"empty camera spec {text!r}; use e.g. 'input', 'fixed:yaw=0.3' or 'orbit'")
        head, _, body = text.strip().partition(":")
        mode = head.strip().lower()
        if mode not in MODES:
            raise InputError(f"unknown camera mode {head.strip()!r} in {text!r}; use one of {', '.join(MODES)}")
        positional, options = _split_options(body, mode, text)
        _refuse_degrees_as_radians(text, {k: v for k, v in options.items()
                                          if _option_keys(mode)[k] not in ("orbit_period", "smooth")})
        fields: dict[str, object] = {"mode": mode}
        for key, value in options.items():
            target = _option_keys(mode)[key]
            if target == "smooth":
                fields[target] = _parse_int(value, key, text)
            else:
                fields[target] = _parse_angle(value, key, text, allow_degrees=target != "orbit_period")
        if mode == "keyframes":
            fields["keyframes"] = _parse_keyframes(positional, text)
        elif mode == "driving":
            fields["driving"] = positional.strip()
        elif positional.strip():
            raise InputError(f"unexpected {positional.strip()!r} in camera spec {text!r}; options are key=value "
                             f"pairs ({', '.join(_option_keys(mode))})")
        return cls(**fields)

    def __str__(self) -> str:
        """The canonical text form; ``CameraSpec.parse(str(spec)) == spec``."""
        view, offset = self._offset_text("view_"), self._offset_text("")
        if self.mode == "input":
            return "input" + (":" + ",".join(offset) if offset else "")
        if self.mode == "fixed":
            return f"fixed:yaw={self.yaw!r},pitch={self.pitch!r}"
        if self.mode == "orbit":
            amp = [f"yaw={self.orbit_yaw!r}", f"pitch={self.orbit_pitch!r}", f"period={self.orbit_period!r}"]
            return "orbit:" + ",".join(amp + view)
        if self.mode == "keyframes":
            keys = ";".join(f"{t!r}:{y!r}:{p!r}" for t, y, p in self.keyframes)
            return "keyframes:" + ",".join([keys] + view)
        return "driving:" + ",".join([str(self.driving)] + [f"smooth={self.smooth}"] * (self.smooth != 1) + offset)

    def _offset_text(self, prefix: str) -> list[str]:
        """The non-zero novel-view offsets as ``key=value`` options."""
        pairs = (("yaw", self.yaw), ("pitch", self.pitch))
        return [f"{prefix}{name}={value!r}" for name, value in pairs if value != 0]

    def with_offset(self, yaw: float, pitch: float) -> CameraSpec:
        """A copy whose novel-view offset is (``yaw``, ``pitch``)."""
        return replace(self, yaw=yaw, pitch=pitch)


def _finite_float(value: object, what: str) -> float:
    """``float(value)`` for a finite real number (bools refused), else a one-line InputError."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise InputError(f"{what} must be a finite number (radians or seconds), got {value!r}")
    return number


def _option_keys(mode: str) -> dict[str, str]:
    """Text option name -> CameraSpec field, per mode."""
    keys = {"view_yaw": "yaw", "view_pitch": "pitch"}
    if mode == "orbit":
        return {"yaw": "orbit_yaw", "pitch": "orbit_pitch", "period": "orbit_period", **keys}
    if mode == "keyframes":
        return keys
    extra = {"smooth": "smooth"} if mode == "driving" else {}
    return {"yaw": "yaw", "pitch": "pitch", **keys, **extra}


def _split_options(body: str, mode: str, text: str) -> tuple[str, dict[str, str]]:
    """Split ``body`` into its positional part (keys or a path) and its trailing ``key=value`` options."""
    allowed = _option_keys(mode)
    segments = body.split(",") if body.strip() else []
    options: dict[str, str] = {}
    while segments:
        match = _OPTION.match(segments[-1])
        if match is None:
            break
        key = match.group(1).lower()
        if key not in allowed:
            raise InputError(f"unknown camera option {key!r} in {text!r}; mode {mode!r} takes "
                             f"{', '.join(allowed)}")
        if key in options or allowed[key] in (allowed[k] for k in options):
            raise InputError(f"camera option {key!r} given twice in {text!r}")
        options[key] = match.group(2)
        segments.pop()
    return ",".join(segments), options


def _refuse_degrees_as_radians(text: str, angles: dict[str, str]) -> None:
    """Refuse angle options written in radians beyond ``MAX_RADIANS`` (most likely degrees without 'deg'), in
    one line whose suggestion adds 'deg' to every such value."""
    bad = []
    for key, value in angles.items():
        raw = value.strip().lower()
        try:
            number = float(raw)
        except ValueError:
            continue  # 'deg' values and non-numbers are handled by _parse_angle
        if math.isfinite(number) and abs(number) > MAX_RADIANS:
            bad.append((key, value.strip(), number))
    if bad:
        bad.sort(key=lambda b: text.find(f"{b[0]}={b[1]}"))
        hint = text
        for key, value, _ in bad:
            hint = hint.replace(f"{key}={value}", f"{key}={value}deg", 1)
        shown = ", ".join(f"{k}={v} is {n:g} radians ({math.degrees(n):.0f} degrees)" for k, v, n in bad)
        raise InputError(f"camera {shown} in {text!r}: angles are radians unless they end in 'deg'; "
                         f"did you mean {hint!r}?")


def _parse_angle(value: str, key: str, text: str, allow_degrees: bool = True) -> float:
    """A finite number; with ``allow_degrees`` a trailing ``deg`` converts degrees to radians."""
    raw = value.strip().lower()
    degrees = allow_degrees and raw.endswith("deg")
    try:
        number = float(raw[:-3] if degrees else raw)
    except ValueError:
        raise InputError(f"camera option {key}={value.strip()!r} in {text!r} is not a number") from None
    if not math.isfinite(number):
        raise InputError(f"camera option {key}={value.strip()!r} in {text!r} must be finite")
    if allow_degrees and not degrees and abs(number) > MAX_RADIANS:
        shown = f"{key}={value.strip()}"
        hint = text.replace(shown, f"{shown}deg", 1) if shown in text else f"{value.strip()}deg"
        raise InputError(f"camera angle {key}={value.strip()} in {text!r} is {number:g} radians "
                         f"({math.degrees(number):.0f} degrees): angles are radians unless they end in 'deg'; "
                         f"did you mean {hint!r}?")
    return math.radians(number) if degrees else number


def _parse_int(value: str, key: str, text: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InputError(f"camera option {key}={value.strip()!r} in {text!r} must be a whole number") from None


def _parse_keyframes(positional: str, text: str) -> tuple[tuple[float, float, float], ...]:
    """``"t:yaw:pitch;t:yaw:pitch"`` -> key tuples (seconds; angles may end in ``deg``)."""
    keys = []
    for item in (s for s in positional.split(";") if s.strip()):
        parts = item.split(":")
        if len(parts) != 3:
            raise InputError(f"camera keyframe {item.strip()!r} in {text!r} must be time_s:yaw:pitch, "
                             "e.g. 'keyframes:0:0:0;2:0.4:0'")
        keys.append((_parse_angle(parts[0], "time", text, allow_degrees=False),
                     _parse_angle(parts[1], "yaw", text), _parse_angle(parts[2], "pitch", text)))
    return tuple(keys)


def _normalise_keyframes(keyframes: object) -> tuple[tuple[float, float, float], ...]:
    """Validate keys, convert them to float tuples and sort them by time."""
    try:
        keys = [tuple(float(v) for v in key) for key in keyframes]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"camera keyframes must be (time_s, yaw, pitch) number triples, got {keyframes!r}") from None
    if any(len(k) != 3 or not all(math.isfinite(v) for v in k) for k in keys):
        raise InputError(f"camera keyframes must be finite (time_s, yaw, pitch) triples, got {keyframes!r}")
    keys.sort(key=lambda k: k[0])
    for a, b in zip(keys, keys[1:]):
        if b[0] - a[0] <= 0:
            raise InputError(f"two camera keyframes share the time {a[0]} s; give each key its own time")
    return tuple(keys)  # type: ignore[return-value]
