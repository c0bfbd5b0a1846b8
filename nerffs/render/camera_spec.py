"""Camera paths for talking-head videos: input pose, fixed novel view, orbit, keyframes and driving poses.

Every path is built around a *base* camera, the StyleNeRF camera of the input photo's head pose
(``front_matrix`` of its Deep3D angles, spec-stylenerf.md 3.5; NFS renders every audio-driven frame from it,
spec-pipeline.md 3.6 item 1). A path is a per-frame yaw / pitch offset applied with
:func:`nerffs.face3d.pose.orbit_offset`, which rotates the whole camera frame around the origin, so the
camera keeps looking at the head and keeps its roll; yaw is the azimuth around world +z (positive moves the
camera toward world +y), pitch the elevation (positive moves it up). Angles are radians.

Modes (``CameraSpec.mode``):

* ``input``: the base camera on every frame (NFS's audio-driven modes).
* ``fixed``: the base camera turned by a constant (``yaw``, ``pitch``): a novel view.
* ``orbit``: an ellipse around the base view, ``yaw = A sin(2 pi t / P)``, ``pitch = B cos(2 pi t / P)``
  (the convention of :func:`nerffs.render.views.orbit_cameras`: it starts looking from above).
* ``keyframes``: (time, yaw, pitch) keys joined by a cubic Hermite spline whose inner tangents are centred
  differences (Catmull-Rom for unevenly spaced keys) and whose end tangents are zero, so motion eases in
  and out and the path is C1 everywhere, including where it is clamped to the first / last key.
* ``driving``: per-frame head poses of driving frames, ``front_matrix(angles[t])`` (the NFS pose-driven
  scripts, spec-stylenerf.md 7.6), optionally smoothed over time; when the driving clip is shorter than
  the video its last pose is held (a loop would jump back to the first pose).

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

import torch

from nerffs.errors import InputError
from nerffs.face3d.pose import front_matrix, orbit_offset, yaw_pitch_from_cam2world
from nerffs.utils.logging import get_logger

logger = get_logger(__name__)

MODES = ("input", "fixed", "orbit", "keyframes", "driving")
"""The camera modes, in the order the documentation lists them."""

# 3 standard deviations of StyleNeRF's FFHQ camera distribution (yaw ~ N(0, 0.3), polar ~ N(pi/2, 0.155),
# spec-stylenerf.md 3.2): beyond this the generator has seen almost no training views.
_TRAINING_RANGE = (0.9, 0.465)
_MAX_PITCH = math.pi / 2 - 1e-3  # orbit_offset adds pitches only while they stay inside the poles
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


def orbit_offsets(spec: CameraSpec, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The orbit ellipse: yaw = A sin(2 pi t / P), pitch = B cos(2 pi t / P).

    Args:
        spec: its ``orbit_yaw`` (A), ``orbit_pitch`` (B) and ``orbit_period`` (P, seconds) are used.
        times: [N] seconds (float64 keeps long videos exactly periodic).

    Returns:
        yaw [N], pitch [N] offsets in radians.
    """
    phase = times * (2 * math.pi / spec.orbit_period)
    return spec.orbit_yaw * torch.sin(phase), spec.orbit_pitch * torch.cos(phase)


