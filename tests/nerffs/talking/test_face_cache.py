"""Per-face cache: exact round trips, keys that follow the settings, corruption detection."""
import numpy as np
import torch

from nerffs.face3d.coeffs import FaceCoeffs
from nerffs.preprocess.align import AlignedFace
from nerffs.talking.cache import FaceCache
from nerffs.talking.controls import ControlPoints
from nerffs.talking.loop import LoopConfig, Reference
from nerffs.utils.cache import content_key, weights_fingerprint
from stylenerf import SampleDepths


def _reference():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return Reference(ws=r(1, 19, 8), bg_latent=r(1, 4), depths=SampleDepths(r(1, 16, 6), r(1, 16, 6)),
                     bg_feat=r(1, 16, 7), coeffs=FaceCoeffs.from_vector(r(1, 257)),
                     controls=ControlPoints(r(1, 30, 2), n_face=25), image=r(1, 3, 8, 8),
                     official_indices={"coarse": torch.arange(96), "fine": torch.arange(96).flip(0)},
                     fit_error_px=0.25)


def test_reference_round_trip_is_exact(tmp_path):
    cache, ref = FaceCache(tmp_path), _reference()
    cache.save_reference("k1", ref)
    back = cache.load_reference("k1")
    for name in ("ws", "bg_latent", "bg_feat", "image"):
        torch.testing.assert_close(getattr(back, name), getattr(ref, name), rtol=0, atol=0)
    torch.testing.assert_close(back.depths.fine, ref.depths.fine, rtol=0, atol=0)
    torch.testing.assert_close(back.coeffs.to_vector(), ref.coeffs.to_vector(), rtol=0, atol=0)
    assert back.controls.n_face == 25 and back.fit_error_px == 0.25
    assert torch.equal(back.official_indices["fine"], ref.official_indices["fine"])


def test_aligned_round_trip(tmp_path):
    a = AlignedFace(image=np.arange(48, dtype=np.uint8).reshape(4, 4, 3), quad=np.ones((4, 2)), matrix=np.eye(3),
                    inverse=np.eye(3), source_shape=(10, 12), points=np.zeros((68, 2)))
    FaceCache(tmp_path).save_aligned("a", a)
    b = FaceCache(tmp_path).load_aligned("a")
    assert np.array_equal(b.image, a.image) and b.source_shape == (10, 12) and np.array_equal(b.matrix, a.matrix)


def test_corrupted_entry_is_detected_removed_and_missing_is_none(tmp_path):
    cache = FaceCache(tmp_path)
    cache.save_reference("k", _reference())
    data = tmp_path / "reference-k.safetensors"
    raw = bytearray(data.read_bytes())
    raw[-3] ^= 0xFF
    data.write_bytes(bytes(raw))
    assert cache.load_reference("k") is None
    assert not data.exists() and not (tmp_path / "reference-k.json").exists()
    assert cache.load_reference("never-written") is None


def test_interrupted_entry_without_its_record_is_removed(tmp_path):
    cache = FaceCache(tmp_path)
    cache.save_reference("k", _reference())
    (tmp_path / "reference-k.json").unlink()  # the record is written last: a run killed before it
    assert cache.load_reference("k") is None
    assert not (tmp_path / "reference-k.safetensors").exists()


def test_default_root_follows_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("NERFFS_CACHE", str(tmp_path / "c"))
    assert FaceCache().root == tmp_path / "c" / "faces"
    monkeypatch.setenv("NERFFS_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert FaceCache().root == tmp_path / "home" / ".cache" / "nerffs" / "faces"


def test_keys_follow_content_and_settings():
    img = np.zeros((4, 4, 3), np.uint8)
    base = content_key("reference", img, LoopConfig(), 0)
    assert base == content_key("reference", img.copy(), LoopConfig(), 0)
    assert base != content_key("reference", img + 1, LoopConfig(), 0)
    assert base != content_key("reference", img, LoopConfig(vertex_stride=2), 0)
    assert base != content_key("reference", img, LoopConfig(), 1)
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    assert weights_fingerprint(a) != weights_fingerprint(b)
    b.load_state_dict(a.state_dict())
    assert weights_fingerprint(a) == weights_fingerprint(b)
