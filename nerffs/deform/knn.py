"""Nearest-neighbour search: for every query point, the index of its nearest reference point.

This is the only place the deformation searches neighbours (paper Eq. 7 matches every NeRF sample to its
nearest control point). Two exact paths with the same answer:

* brute force (any device, and small problems): chunked ``|r|^2 - 2 q.r`` in the queries' dtype, argmin with
  ties to the lowest index; memory is bounded by ``chunk * M`` distances per step;
* k-d tree (large problems on the CPU, e.g. every frame of a moving camera): scipy's ``cKDTree`` proposes the
  ``CANDIDATES`` nearest references of each query, which are then ranked with the brute-force formula above,
  so the result equals the brute-force path (unless a query's brute-force winner, found with float rounding,
  is not among its true nearest candidates, which needs a rounding error larger than the gap to the fifth
  neighbour).
"""
from __future__ import annotations

import numpy as np
import torch

CANDIDATES = 4
TREE_MIN_WORK = 2**24
"""Queries x references above which the CPU path uses the k-d tree (brute force is faster below)."""


def nearest_indices(queries: torch.Tensor, refs: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Index of the nearest reference point (Euclidean) for each query.

    Args:
        queries: [B, N, D] query points.
        refs: [B, M, D] reference points (M >= 1).
        chunk: queries processed per step of the brute-force path.

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
    n, m = queries.shape[1], refs.shape[1]
    if queries.device.type == "cpu" and m > CANDIDATES and n * m >= TREE_MIN_WORK:
        return torch.stack([_tree_nearest(q, r) for q, r in zip(queries, refs)])
    return _brute_nearest(queries, refs, chunk)


def _brute_nearest(queries: torch.Tensor, refs: torch.Tensor, chunk: int) -> torch.Tensor:
    out = torch.empty(queries.shape[:2], dtype=torch.long, device=queries.device)
    ref_sq = refs.square().sum(-1).unsqueeze(1)  # [B, 1, M]
    for start in range(0, queries.shape[1], chunk):
        q = queries[:, start:start + chunk]
        # |q - r|^2 = |q|^2 - 2 q.r + |r|^2; |q|^2 is constant per query, so it does not change the argmin.
        d = ref_sq - 2 * torch.bmm(q, refs.transpose(1, 2))
        out[:, start:start + chunk] = d.argmin(dim=-1)
    return out


def _tree_nearest(queries: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """[N, D], [M, D] (CPU) -> [N]: k-d tree candidates, ranked exactly as the brute-force path ranks them."""
    from scipy.spatial import cKDTree

    q64 = queries.detach().numpy().astype(np.float64)
    _, cand = cKDTree(refs.detach().numpy().astype(np.float64)).query(q64, k=CANDIDATES)
    cand = torch.from_numpy(np.sort(cand, axis=1))              # ascending, so argmin ties keep the lowest index
    r = refs[cand]                                              # [N, K, D]
    score = r.square().sum(-1) - 2 * torch.einsum("nd,nkd->nk", queries, r)
    return cand.gather(1, score.argmin(dim=1, keepdim=True))[:, 0]
