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
