"""Audio2Exp: mel window + reference expression + blink -> 64 expression coefficients (spec-pipeline.md 2.1-2.3).

This is SadTalker's ExpNet (``SimpleWrapperV2``): a Wav2Lip-style convolutional audio encoder (13 blocks of
conv -> BatchNorm -> (+ input) -> ReLU) that maps a [1, 80, 16] mel window to a 512-vector, followed by one
linear layer ``mapping1`` on the concatenation [audio (512), reference expression (64), blink ratio (1)].
The output is the absolute expression (no residual to the reference).

Parameter names follow the official state dict (spec 2.2: ``audio_encoder.{j}.conv_block.{0,1}.*``,
``mapping1.*``; 93 entries) so both released formats load strictly (spec 2.3):

* ``SadTalker_V0.0.2_256.safetensors``: every entry prefixed with ``'audio2exp.'`` among other sub-models;
* ``auido2exp_00300-model.pth``: a dict whose ``'model'`` entry is the state dict (read with
  ``torch.load(weights_only=True)``; the optimizer state next to it is ignored).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from nerffs.errors import AudioError
from nerffs.utils.checkpoint import load_sadtalker_network, load_with_counters


AUDIO_DIM = 512
EXP_DIM = 64
MEL_BANDS = 80
MEL_WINDOW = 16

# Encoder blocks (spec 2.1 table): (cin, cout, kernel, stride, padding, residual).
ENCODER_LAYOUT: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),
)


class ConvBlock(nn.Module):
    """Conv2d (with bias) -> BatchNorm2d -> optional residual add -> ReLU (residual added before the ReLU).

    The conv and the norm live in ``conv_block`` (indices 0 and 1) to match the official names.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int | tuple[int, int], padding: int,
                 residual: bool = False) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, cin, H, W] -> [N, cout, H', W']."""
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return torch.relu(out)


def encode_mel(encoder: nn.Module, mel: torch.Tensor, who: str) -> torch.Tensor:
    """Run the Wav2Lip-style ``encoder`` (``ENCODER_LAYOUT``) of ``who`` on [N, 80, 16] or [N, 1, 80, 16] mel
    windows -> [N, 512] audio features; other shapes raise ValueError naming ``who``."""
    if mel.ndim == 3:
        mel = mel.unsqueeze(1)
    if mel.ndim != 4 or tuple(mel.shape[1:]) != (1, MEL_BANDS, MEL_WINDOW):
        raise ValueError(f"{who} expects mel windows [N, 1, {MEL_BANDS}, {MEL_WINDOW}], got {tuple(mel.shape)}")
    return encoder(mel).reshape(mel.shape[0], AUDIO_DIM)


def check_mel_windows(mel: torch.Tensor) -> None:
    """Raise AudioError unless ``mel`` is [T, 80, 16] with T >= 1 (the per-frame windows of ``mel_windows``)."""
    if mel.ndim != 3 or tuple(mel.shape[1:]) != (MEL_BANDS, MEL_WINDOW) or len(mel) < 1:
        raise AudioError(f"mel windows must have shape [T, {MEL_BANDS}, {MEL_WINDOW}] with T >= 1, got "
                         f"{tuple(mel.shape)}; build them with nerffs.audio.mel_windows")


class Audio2Exp(nn.Module):
    """SadTalker's ExpNet with the official parameter names (spec 2.1-2.2).

    2,849,664 trainable parameters; 2,854,093 state-dict elements including BatchNorm buffers.
    """

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in ENCODER_LAYOUT))
        self.mapping1 = nn.Linear(AUDIO_DIM + EXP_DIM + 1, EXP_DIM)
        nn.init.zeros_(self.mapping1.bias)

    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """Audio features of mel windows.

        Args:
            mel: [N, 80, 16] or [N, 1, 80, 16] mel windows (values in [-4, 4]).

        Returns:
            [N, 512] audio features.
        """
        return encode_mel(self.audio_encoder, mel, "Audio2Exp")

    def decode(self, audio: torch.Tensor, ref: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """The 577 -> 64 linear step on [audio, ref, ratio].

        Args:
            audio: [N, 512] features from :meth:`encode`.
            ref: [N, 64] reference expression.
            ratio: [N, 1] (or [N]) eye-blink input.

        Returns:
            [N, 64] absolute expression coefficients.
        """
        n = audio.shape[0]
        return self.mapping1(torch.cat([audio, ref.reshape(n, EXP_DIM), ratio.reshape(n, 1)], dim=1))

    def forward(self, mel: torch.Tensor, ref: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
        """One expression per mel window.

        Args:
            mel: [N, 1, 80, 16] or [N, 80, 16] mel windows.
            ref: [N, 64] reference expression.
            ratio: [N, 1] (or [N]) eye-blink input (0 = none).

        Returns:
            [N, 64] absolute expression coefficients.
        """
        return self.decode(self.encode(mel), ref, ratio)

    def mapping_parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Split ``mapping1`` by input block.

        Returns:
            (W_audio [64, 512], W_ref [64, 64], w_ratio [64], bias [64]) with
            y = W_audio a + W_ref ref + w_ratio r + bias.
        """
        w = self.mapping1.weight
        return (w[:, :AUDIO_DIM], w[:, AUDIO_DIM:AUDIO_DIM + EXP_DIM], w[:, AUDIO_DIM + EXP_DIM],
                self.mapping1.bias)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor], *, what: str = "Audio2Exp checkpoint"
                        ) -> Audio2Exp:
        """Build the network and load ``state_dict`` strictly; returns it in eval mode.

        BatchNorm ``num_batches_tracked`` counters may be absent (spec 2.3: possibly not stored in the
        safetensors); they only matter for training and are filled with 0.
        """
        return load_with_counters(cls(), state_dict, what=what)


def load_audio2exp(path: str | os.PathLike, device: torch.device | str = "cpu") -> Audio2Exp:
    """Audio2Exp in eval mode on ``device`` from the SadTalker bundle (``*.safetensors``, its ``'audio2exp.'`` entries) or
    ``auido2exp_00300-model.pth`` (``*.pth``); see ``nerffs.utils.checkpoint.load_sadtalker_network`` for the errors."""
    return load_sadtalker_network(Audio2Exp(), path, "audio2exp", "auido2exp_00300-model.pth", device)
