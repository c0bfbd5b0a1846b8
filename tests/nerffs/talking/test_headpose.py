"""Head motion: pose preparation, the two renderings (deformation with the body pinned, camera), procedural
speech-driven motion, and the pose-scale-0 identity (issue: natural motion)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerffs.errors import InputError
from nerffs.render.cameras import front_matrix, pose_cameras, world_rotation, yaw_pitch_from_cam2world
from nerffs.talking.headpose import MotionConfig, prepare_pose, procedural_pose, rotate_about_pivot, turn_plane_points


def test_prepare_pose_scales_smooths_and_clamps():
    raw = torch.zeros(30, 3)
    raw[10:20] = torch.tensor([0.5, -0.9, 0.05])
    cfg = MotionConfig(pose="audio", pose_scale=2.0, pose_smooth=1)
    out = prepare_pose(raw, cfg)
    assert torch.allclose(out[15], torch.tensor([0.2, -0.3, 0.1]))        # clamped to max_angles
    assert float(prepare_pose(raw, MotionConfig(pose="audio", pose_scale=0.0)).abs().max()) == 0
    smooth = prepare_pose(raw * 0.01, MotionConfig(pose="audio", pose_smooth=5))
    assert float(smooth.diff(dim=0).abs().max()) < float((raw * 0.01).diff(dim=0).abs().max())


@pytest.mark.parametrize("bad", [dict(pose="nod"), dict(head_motion="warp"), dict(pose_style=46),
                                 dict(pose_scale=-1.0), dict(pose_smooth=0)])
def test_motion_config_refuses_bad_values(bad):
    with pytest.raises(InputError):
        MotionConfig(**bad)


def test_rotation_about_the_pivot_keeps_the_pivot_and_distances():
    torch.manual_seed(0)
    verts = torch.randn(1, 50, 3)
    pivot = torch.tensor([0.2, -1.0, -0.5])
    out = rotate_about_pivot(torch.cat([verts, pivot.view(1, 1, 3)], 1), torch.tensor([[0.1, -0.2, 0.05]]), pivot)
    assert torch.allclose(out[0, -1], pivot, atol=1e-6)
    dist = lambda p: (p[:, None] - p[None]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(dist(out[0, :-1]), dist(verts[0]), atol=1e-5)


def test_roll_turns_plane_points_about_the_pivot():
    pts = torch.tensor([[0.05, 0.0], [0.0, 0.05]])                       # world (y, z)
    roll = 0.1
    out = turn_plane_points(pts, torch.tensor([[0.0, 0.0, roll]]), torch.zeros(3))[0]
    assert torch.allclose(out.norm(dim=1), pts.norm(dim=1), atol=1e-6)
    angles = torch.atan2(out[:, 1], out[:, 0]) - torch.atan2(pts[:, 1], pts[:, 0])
    assert torch.allclose(angles.abs(), torch.full((2,), roll), atol=1e-5)


def test_camera_mode_is_the_inverse_turn_of_the_camera():
    base = front_matrix(torch.zeros(3, 3))
    pose = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.2, 0.0], [0.15, 0.0, 0.0]])
    cams = pose_cameras(base, pose)
    assert torch.allclose(cams[0], base[0], atol=1e-6)
    assert torch.allclose(cams, front_matrix(pose), atol=1e-5)            # = the official pose -> camera rule
    yaw, pitch = yaw_pitch_from_cam2world(cams)
    assert float(yaw[1]) == pytest.approx(-0.2, abs=1e-5) and float(pitch[2]) == pytest.approx(0.15, abs=1e-5)
    rot = world_rotation(pose)
    assert torch.allclose(rot @ cams[:, :3, :3], base[:, :3, :3], atol=1e-5)  # head turn undoes the camera's


def _speech_like(seconds=6.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    syllables = (np.sin(2 * np.pi * 3.0 * t) > 0.3) & (t > 1.0) & (t < 5.0)
    loud = np.where(np.arange(len(t)) % (sr // 3) < sr // 12, 1.0, 0.35)   # every third of a second a stress
    return (0.3 * loud * syllables * np.sin(2 * np.pi * 180 * t)).astype(np.float32)


def test_procedural_pose_is_seeded_and_nods_on_stress():
    wave = _speech_like()
    a = procedural_pose(wave, 16000, 150, 25.0, generator=torch.Generator().manual_seed(3))
    b = procedural_pose(wave, 16000, 150, 25.0, generator=torch.Generator().manual_seed(3))
    c = procedural_pose(wave, 16000, 150, 25.0, generator=torch.Generator().manual_seed(4))
    assert a.shape == (150, 3) and torch.equal(a, b) and not torch.equal(a, c)
    drift_only = procedural_pose(np.zeros_like(wave), 16000, 150, 25.0, generator=torch.Generator().manual_seed(3))
    nods = (a - drift_only)[:, 0]                                        # pitch added by the stresses
    assert float(nods[25:125].max()) > 0.01 and float(nods[:20].abs().max()) < 0.02
    assert float(a.abs().max()) < 0.2                                     # small, natural amplitudes


@pytest.mark.slow
def test_pose_scale_zero_is_identical_to_no_pose(tmp_path):
    from nerffs.audio.speech import synthesize_speech
    from nerffs.bench.offline import read_frames
    from nerffs.examples import example_photo
    from nerffs.pipeline import TalkingHeadPipeline

    speech = synthesize_speech(tmp_path / "s.wav", text="Hello there.")
    pipe = TalkingHeadPipeline.from_pretrained("smoke")
    still = pipe(example_photo(), speech, tmp_path / "none.mp4", show_progress=False)
    zero = pipe(example_photo(), speech, tmp_path / "zero.mp4", show_progress=False, pose="audio", pose_scale=0.0)
    moving = pipe(example_photo(), speech, tmp_path / "move.mp4", show_progress=False, pose="audio", pose_scale=3)
    assert still.pose is None and zero.pose is None and moving.pose is not None
    assert np.array_equal(read_frames(still.video), read_frames(zero.video))
    assert not np.array_equal(read_frames(still.video), read_frames(moving.video))
    camera = pipe(example_photo(), speech, tmp_path / "cam.mp4", show_progress=False, pose="audio", pose_scale=3,
                  head_motion="camera")
    turn = front_matrix(moving.pose) @ torch.linalg.inv(front_matrix(torch.zeros(1, 3)))
    assert torch.allclose(camera.cams, turn @ still.cams, atol=1e-5)
