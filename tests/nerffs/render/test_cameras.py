"""Camera modes: input, fixed novel view, orbit, keyframes, driving poses, and the CLI text form."""
from __future__ import annotations

import math

import pytest
import torch

from nerffs.errors import InputError
from nerffs.render.cameras import (CameraSpec, camera_path, front_matrix, interpolate_keyframes, smooth_angles,
                                   yaw_pitch_from_cam2world)

FPS = 25.0


@pytest.fixture
def base() -> torch.Tensor:
    """A non-frontal input pose: Deep3D pitch 0.1, yaw -0.2, roll 0.05 (roll must survive every offset)."""
    return front_matrix(torch.tensor([[0.1, -0.2, 0.05]]))


def _yaw_pitch(cams: torch.Tensor) -> torch.Tensor:
    """[N, 2] orbit angles of the camera centres."""
    return torch.stack(yaw_pitch_from_cam2world(cams), dim=-1)


def _relative(cams: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """[N, 2] (yaw, pitch) of each camera minus the base camera's."""
    return _yaw_pitch(cams) - _yaw_pitch(base)


def _assert_orthonormal(cams: torch.Tensor) -> None:
    rot = cams[:, :3, :3]
    torch.testing.assert_close(rot.transpose(1, 2) @ rot, torch.eye(3).expand_as(rot), atol=1e-5, rtol=0)
    # Every camera looks at the origin: its centre lies along its own +z axis (it looks along -z).
    torch.testing.assert_close(cams[:, :3, 3], rot[:, :, 2] * cams[:, :3, 3].norm(dim=-1, keepdim=True),
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("text", ["input", "fixed:yaw=0.3,pitch=-0.1", "orbit", "keyframes:0:0:0;1:0.3:0.1"])
def test_path_shape_dtype_and_valid_rotations(text: str, base: torch.Tensor) -> None:
    cams = camera_path(CameraSpec.parse(text), base, num_frames=37, fps=FPS)
    assert cams.shape == (37, 4, 4) and cams.dtype == base.dtype
    _assert_orthonormal(cams)
    torch.testing.assert_close(cams[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(37, 4))


def test_input_mode_repeats_the_base_camera(base: torch.Tensor) -> None:
    cams = camera_path(CameraSpec(), base, num_frames=5)
    assert torch.equal(cams, base.expand(5, 4, 4))
    cams[0, 0, 0] = 7.0  # a fresh tensor, not a view of the caller's base
    assert base[0, 0, 0] != 7.0


def test_fixed_mode_turns_by_the_offset(base: torch.Tensor) -> None:
    cams = camera_path(CameraSpec(mode="fixed", yaw=0.3, pitch=-0.1), base, num_frames=4)
    torch.testing.assert_close(_relative(cams, base), torch.tensor([[0.3, -0.1]]).expand(4, 2), atol=1e-5, rtol=0)
    assert torch.equal(cams[0], cams[3])
    # The whole frame turns, so the roll around the viewing axis is kept: the angle between the camera's
    # x axis and the horizontal plane is unchanged by a pure yaw turn.
    yawed = camera_path(CameraSpec(mode="fixed", yaw=0.4), base, num_frames=1)
    torch.testing.assert_close(yawed[0, 2, 0], base[0, 2, 0], atol=1e-6, rtol=0)


def test_orbit_is_periodic_with_the_requested_amplitudes(base: torch.Tensor) -> None:
    spec = CameraSpec.parse("orbit:yaw=0.4,pitch=0.1,period=4")
    n = int(4 * FPS)
    cams = camera_path(spec, base, num_frames=n + 1, fps=FPS)
    torch.testing.assert_close(cams[0], cams[n], atol=1e-6, rtol=0)
    rel = _relative(cams, base)
    torch.testing.assert_close(rel[:, 0].abs().max(), torch.tensor(0.4), atol=1e-5, rtol=0)
    torch.testing.assert_close(rel[:, 1].abs().max(), torch.tensor(0.1), atol=1e-5, rtol=0)
    # A quarter period in (t = 1 s): full yaw swing, pitch back at the input height.
    torch.testing.assert_close(rel[n // 4], torch.tensor([0.4, 0.0]), atol=1e-5, rtol=0)
    assert not torch.allclose(cams[0], cams[n // 2])


def test_keyframes_hit_keys_clamp_and_stay_continuous(base: torch.Tensor) -> None:
    spec = CameraSpec.parse("keyframes:1:0:0;2:0.4:0.1;4:-0.2:0")
    cams = camera_path(spec, base, num_frames=int(5 * FPS) + 1, fps=FPS)
    rel = _relative(cams, base)
    for t, yaw, pitch in spec.keyframes:
        torch.testing.assert_close(rel[int(t * FPS)], torch.tensor([yaw, pitch]), atol=1e-5, rtol=0)
    # Clamped: before the first key and after the last the key's view is held.
    torch.testing.assert_close(rel[: int(FPS)], torch.zeros(int(FPS), 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(rel[int(4 * FPS):], torch.tensor([-0.2, 0.0]).expand_as(rel[int(4 * FPS):]),
                               atol=1e-5, rtol=0)
    # Continuous: keys differ by up to 0.6 rad, yet no frame-to-frame step exceeds a small fraction of that.
    assert float((rel[1:] - rel[:-1]).abs().max()) < 0.03


def test_keyframe_spline_is_c1_and_has_centred_tangents() -> None:
    keys = ((0.0, 0.0, 0.0), (1.0, 1.0, 0.0), (3.0, 4.0, 0.0))
    eps = 1e-6
    t = torch.tensor([1.0 - eps, 1.0, 1.0 + eps, 3.0 - eps, 3.0, 3.0 + eps], dtype=torch.float64)
    yaw, pitch = interpolate_keyframes(keys, t)
    left, right = (yaw[1] - yaw[0]) / eps, (yaw[2] - yaw[1]) / eps
    # The same slope on both sides of the inner key, equal to the centred difference (4 - 0) / (3 - 0).
    assert abs(float(left) - 4 / 3) < 1e-4 and abs(float(right) - 4 / 3) < 1e-4
    # Zero slope into the last key, and the held value after it: no kink at the clamp.
    assert abs(float(yaw[4] - yaw[3]) / eps) < 1e-4 and float(yaw[5]) == 4.0
    assert torch.equal(pitch, torch.zeros_like(pitch))
    single = interpolate_keyframes(((2.0, 0.3, -0.1),), torch.tensor([0.0, 5.0], dtype=torch.float64))
    assert torch.allclose(single[0], torch.tensor(0.3, dtype=torch.float64))
    assert torch.allclose(single[1], torch.tensor(-0.1, dtype=torch.float64))


def test_driving_poses_with_novel_view_offset_and_held_last_pose(base: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(0)
    angles = (torch.rand(6, 3, generator=gen) - 0.5) * 0.4
    plain = camera_path(CameraSpec(mode="driving", driving="clip.mp4"), base, num_frames=9,
                        driving_angles=angles)
    torch.testing.assert_close(plain[:6], front_matrix(angles))
    assert torch.equal(plain[6], plain[5]) and torch.equal(plain[8], plain[5])  # shorter clip: hold the last
    turned = camera_path(CameraSpec.parse("driving:clip.mp4,yaw=0.2,pitch=-0.05"), base, num_frames=6,
                         driving_angles=angles)
    torch.testing.assert_close(_yaw_pitch(turned) - _yaw_pitch(plain[:6]),
                               torch.tensor([[0.2, -0.05]]).expand(6, 2), atol=1e-5, rtol=0)


def test_driving_retiming_and_smoothing(base: torch.Tensor) -> None:
    angles = torch.zeros(10, 3)
    angles[:, 1] = torch.linspace(-0.3, 0.3, 10)
    spec = CameraSpec(mode="driving", driving="frames/")
    fast = camera_path(spec, base, num_frames=5, fps=25.0, driving_angles=angles, driving_fps=50.0)
    torch.testing.assert_close(fast, front_matrix(angles[::2]))
    spike = torch.zeros(7, 1)
    spike[3] = 3.0
    torch.testing.assert_close(smooth_angles(spike, 3)[2:5, 0], torch.ones(3))
    torch.testing.assert_close(smooth_angles(angles, 3)[1:-1], angles[1:-1], atol=1e-6, rtol=0)  # linear kept
    smoothed = camera_path(CameraSpec(mode="driving", driving="frames/", smooth=3), base, num_frames=7,
                           driving_angles=torch.cat([torch.zeros(7, 2), spike], dim=1))
    torch.testing.assert_close(smoothed[3], front_matrix(torch.tensor([[0.0, 0.0, 1.0]]))[0])


@pytest.mark.parametrize("text,expected", [
    ("input", CameraSpec()),
    ("  Fixed : yaw=0.3, pitch=-0.1 ", CameraSpec(mode="fixed", yaw=0.3, pitch=-0.1)),
    ("fixed:yaw=30deg", CameraSpec(mode="fixed", yaw=math.radians(30))),
    ("orbit:yaw=0.4,pitch=0.1,period=4", CameraSpec(mode="orbit", orbit_yaw=0.4, orbit_pitch=0.1,
                                                    orbit_period=4.0)),
    ("orbit:view_yaw=0.1", CameraSpec(mode="orbit", yaw=0.1)),
    ("keyframes:0:0:0;2:0.4:0;4:0:0", CameraSpec(mode="keyframes",
                                                 keyframes=((0, 0, 0), (2, 0.4, 0), (4, 0, 0)))),
    ("keyframes:2:0.4:0;0:0:0,view_pitch=-0.1", CameraSpec(mode="keyframes", pitch=-0.1,
                                                           keyframes=((0, 0, 0), (2, 0.4, 0)))),
    ("driving:/data/my clips/a:b.mp4", CameraSpec(mode="driving", driving="/data/my clips/a:b.mp4")),
    ("driving:frames,smooth=5,yaw=0.2", CameraSpec(mode="driving", driving="frames", smooth=5, yaw=0.2)),
])
def test_parse_and_round_trip(text: str, expected: CameraSpec) -> None:
    spec = CameraSpec.parse(text)
    assert spec == expected
    assert CameraSpec.parse(str(spec)) == spec
    assert str(CameraSpec.parse(str(spec))) == str(spec)


@pytest.mark.parametrize("text", [
    "", "warp", "fixed:yaw=abc", "fixed:roll=0.1", "fixed:yaw=0.1,yaw=0.2", "fixed:yaw=0.1,view_yaw=0.2",
    "fixed:0.3", "input:pitch=2", "orbit:period=0", "orbit:pitch=1.2,view_pitch=0.5", "orbit:yaw=nan",
    "keyframes:", "keyframes:0:0", "keyframes:1:0:0;1:0.2:0", "keyframes:0:0:0,yaw=0.1", "keyframes:1deg:0:0",
    "driving:", "driving:clip.mp4,smooth=0", "driving:clip.mp4,smooth=1.5", "driving:clip.mp4,smoth=3",
    "orbit:period=4deg",
])
def test_bad_text_raises_one_line(text: str) -> None:
    with pytest.raises(InputError) as info:
        CameraSpec.parse(text)
    assert "\n" not in str(info.value) and str(info.value)


def test_bad_specs_and_arguments(base: torch.Tensor) -> None:
    with pytest.raises(InputError, match="driving"):
        CameraSpec(mode="orbit", driving="clip.mp4")
    with pytest.raises(InputError, match="keyframes"):
        CameraSpec(mode="fixed", keyframes=((0.0, 0.1, 0.0),))
    with pytest.raises(InputError, match="finite"):
        CameraSpec(yaw="left")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="driving head angles"):
        camera_path(CameraSpec(mode="driving", driving="clip.mp4"), base, num_frames=3)
    with pytest.raises(InputError, match=r"\[T, 3\]"):
        camera_path(CameraSpec(mode="driving", driving="clip.mp4"), base, 3, driving_angles=torch.zeros(0, 3))
    with pytest.raises(InputError, match="num_frames"):
        camera_path(CameraSpec(), base, num_frames=0)
    with pytest.raises(InputError, match="base_cam2world"):
        camera_path(CameraSpec(), base[0], num_frames=2)
    with pytest.raises(InputError, match="fps"):
        camera_path(CameraSpec(), base, num_frames=2, fps=0.0)


def test_far_views_log_a_warning(base: torch.Tensor, caplog: pytest.LogCaptureFixture) -> None:
    camera_path(CameraSpec(mode="fixed", yaw=0.2), base, num_frames=2)
    assert "outside StyleNeRF" not in caplog.text
    camera_path(CameraSpec(mode="fixed", yaw=1.2), base, num_frames=2)
    assert "outside StyleNeRF" in caplog.text


@pytest.mark.parametrize("text, hint", [
    ("fixed:yaw=30", "fixed:yaw=30deg"),
    ("orbit:yaw=15,pitch=5,period=4", "orbit:yaw=15deg,pitch=5deg,period=4"),
    ("input:pitch=-2", "input:pitch=-2deg"),
    ("keyframes:0:0:0;2:45:0", "45deg"),
])
def test_degrees_written_as_radians_are_refused_with_the_fix(text: str, hint: str) -> None:
    """Issue #16 item 5: `fixed:yaw=30` used to run with 30 radians and no warning."""
    with pytest.raises(InputError) as info:
        CameraSpec.parse(text)
    message = str(info.value)
    assert "radians" in message and f"did you mean '{hint}'" in message and "\n" not in message


def test_radians_up_to_a_quarter_turn_and_any_degrees_are_accepted() -> None:
    assert CameraSpec.parse("fixed:yaw=1.5").yaw == pytest.approx(1.5)
    assert CameraSpec.parse("fixed:yaw=30deg").yaw == pytest.approx(math.radians(30))
    assert CameraSpec.parse("orbit:yaw=100deg,period=20").orbit_yaw == pytest.approx(math.radians(100))
