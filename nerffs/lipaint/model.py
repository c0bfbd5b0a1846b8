"""LipaintNet (paper section 4.4; spec-pipeline.md section 7, spec-stylenerf.md 7.5).

w' = w + fc4(relu(fc3(relu(fc2(relu(fc1(cat[w, exp]))))))), plain ``nn.Linear`` layers with the official
names ``fc1..fc4`` (checkpoint ``LipaintNet.pt``, entry ``model_state_dict``). The pipeline feeds
w = ws[:, 0] and repeats w' over the NeRF styles; the upsampler styles are kept.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from nerffs.errors import CheckpointError
from nerffs.utils.checkpoint import load_strict, read_state_dict


class LipaintNet(nn.Module):
    """Residual W-space mapper: (w [B, w_dim], exp [B, exp_dim]) -> w' [B, w_dim]."""

    def __init__(self, w_dim: int = 512, exp_dim: int = 64, hidden: int = 512) -> None:
        super().__init__()
        if hidden != w_dim:
            # fc4 maps back to w_dim; the official net has hidden == w_dim == 512.
            raise ValueError(f"LipaintNet needs hidden == w_dim (official: 512), got {hidden} and {w_dim}")
        self.w_dim, self.exp_dim = w_dim, exp_dim
        self.fc1 = nn.Linear(w_dim + exp_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, hidden)
        self.fc4 = nn.Linear(hidden, w_dim)
        for fc in (self.fc1, self.fc2, self.fc3, self.fc4):
            nn.init.xavier_uniform_(fc.weight)

    def forward(self, w: torch.Tensor, exp: torch.Tensor) -> torch.Tensor:
        """w [B, w_dim], exp [B, exp_dim] -> w' [B, w_dim] (concatenated in the order w, exp)."""
        if w.ndim != 2 or w.shape[1] != self.w_dim or exp.shape != (w.shape[0], self.exp_dim):
            raise ValueError(f"LipaintNet expects w [B, {self.w_dim}] and exp [B, {self.exp_dim}], got "
                             f"{tuple(w.shape)} and {tuple(exp.shape)}")
        h = torch.relu(self.fc1(torch.cat([w, exp.to(w.dtype)], dim=1)))
        h = torch.relu(self.fc2(h))
        h = torch.relu(self.fc3(h))
        return w + self.fc4(h)

    def mouth_styles(self, ws: torch.Tensor, exp: torch.Tensor, num_nerf_ws: int) -> torch.Tensor:
        """Styles of the LipaintNet pass: w' repeated over the NeRF slots, upsampler styles unchanged.

        Args:
            ws: [B or 1, num_ws, w_dim] identity styles.
            exp: [B, exp_dim] expression per frame.
            num_nerf_ws: number of NeRF style slots (10 for FFHQ).

        Returns:
            [B, num_ws, w_dim].
        """
        return mouth_styles(self, ws, exp, num_nerf_ws)


def mouth_styles(mapper, ws: torch.Tensor, exp: torch.Tensor, num_nerf_ws: int) -> torch.Tensor:
    """[mapper(ws[:, 0], exp)] x ``num_nerf_ws`` followed by the identity's upsampler styles.

    Args:
        mapper: (w [B, w_dim], exp [B, exp_dim]) -> w' [B, w_dim] (LipaintNet, or a stand-in).
        ws: [B or 1, num_ws, w_dim]; exp: [B, exp_dim].

    Returns:
        [B, num_ws, w_dim].
    """
    b = exp.shape[0]
    ws = ws.expand(b, -1, -1)
    w_mouth = mapper(ws[:, 0], exp)
    return torch.cat([w_mouth.unsqueeze(1).expand(-1, num_nerf_ws, -1), ws[:, num_nerf_ws:]], dim=1)


def load_lipaint(path: str | os.PathLike, device: torch.device | str = "cpu") -> LipaintNet:
    """Load ``LipaintNet.pt`` (dict with ``model_state_dict``) or our ``.safetensors`` strictly, without
    executing code; sizes are read from the tensor shapes."""
    p = os.fspath(path)
    key = None if p.endswith(".safetensors") else "model_state_dict"
    state = read_state_dict(p, key=key, what="LipaintNet checkpoint")
    if "fc1.weight" not in state or "fc4.weight" not in state:
        raise CheckpointError(f"LipaintNet checkpoint at {p} has no fc1/fc4 weights; is it the right file?")
    w_dim = state["fc4.weight"].shape[0]
    net = LipaintNet(w_dim=w_dim, exp_dim=state["fc1.weight"].shape[1] - w_dim, hidden=state["fc1.weight"].shape[0])
    load_strict(net, state, what=f"LipaintNet checkpoint at {p}")
    return net.eval().requires_grad_(False).to(device)
