"""Audio2Pose: head-pose motion sampled from audio by SadTalker's conditional VAE (spec-pipeline.md 2, 10; issue #20).

SadTalker (Zhang et al., CVPR 2023, Sec. 3.3 "PoseVAE") predicts the 6 pose coefficients of the Deep3D face
model, 3 rotation angles and 3 translations (full coefficient vector entries 224:227 and 254:257; the last 6 of
SadTalker's 70-vector ``exp | angle | trans``), as motion relative to the pose of the source image.

Generation works on windows of ``seq_len`` = 32 video frames. For one window, with z ~ N(0, I):

    a_t    = A(mel_t)                                   Wav2Lip-style audio encoder, 512 per frame
    h      = [ref (6), z + b_style (64), W_a a_1 .. W_a a_L (L x 6)]   b_style: learned bias per style class
    x      = sigmoid(MLP(h))  reshaped to [L, 6]
    motion = pose_linear(ResUnet(x))                    [L, 6], a U-Net over the (time, coefficient) plane

Inference (:func:`audio_to_pose`, SadTalker's ``Audio2Pose.test``): frame 0 is the source image, so its motion
is 0. Frames 1..T-1 are cut into ``(T - 1) // seq_len`` full windows plus, when ``(T - 1) % seq_len = r > 0``,
one extra window made of the *last* ``seq_len`` frames (left-padded with copies of its first frame's audio
feature when fewer exist), of which only the last r outputs are kept. Each window gets its own z. The absolute
pose is ``ref + motion``. SadTalker then smooths the poses along time (:func:`smooth_poses`).

State-dict names are the official ones (SadTalker's ``Audio2Pose`` module), so both released files load strictly:

* ``SadTalker_V0.0.2_256.safetensors`` (or _512): the entries under ``'audio2pose.'``;
* ``auido2pose_00140-model.pth`` (legacy release, note the spelling): a dict whose ``'model'`` entry is the state
  dict, read with ``torch.load(weights_only=True)``.

The state dict also holds the training-only posterior encoder (``netG.encoder``) and the pose-sequence
discriminator (``netD_motion``). They are built here as parameter containers only: this project does not
train Audio2Pose, so they have no forward pass.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from nerffs.audio.audio2exp import AUDIO_DIM, ENCODER_LAYOUT, ConvBlock, check_mel_windows, encode_mel
from nerffs.errors import AudioError
from nerffs.utils.checkpoint import load_sadtalker_network, load_with_counters
from torch_utils.registry import Registry

log = logging.getLogger(__name__)

POSE_DIM = 6
"""Pose coefficients per frame: 3 angles (radians) and 3 translations of the Deep3D face model."""


@dataclass(frozen=True)
class Audio2PoseConfig:
    """Sizes of Audio2Pose. The defaults are SadTalker's ``src/config/auido2pose.yaml`` (presets: :meth:`preset`).

    The audio encoder is fixed (the 13-block Wav2Lip layout of Audio2Exp, 512 features per frame).
    """

    seq_len: int = 32
    """Frames per generated window (``MODEL.CVAE.SEQ_LEN``). A multiple of 8: the U-Net halves time 3 times."""
    latent_size: int = 64
    """Size of z and of the per-style bias (``MODEL.CVAE.LATENT_SIZE``)."""
    num_classes: int = 46
    """Number of pose styles (``DATASET.NUM_CLASSES``); valid styles are 0 .. num_classes - 1."""
    audio_emb_out_size: int = 6
    """Per-frame size of the linear projection of the 512 audio features (``MODEL.CVAE.AUDIO_EMB_OUT_SIZE``)."""
    encoder_hidden: tuple[int, ...] = (128,)
    """Hidden widths of the posterior encoder MLP (``ENCODER_LAYER_SIZES`` = [seq_len * 6, *encoder_hidden])."""
    decoder_hidden: tuple[int, ...] = (128,)
    """Hidden widths of the decoder MLP (``DECODER_LAYER_SIZES`` = [*decoder_hidden, seq_len * 6])."""
    unet_filters: tuple[int, int, int, int] = (32, 64, 128, 256)
    """Channels of the ResUnet levels (fixed in SadTalker's ``ResUnet``)."""
    disc_channels: tuple[int, int, int] = (256, 512, 1024)
    """Channels of the pose-sequence discriminator's three conv layers (fixed in SadTalker)."""

    def __post_init__(self) -> None:
        if self.seq_len < 8 or self.seq_len % 8:
            raise ValueError(f"Audio2PoseConfig.seq_len must be a positive multiple of 8, got {self.seq_len}")
        sizes = {"latent_size": self.latent_size, "num_classes": self.num_classes,
                 "audio_emb_out_size": self.audio_emb_out_size}
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"Audio2PoseConfig.{name} must be positive, got {value}")
        for name in ("encoder_hidden", "decoder_hidden", "unet_filters", "disc_channels"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(f"Audio2PoseConfig.{name} must hold positive sizes, got {getattr(self, name)}")

    @property
    def decoder_in(self) -> int:
        """Decoder MLP input: ref (6) + z (latent) + projected audio (seq_len * audio_emb_out_size)."""
        return POSE_DIM + self.latent_size + self.seq_len * self.audio_emb_out_size

    @property
    def encoder_in(self) -> int:
        """Posterior MLP input: ref (6) + motion U-Net features (seq_len * 6) + projected audio + style bias."""
        return POSE_DIM + self.seq_len * POSE_DIM + self.seq_len * self.audio_emb_out_size + self.latent_size

    @classmethod
    def preset(cls, name: str) -> Audio2PoseConfig:
        """``'official'`` (the released weights) or ``'tiny'`` (random-weight tests: 8-frame windows, narrow nets);
        ``AUDIO2POSE_PRESETS``."""
        return AUDIO2POSE_PRESETS.get(name)


AUDIO2POSE_PRESETS: Registry[Audio2PoseConfig] = Registry("Audio2PoseConfig", {
    "official": Audio2PoseConfig,
    "tiny": lambda: Audio2PoseConfig(seq_len=8, latent_size=8, num_classes=4, encoder_hidden=(16,),
                                     decoder_hidden=(16,), unet_filters=(4, 8, 8, 16), disc_channels=(8, 8, 8)),
})


# --------------------------------------------------------------------------------------------- layers
def _conv3(cin: int, cout: int, stride: int | tuple[int, int] = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1)


class ResidualConv(nn.Module):
    """Pre-activation residual unit: (BN, ReLU, conv3 [stride], BN, ReLU, conv3) + (conv3 [stride], BN)."""

    def __init__(self, cin: int, cout: int, stride: int | tuple[int, int] = 1) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), _conv3(cin, cout, stride),
                                        nn.BatchNorm2d(cout), nn.ReLU(), _conv3(cout, cout))
        self.conv_skip = nn.Sequential(_conv3(cin, cout, stride), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, cin, H, W] -> [B, cout, H / stride_h, W]."""
        return self.conv_block(x) + self.conv_skip(x)


def _upsample_time(channels: int) -> nn.Sequential:
    """Transposed conv doubling the time axis, stored as ``<name>.upsample`` like the official wrapper."""
    return nn.Sequential(OrderedDict(upsample=nn.ConvTranspose2d(channels, channels, (2, 1), stride=(2, 1))))


class ResUnet(nn.Module):
    """Residual U-Net over a one-channel [time, 6] plane; time is halved 3 times, then restored with skips."""

    def __init__(self, filters: tuple[int, int, int, int]) -> None:
        super().__init__()
        f0, f1, f2, f3 = filters
        down = (2, 1)  # the 6 coefficients are never downsampled
        self.input_layer = nn.Sequential(_conv3(1, f0), nn.BatchNorm2d(f0), nn.ReLU(), _conv3(f0, f0))
        self.input_skip = nn.Sequential(_conv3(1, f0))
        self.residual_conv_1 = ResidualConv(f0, f1, down)
        self.residual_conv_2 = ResidualConv(f1, f2, down)
        self.bridge = ResidualConv(f2, f3, down)
        self.upsample_1 = _upsample_time(f3)
        self.up_residual_conv1 = ResidualConv(f3 + f2, f2)
        self.upsample_2 = _upsample_time(f2)
        self.up_residual_conv2 = ResidualConv(f2 + f1, f1)
        self.upsample_3 = _upsample_time(f1)
        self.up_residual_conv3 = ResidualConv(f1 + f0, f0)
        self.output_layer = nn.Sequential(nn.Conv2d(f0, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, L, 6] -> [B, 1, L, 6] in (0, 1); L must be a multiple of 8."""
        x1 = self.input_layer(x) + self.input_skip(x)
        x2 = self.residual_conv_1(x1)
        x3 = self.residual_conv_2(x2)
        y = self.bridge(x3)
        y = self.up_residual_conv1(torch.cat([self.upsample_1(y), x3], dim=1))
        y = self.up_residual_conv2(torch.cat([self.upsample_2(y), x2], dim=1))
        y = self.up_residual_conv3(torch.cat([self.upsample_3(y), x1], dim=1))
        return self.output_layer(y)


