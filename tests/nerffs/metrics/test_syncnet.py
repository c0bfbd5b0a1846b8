"""SyncNet (random weights): embedding shapes, strict load round trip, LSE on a short clip; skip message."""
import numpy as np
import pytest
import torch

from nerffs.errors import WeightsMissingError
from nerffs.metrics.syncnet import SyncNet, load_syncnet, lse_scores, syncnet_or_none


def test_shapes_roundtrip_and_lse(tmp_path):
    model = SyncNet().eval()
    assert model.forward_aud(torch.zeros(2, 1, 13, 20)).shape == (2, 1024)
    path = tmp_path / "syncnet_v2.model"
    torch.save(model.state_dict(), path)
    loaded = load_syncnet(path)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 255, (8, 224, 224, 3), dtype=np.uint8)
    score = lse_scores(loaded, faces, rng.normal(size=16000).astype(np.float32), 16000, vshift=2)
    assert score.dists.shape == (5,) and np.isfinite(score.lse_d) and score.lse_c >= 0 and -2 <= score.offset <= 2


def test_missing_weights_skip(tmp_path):
    with pytest.raises(WeightsMissingError, match="LSE-D/LSE-C are skipped"):
        load_syncnet(tmp_path / "nope.model")
    assert syncnet_or_none(tmp_path / "nope.model") is None
