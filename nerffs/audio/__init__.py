"""Audio stack: any audio file -> 16 kHz mono -> Wav2Lip mel windows -> Audio2Exp expressions (+ Audio2Pose poses).

Spec: spec-pipeline.md sections 1 (audio front end) and 2 (SadTalker Audio2Exp, how NFS drives it); SadTalker's
Audio2Pose (issue #20) samples head poses from the same mel windows.

Typical use::

    cfg = AudioConfig()
    wav = load_audio("speech.m4a", cfg)                  # [L] float32, 16 kHz mono
    mel = mel_windows(wav, cfg)                          # [T, 80, 16], T = floor(L / 640)
    model = load_audio2exp("SadTalker_V0.0.2_256.safetensors")
    exp = audio_to_expression(model, mel, e0, cfg)       # [T, 64]
    pose_net = load_audio2pose("SadTalker_V0.0.2_256.safetensors")
    pose = audio_to_pose(pose_net, mel, ref_pose, style=0, generator=g)  # [T, 6]
"""
from nerffs.audio.audio2exp import Audio2Exp, load_audio2exp
from nerffs.audio.audio2pose import Audio2Pose, Audio2PoseConfig, audio_to_pose, load_audio2pose, smooth_poses
from nerffs.audio.config import AudioConfig
from nerffs.audio.expression import audio_to_expression, blink_sequence, random_blink_sequence
from nerffs.audio.load import decode_audio, load_audio
from nerffs.audio.mel import (frame_window_indices, frame_window_starts, frame_windows, mel_filterbank,
                              mel_windows, melspectrogram)
from nerffs.errors import AudioError

__all__ = [
    "Audio2Exp", "Audio2Pose", "Audio2PoseConfig", "AudioConfig", "AudioError", "audio_to_expression",
    "audio_to_pose", "blink_sequence", "decode_audio", "frame_window_indices", "frame_window_starts",
    "frame_windows", "load_audio", "load_audio2exp", "load_audio2pose", "mel_filterbank", "mel_windows",
    "melspectrogram", "random_blink_sequence", "smooth_poses",
]