def _mlp(sizes: list[int], last: tuple[str, nn.Module]) -> nn.Sequential:
    """Linear layers ``L{i}`` with ReLU ``A{i}`` between them and ``last`` (name, module) after the final one."""
    mlp = nn.Sequential()
    for i, (cin, cout) in enumerate(zip(sizes[:-1], sizes[1:])):
        mlp.add_module(f"L{i}", nn.Linear(cin, cout))
        if i + 2 < len(sizes):
            mlp.add_module(f"A{i}", nn.ReLU())
    mlp.add_module(*last)
    return mlp


class PoseAudioEncoder(nn.Module):
    """The Wav2Lip-style audio encoder (same 13-block layout as Audio2Exp, its own weights): mel window -> 512."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in ENCODER_LAYOUT))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """[N, 80, 16] or [N, 1, 80, 16] mel windows -> [N, 512] audio features."""
        return encode_mel(self.audio_encoder, mel, "Audio2Pose")


class PoseDecoder(nn.Module):
    """The CVAE decoder p(motion | z, style, ref, audio) for one window of ``seq_len`` frames."""

    def __init__(self, cfg: Audio2PoseConfig) -> None:
        super().__init__()
        self.seq_len = cfg.seq_len
        self.resunet = ResUnet(cfg.unet_filters)
        self.MLP = _mlp([cfg.decoder_in, *cfg.decoder_hidden, cfg.seq_len * POSE_DIM], ("sigmoid", nn.Sigmoid()))
        self.pose_linear = nn.Linear(POSE_DIM, POSE_DIM)
        self.linear_audio = nn.Linear(AUDIO_DIM, cfg.audio_emb_out_size)
        self.classbias = nn.Parameter(torch.randn(cfg.num_classes, cfg.latent_size))

    def forward(self, z: torch.Tensor, style: torch.Tensor, ref: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Motion of one window per batch row.

        Args:
            z: [B, latent] noise.
            style: [B] int64 pose-style classes.
            ref: [B, 6] reference (source-image) pose.
            audio: [B, seq_len, 512] audio features of the window's frames.

        Returns:
            [B, seq_len, 6] pose motion relative to ``ref``.
        """
        b = z.shape[0]
        audio_proj = self.linear_audio(audio).reshape(b, -1)
        h = torch.cat([ref, z + self.classbias[style], audio_proj], dim=-1)
        x = self.MLP(h).reshape(b, self.seq_len, POSE_DIM)
        return self.pose_linear(self.resunet(x.unsqueeze(1)).squeeze(1))