def interpolate_keyframes(keyframes: tuple[tuple[float, float, float], ...],
                          times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """C1 cubic Hermite through the keys, clamped to the end keys outside their time span.

    Inner tangents are centred differences ``(p[k+1] - p[k-1]) / (t[k+1] - t[k-1])`` (Catmull-Rom for uneven
    key spacing); end tangents are zero, so the path eases into and out of the held end keys.

    Args:
        keyframes: sorted ``(time_s, yaw, pitch)`` keys with distinct times (at least one).
        times: [N] seconds.

    Returns:
        yaw [N], pitch [N] in radians.
    """
    keys = torch.tensor(keyframes, dtype=torch.float64, device=times.device)  # [K, 3]
    t_key, values = keys[:, 0].contiguous(), keys[:, 1:]
    t = times.to(torch.float64).clamp(t_key[0], t_key[-1])
    if len(keyframes) == 1:
        out = values.expand(t.shape[0], 2)
        return out[:, 0], out[:, 1]
    slopes = torch.zeros_like(values)
    slopes[1:-1] = (values[2:] - values[:-2]) / (t_key[2:] - t_key[:-2])[:, None]
    seg = torch.searchsorted(t_key, t, right=True).sub(1).clamp(0, len(keyframes) - 2)
    h = t_key[seg + 1] - t_key[seg]
    s = ((t - t_key[seg]) / h)[:, None]
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    out = (h00 * values[seg] + h10 * h[:, None] * slopes[seg]
           + h01 * values[seg + 1] + h11 * h[:, None] * slopes[seg + 1])
    return out[:, 0], out[:, 1]


def smooth_angles(angles: torch.Tensor, window: int) -> torch.Tensor:
    """Centred moving average over time with edge replication (window 1 returns the input).

    Args:
        angles: [T, C].
        window: frames averaged (even windows reach one frame further back than forward).

    Returns:
        [T, C].
    """
    if window <= 1 or angles.shape[0] < 2:
        return angles
    before, after = window // 2, (window - 1) // 2
    padded = torch.cat([angles[:1].expand(before, -1), angles, angles[-1:].expand(after, -1)])
    return padded.unfold(0, window, 1).mean(dim=-1)


def _driving_cameras(spec: CameraSpec, driving_angles: torch.Tensor | None, num_frames: int, fps: float,
                     driving_fps: float | None) -> torch.Tensor:
    """``front_matrix`` of the (smoothed, re-timed, last-held) driving angles. [num_frames, 4, 4]"""
    if driving_angles is None:
        raise InputError("camera mode 'driving' needs the driving head angles (estimate them with "
                         "nerffs.driving.estimate_driving)")
    if driving_angles.ndim != 2 or driving_angles.shape[1] != 3 or driving_angles.shape[0] < 1:
        raise InputError(f"driving angles must be [T, 3] with T >= 1, got {tuple(driving_angles.shape)}")
    if not bool(torch.isfinite(driving_angles).all()):
        raise InputError("driving angles contain NaN or infinite values")
    return front_matrix(driving_angles_at_frames(smooth_angles(driving_angles, spec.smooth), num_frames, fps,
                                                 driving_fps))


def driving_angles_at_frames(angles: torch.Tensor, num_frames: int, fps: float,
                             driving_fps: float | None) -> torch.Tensor:
    """The driving pose shown at each output frame: [T_drive, 3] -> [num_frames, 3] (re-timed when
    ``driving_fps`` is given, else frame t = driving frame t; the last pose is held)."""
    frame = torch.arange(num_frames, dtype=torch.float64)
    if driving_fps is not None:  # frame t shows the driving frame on screen at time t / fps
        frame = torch.floor(frame * (driving_fps / fps) + 1e-9)
    index = frame.long().clamp(max=angles.shape[0] - 1).to(angles.device)  # hold the last pose
    if int(frame[-1]) >= angles.shape[0]:
        logger.info("driving clip has %d poses for %d frames; holding its last pose", angles.shape[0], num_frames)
    return angles[index]


def _check_path_args(base_cam2world: torch.Tensor, num_frames: int, fps: float,
                     driving_fps: float | None) -> None:
    if base_cam2world.ndim != 3 or tuple(base_cam2world.shape) != (1, 4, 4):
        raise InputError(f"base_cam2world must be [1, 4, 4], got {tuple(base_cam2world.shape)}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise InputError(f"num_frames must be a whole number >= 1, got {num_frames!r}")
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if driving_fps is not None and (not math.isfinite(driving_fps) or driving_fps <= 0):
        raise InputError(f"driving_fps must be > 0, got {driving_fps}")


def camera_path(spec: CameraSpec, base_cam2world: torch.Tensor, num_frames: int, fps: float = 25.0,
                driving_angles: torch.Tensor | None = None, driving_fps: float | None = None) -> torch.Tensor:
    """Per-frame cameras for a video (frame t is at time t / fps seconds).

    Args:
        spec: the camera mode and its parameters.
        base_cam2world: [1, 4, 4] camera of the input photo (``front_matrix(input angles)``); unused by
            ``"driving"`` apart from its dtype and device.
        num_frames: frames in the video (N).
        fps: video frame rate.
        driving_angles: [T, 3] Deep3D Euler angles of the driving frames (``DrivingSequence.angles``), needed
            by ``"driving"``. With fewer poses than frames the last pose is held; extra poses are unused.
        driving_fps: frame rate of the driving clip; None pairs output frame t with driving frame t (as NFS
            does), a rate re-times the clip so it plays at its own speed.

    Returns:
        [N, 4, 4] camera-to-world, dtype and device of ``base_cam2world``.
    """
    _check_path_args(base_cam2world, num_frames, fps, driving_fps)
    times = torch.arange(num_frames, dtype=torch.float64) / fps
    if spec.mode == "driving":
        angles = None if driving_angles is None else driving_angles.to(base_cam2world)
        cams = _driving_cameras(spec, angles, num_frames, fps, driving_fps)
        yaw, pitch = torch.zeros(num_frames, dtype=torch.float64), torch.zeros(num_frames, dtype=torch.float64)
    else:
        cams = base_cam2world.expand(num_frames, 4, 4)
        yaw, pitch = _mode_offsets(spec, times)
    yaw, pitch = yaw + spec.yaw, pitch + spec.pitch
    if bool((yaw != 0).any() or (pitch != 0).any()):
        cams = orbit_offset(cams, yaw.to(cams), pitch.to(cams))
    else:
        cams = cams.clone()
    _warn_outside_training(cams)
    return cams


def _mode_offsets(spec: CameraSpec, times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (yaw, pitch) offsets [N] of the modes that move around the base camera."""
    if spec.mode == "orbit":
        return orbit_offsets(spec, times)
    if spec.mode == "keyframes":
        return interpolate_keyframes(spec.keyframes, times)
    return torch.zeros_like(times), torch.zeros_like(times)  # input, fixed: only the view offset


def _warn_outside_training(cams: torch.Tensor) -> None:
    """Log once when a camera leaves the range StyleNeRF was trained on (results degrade there)."""
    yaw, pitch = yaw_pitch_from_cam2world(cams)
    worst_yaw, worst_pitch = float(yaw.abs().max()), float(pitch.abs().max())
    if worst_yaw > _TRAINING_RANGE[0] or worst_pitch > _TRAINING_RANGE[1]:
        logger.warning("camera path reaches yaw %.2f / pitch %.2f rad, outside StyleNeRF's training views "
                       "(about +-%.2f / +-%.2f); expect artefacts", worst_yaw, worst_pitch, *_TRAINING_RANGE)
