"""Chunked nearest-neighbour search: for every query point, the index of its nearest reference point.

This is the only place the deformation searches neighbours (paper Eq. 7 matches every NeRF sample to its
nearest control point), so a faster kernel (a grid or a CUDA kNN) can be swapped in here alone. Memory is
bounded by ``chunk * M`` distances per step instead of ``N * M``.
"""
from __future__ import annotations

import torch


def nearest_indices(queries: torch.Tensor, refs: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest reference point (Euclidean) for each query.

    Args:
        queries: [B, N, D] query points.
        refs: [B, M, D] reference points (M >= 1).
        chunk: queries processed per step.

    Returns:
        [B, N] int64 indices into ``refs``; ties resolve to the lowest index.
    """
    if queries.ndim != 3 or refs.ndim != 3 or queries.shape[0] != refs.shape[0] or queries.shape[2] != refs.shape[2]:
        raise ValueError(f"expected queries [B, N, D] and refs [B, M, D], got {tuple(queries.shape)} and "
                         f"{tuple(refs.shape)}")
    if refs.shape[1] == 0:
        raise ValueError("refs must contain at least one point")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    out = torch.empty(queries.shape[:2], dtype=torch.long, device=queries.device)
    ref_sq = refs.square().sum(-1).unsqueeze(1)  # [B, 1, M]
    for start in range(0, queries.shape[1], chunk):
        q = queries[:, start:start + chunk]
        # |q - r|^2 = |q|^2 - 2 q.r + |r|^2; |q|^2 is constant per query, so it does not change the argmin.
        d = ref_sq - 2 * torch.bmm(q, refs.transpose(1, 2))
        out[:, start:start + chunk] = d.argmin(dim=-1)
    return out