class PoseEncoder(nn.Module):
    """Training-only posterior q(z | motion, audio, ref, style): parameters kept for strict loading, no forward."""

    def __init__(self, cfg: Audio2PoseConfig) -> None:
        super().__init__()
        self.resunet = ResUnet(cfg.unet_filters)
        sizes = [cfg.encoder_in, *cfg.encoder_hidden]
        self.MLP = _mlp(sizes, (f"A{len(sizes) - 2}", nn.ReLU()))
        self.linear_means = nn.Linear(sizes[-1], cfg.latent_size)
        self.linear_logvar = nn.Linear(sizes[-1], cfg.latent_size)
        self.linear_audio = nn.Linear(AUDIO_DIM, cfg.audio_emb_out_size)
        self.classbias = nn.Parameter(torch.randn(cfg.num_classes, cfg.latent_size))


class PoseCVAE(nn.Module):
    """Container of the CVAE halves under the official names ``encoder`` / ``decoder``."""

    def __init__(self, cfg: Audio2PoseConfig) -> None:
        super().__init__()
        self.encoder = PoseEncoder(cfg)
        self.decoder = PoseDecoder(cfg)


class ConvNorm1d(nn.Module):
    """Conv1d without bias + BatchNorm1d (discriminator unit; parameters only)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, padding=1, bias=False)
        self.norm = nn.BatchNorm1d(cout)


class PoseDiscriminator(nn.Module):
    """Training-only pose-sequence discriminator: parameters kept for strict loading, no forward."""

    def __init__(self, cfg: Audio2PoseConfig) -> None:
        super().__init__()
        c1, c2, c3 = cfg.disc_channels
        self.seq = nn.Sequential(ConvNorm1d(POSE_DIM, c1, 4, 2), ConvNorm1d(c1, c2, 4, 2), ConvNorm1d(c2, c3, 3, 1),
                                 nn.Conv1d(c3, 1, 3, 1, padding=1))


# ---------------------------------------------------------------------------------------------- model
class Audio2Pose(nn.Module):
    """SadTalker's Audio2Pose with the official parameter names: ``audio_encoder``, ``netG``, ``netD_motion``."""

    def __init__(self, cfg: Audio2PoseConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or Audio2PoseConfig()
        self.audio_encoder = PoseAudioEncoder()
        self.netG = PoseCVAE(self.cfg)
        self.netD_motion = PoseDiscriminator(self.cfg)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """[N, 80, 16] (or [N, 1, 80, 16]) mel windows -> [N, 512] per-frame audio features."""
        return self.audio_encoder(mel)

    def decode(self, audio: torch.Tensor, ref: torch.Tensor, style: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """[B, seq_len, 512] features, [B, 6] ref, [B] styles, [B, latent] z -> [B, seq_len, 6] motion."""
        return self.netG.decoder(z, style, ref, audio)

    def forward(self, mel: torch.Tensor, ref: torch.Tensor, style: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Motion of B windows.

        Args:
            mel: [B, seq_len, 80, 16] mel windows of each window's frames.
            ref: [B, 6] reference pose. style: [B] int64 classes. z: [B, latent] noise.

        Returns:
            [B, seq_len, 6] pose motion relative to ``ref``.
        """
        b, length = mel.shape[:2]
        audio = self.encode(mel.reshape(b * length, *mel.shape[2:])).reshape(b, length, AUDIO_DIM)
        return self.decode(audio, ref, style, z)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], cfg: Audio2PoseConfig | None = None, *,
                        what: str = "Audio2Pose checkpoint") -> Audio2Pose:
        """Build the network and load ``state_dict`` strictly; returns it in eval mode.

        Absent BatchNorm ``num_batches_tracked`` counters (training-only) are filled with 0.
        """
        return load_with_counters(cls(cfg), state_dict, what=what)


def load_audio2pose(path: str | os.PathLike, device: torch.device | str = "cpu") -> Audio2Pose:
    """Audio2Pose in eval mode on ``device`` from the SadTalker bundle (``*.safetensors``, its ``'audio2pose.'`` entries) or
    ``auido2pose_00140-model.pth`` (``*.pth``); see ``nerffs.utils.checkpoint.load_sadtalker_network`` for the errors."""
    return load_sadtalker_network(Audio2Pose(), path, "audio2pose", "auido2pose_00140-model.pth", device)


# ------------------------------------------------------------------------------------------ inference
def window_layout(num_frames: int, seq_len: int) -> tuple[int, int]:
    """(full windows, remainder) over the T - 1 frames after the reference frame: divmod(T - 1, seq_len)."""
    return divmod(max(num_frames - 1, 0), seq_len)


def sample_noise(num_windows: int, latent_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One z ~ N(0, I) per window, drawn window by window as SadTalker does (``torch.randn(1, latent)`` each).

    With ``generator=None`` the draws come from torch's global CPU generator, so after ``torch.manual_seed(s)``
    they equal SadTalker's. Returns [num_windows, latent] on the generator's device (CPU by default).
    """
    device = generator.device if generator is not None else torch.device("cpu")
    draws = [torch.randn(1, latent_size, generator=generator, device=device) for _ in range(num_windows)]
    return torch.cat(draws) if draws else torch.zeros(0, latent_size, device=device)


def window_features(audio: torch.Tensor, seq_len: int) -> torch.Tensor:
    """Cut per-frame features of frames 1..T-1 into the generation windows (module docstring).

    Args:
        audio: [M, C] features of the M = T - 1 frames after the reference frame (M >= 1).

    Returns:
        [W, seq_len, C]: the full windows, then (if M % seq_len) the last seq_len frames, left-padded with
        copies of the first of them when M < seq_len.
    """
    full, rem = divmod(audio.shape[0], seq_len)
    windows = [audio[:full * seq_len].reshape(full, seq_len, audio.shape[1])]
    if rem:
        last = audio[-seq_len:]
        pad = last[:1].expand(seq_len - last.shape[0], -1)
        windows.append(torch.cat([pad, last]).unsqueeze(0))
    return torch.cat(windows)


def assemble_motion(motion: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[W, seq_len, 6] window motions -> [T, 6]: zero for frame 0, full windows, then the remainder's tail."""
    seq_len = motion.shape[1]
    full, rem = window_layout(num_frames, seq_len)
    parts = [motion.new_zeros(1, POSE_DIM), motion[:full].reshape(full * seq_len, POSE_DIM)]
    if rem:
        parts.append(motion[full, seq_len - rem:])
    return torch.cat(parts)


def _check_inputs(mel: torch.Tensor, ref: torch.Tensor, style: int, num_classes: int) -> None:
    check_mel_windows(mel)
    if ref.numel() != POSE_DIM or ref.ndim not in (1, 2):
        raise AudioError(f"reference pose must have shape [{POSE_DIM}] or [1, {POSE_DIM}] (3 angles, 3 "
                         f"translations), got {tuple(ref.shape)}")
    if not torch.isfinite(ref).all():
        raise AudioError("reference pose contains NaN or infinite values; check the 3DMM fit")
    if isinstance(style, bool) or not isinstance(style, (int, np.integer)) or not 0 <= style < num_classes:
        raise AudioError(f"pose style must be an integer in [0, {num_classes}), got {style!r}")


def audio_to_pose(model: Audio2Pose, mel_windows: torch.Tensor | np.ndarray, ref_pose: torch.Tensor | np.ndarray,
                  style: int, *, generator: torch.Generator | None = None, encoder_batch: int = 64) -> torch.Tensor:
    """Head pose for every video frame, sampled as SadTalker's ``Audio2Pose.test`` (module docstring).

    The audio encoder runs once over frames 1..T-1 in batches, and all windows are decoded in one batch (eval
    mode makes rows independent); the result equals the window-by-window loop up to float summation order.

    Args:
        model: Audio2Pose in eval mode (its device is used for the computation).
        mel_windows: [T, 80, 16] mel windows from :func:`nerffs.audio.mel_windows`; frame 0 is the source image.
        ref_pose: [6] or [1, 6] pose of the source image (Deep3D angles 224:227, translation 254:257).
        style: pose-style class in [0, num_classes) (46 classes in the released model).
        generator: source of the per-window noise (see :func:`sample_noise`; None: the global generator).
        encoder_batch: frames per batch of the audio encoder (bounds memory for long audio).

    Returns:
        poses: [T, 6] float32 absolute poses on the model's device; poses[0] == ref_pose.

    Raises:
        AudioError: misshaped inputs or a style out of range. ValueError: the model is in training mode.
    """
    if model.training:
        raise ValueError("Audio2Pose is in training mode; call model.eval() first (BatchNorm must use running "
                         "statistics)")
    device = model.netG.decoder.pose_linear.weight.device
    mel = torch.as_tensor(mel_windows).to(device, torch.float32)
    ref = torch.as_tensor(ref_pose).to(device, torch.float32)
    _check_inputs(mel, ref, style, model.cfg.num_classes)
    ref = ref.reshape(POSE_DIM)
    num_frames, seq_len = len(mel), model.cfg.seq_len
    full, rem = window_layout(num_frames, seq_len)
    num_windows = full + (rem > 0)
    z = sample_noise(num_windows, model.cfg.latent_size, generator).to(device)
    if num_windows == 0:  # a single frame: the source pose itself
        return ref.unsqueeze(0).clone()
    with torch.no_grad():
        audio = torch.cat([model.encode(mel[i:i + encoder_batch]) for i in range(1, num_frames, encoder_batch)])
        windows = window_features(audio, seq_len)  # [W, seq_len, 512]
        styles = torch.full((num_windows,), int(style), dtype=torch.long, device=device)
        motion = model.decode(windows, ref.expand(num_windows, POSE_DIM), styles, z)
    log.debug("Audio2Pose: %d frames, %d windows (remainder %d), style %d", num_frames, num_windows, rem, style)
    return ref + assemble_motion(motion, num_frames)


def smooth_poses(poses: torch.Tensor, window: int = 13, order: int = 2) -> torch.Tensor:
    """SadTalker's post-filter of the sampled poses: Savitzky-Golay along time (scipy, ``mode='interp'``).

    Sequences shorter than ``window`` use the largest odd window that fits; sequences too short for a
    polynomial of this order (T <= order) are returned unchanged (SadTalker raises there).

    Args:
        poses: [T, 6].

    Returns:
        [T, 6] smoothed poses (same device and dtype).
    """
    from scipy.signal import savgol_filter

    length = poses.shape[0]
    win = window if length >= window else (length - 1) // 2 * 2 + 1
    if win <= order:
        return poses.clone()
    out = savgol_filter(poses.detach().cpu().double().numpy(), win, order, axis=0)
    return torch.from_numpy(out).to(poses.device, poses.dtype)
