"""Chunked nearest-neighbour search against brute force."""
import pytest
import torch

from nerffs.deform.knn import nearest_indices


@pytest.mark.parametrize("chunk", [1, 7, 100000])
def test_matches_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    q, r = torch.randn(2, 50, 3, generator=g, dtype=torch.float64), torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    ref = torch.cdist(q, r).argmin(dim=-1)
    torch.testing.assert_close(nearest_indices(q, r, chunk=chunk), ref)


def test_points_on_refs_map_to_themselves():
    r = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    assert nearest_indices(r, r).tolist() == [[0, 1, 2]]


def test_errors():
    with pytest.raises(ValueError, match="at least one"):
        nearest_indices(torch.zeros(1, 3, 2), torch.zeros(1, 0, 2))
    with pytest.raises(ValueError, match=r"\[B, N, D\]"):
        nearest_indices(torch.zeros(3, 2), torch.zeros(1, 3, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tree_path_equals_the_brute_force_path(dtype, monkeypatch):
    """Large CPU problems go through the k-d tree; the answer is the brute-force one (at exact ties, where the
    brute force's own rounding decides, a reference at the same distance)."""
    from nerffs.deform import knn

    g = torch.Generator().manual_seed(1)
    refs = torch.rand(1, 3000, 2, generator=g, dtype=dtype) * 0.2 - 0.1
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.1, 0.1, 41), torch.linspace(-0.1, 0.1, 41),
                                      indexing="ij"), -1).reshape(1, -1, 2).to(dtype)
    refs = torch.cat([refs, grid, grid[:, :5]], dim=1)          # exact duplicates: ties to the lowest index
    queries = torch.cat([torch.rand(1, 6000, 2, generator=g, dtype=dtype) * 0.24 - 0.12, grid], dim=1)
    brute = knn._brute_nearest(queries, refs, 8192)
    monkeypatch.setattr(knn, "TREE_MIN_WORK", 1)
    tree = nearest_indices(queries, refs)
    dist = lambda idx: (refs[0, idx[0]] - queries[0]).norm(dim=-1)  # noqa: E731
    same = tree == brute
    assert same.float().mean() > 0.995                  # differences only at (near-)ties decided by rounding
    rounding = 0.0 if dtype == torch.float64 else 1e-6
    assert torch.allclose(dist(tree), dist(brute), rtol=0, atol=rounding)
