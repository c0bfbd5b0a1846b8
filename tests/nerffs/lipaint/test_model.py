"""LipaintNet shapes, residual form and strict loading of the official checkpoint layout."""
import pytest
import torch

from nerffs.errors import CheckpointError
from nerffs.lipaint import LipaintNet, load_lipaint

OFFICIAL = {"fc1.weight": (512, 576), "fc1.bias": (512,), "fc2.weight": (512, 512), "fc2.bias": (512,),
            "fc3.weight": (512, 512), "fc3.bias": (512,), "fc4.weight": (512, 512), "fc4.bias": (512,)}


def test_official_names_shapes_and_count():
    net = LipaintNet()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == OFFICIAL
    assert sum(p.numel() for p in net.parameters()) == 1_083_392


def test_residual_and_explicit_formula():
    net = LipaintNet(w_dim=8, exp_dim=3, hidden=8)
    w, e = torch.randn(2, 8), torch.randn(2, 3)
    h = torch.relu(net.fc1(torch.cat([w, e], 1)))
    h = torch.relu(net.fc3(torch.relu(net.fc2(h))))
    torch.testing.assert_close(net(w, e), w + net.fc4(h))
    with torch.no_grad():
        net.fc4.weight.zero_(), net.fc4.bias.zero_()
    torch.testing.assert_close(net(w, e), w)


def test_mouth_styles_replace_only_nerf_slots():
    net = LipaintNet(w_dim=8, exp_dim=3, hidden=8)
    ws = torch.randn(1, 15, 8)
    out = net.mouth_styles(ws, torch.randn(4, 3), num_nerf_ws=10)
    assert out.shape == (4, 15, 8)
    torch.testing.assert_close(out[:, 10:], ws[:, 10:].expand(4, -1, -1))
    torch.testing.assert_close(out[:, 0], out[:, 9])


def test_load_official_pt_and_errors(tmp_path):
    net = LipaintNet()
    path = tmp_path / "LipaintNet.pt"
    torch.save({"model_state_dict": net.state_dict(), "epoch": 3}, path)
    loaded = load_lipaint(path)
    w, e = torch.randn(1, 512), torch.randn(1, 64)
    torch.testing.assert_close(loaded(w, e), net(w, e))
    bad = dict(net.state_dict())
    bad["fc2.weight"] = torch.zeros(512, 500)
    torch.save({"model_state_dict": bad}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_lipaint(tmp_path / "bad.pt")
    torch.save({"state": net.state_dict()}, tmp_path / "nokey.pt")
    with pytest.raises(CheckpointError, match="model_state_dict"):
        load_lipaint(tmp_path / "nokey.pt")
