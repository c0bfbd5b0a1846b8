"""scripts.invert without the LPIPS backbones (issue #16, item 7): a smoke run falls back to random trunks
with a warning, as `talk` falls back; a run with real weights is refused up front with the fetch command."""
from __future__ import annotations

import logging

import pytest

from nerffs.inversion.photo import InvertRequest, _check_lpips
from scripts.invert import main


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("NERFFS_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path


def test_smoke_runs_fall_back_to_random_trunks_with_a_warning(no_weights, caplog):
    with caplog.at_level(logging.WARNING, logger="nerffs.inversion.photo"):
        assert _check_lpips(InvertRequest(image=no_weights / "a.png", out=no_weights / "o"), False) is True
    assert "RANDOM trunk weights" in caplog.text and "not perceptual" in caplog.text
    assert "python -m scripts.download_weights lpips_vgg16_backbone lpips_alexnet_backbone" in caplog.text
    smoke_preset = InvertRequest(image=no_weights / "a.png", out=no_weights / "o", weights=no_weights / "g.pkl")
    assert _check_lpips(smoke_preset, True) is True


def test_real_weights_without_backbones_are_refused_before_loading(no_weights, capsys):
    from PIL import Image

    image = no_weights / "face.png"
    Image.new("RGB", (64, 64)).save(image)
    fake = no_weights / "ffhq_512.pkl"
    fake.write_bytes(b"not a pickle")  # never read: the refusal comes first
    assert main(["--image", str(image), "--out", str(no_weights / "out"), "--weights", str(fake),
                 "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: PTI with real weights needs the LPIPS backbones")
    assert "vgg16-397923af.pth" in err and "download_weights lpips_vgg16_backbone" in err
    assert not (no_weights / "out").exists()
