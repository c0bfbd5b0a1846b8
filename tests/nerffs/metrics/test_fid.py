"""FID: our Inception network reproduces the shipped TorchScript features; a set against itself is ~0 and
the distance grows with added noise; the low-rank trace used with few samples equals the ``sqrtm`` formula."""
import warnings

import numpy as np
import pytest
import torch

from nerffs.errors import WeightsMissingError
from nerffs.examples import example_photo
from nerffs.preprocess.image import load_image


@pytest.fixture(scope="module")
def inception():
    from nerffs.metrics.fid import load_inception

    try:
        return load_inception()
    except WeightsMissingError as exc:
        pytest.skip(str(exc))


def test_matches_torchscript_reference(inception):
    from nerffs.metrics.fid import default_inception_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = torch.jit.load(str(default_inception_path())).eval()
    x = torch.rand(1, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        ours, theirs = inception(x), ref((x - 128) / 128)
    assert ours.shape == (1, 2048)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_fid_self_zero_and_grows_with_noise(inception):
    from nerffs.metrics.fid import fid_from_features, inception_features

    photo = load_image(example_photo())
    rng = np.random.default_rng(0)
    crops = np.stack([photo[y:y + 160, x:x + 160] for y, x in rng.integers(0, 352, (6, 2))])

    def noisy(sigma):
        return np.clip(crops + rng.normal(0, sigma, crops.shape), 0, 255).astype(np.uint8)

    base = inception_features(inception, crops)
    f_self = fid_from_features(base, base)
    f_low = fid_from_features(base, inception_features(inception, noisy(15)))
    f_high = fid_from_features(base, inception_features(inception, noisy(60)))
    assert f_self < 1e-2
    assert f_self < f_low < f_high


def test_user_files_must_be_safetensors_and_round_trip(tmp_path):
    import pytest as _pytest
    import torch as _torch

    from nerffs.errors import CheckpointError
    from nerffs.metrics.fid import load_inception, save_inception_safetensors

    bad = tmp_path / "inception.pt"
    bad.write_bytes(b"not read")
    with _pytest.raises(CheckpointError, match="refusing to read"):
        load_inception(bad)
    path = save_inception_safetensors(tmp_path / "inception.safetensors")
    a, b = load_inception(), load_inception(path)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and _torch.equal(va, vb)


@pytest.mark.parametrize("n_a, n_b", [(20, 30), (5, 7), (100, 30), (63, 40)],
                         ids=["both_rank_deficient", "tiny", "full_rank_vs_rank_deficient", "one_short_of_full"])
def test_low_rank_trace_matches_sqrtm_formula(n_a, n_b):
    """With fewer samples than dimensions in either set, ``fid_from_features`` uses the [N, N] eigenvalue form of
    Tr (S1 S2)^(1/2); it must equal the textbook formula with ``scipy.linalg.sqrtm`` (``frechet_distance``) to a
    relative 1e-6 (observed: < 1e-7) on correlated random features with different means."""
    from nerffs.metrics.fid import feature_stats, fid_from_features, frechet_distance

    rng = np.random.default_rng(n_a * 1000 + n_b)
    dim = 64
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    a = rng.normal(size=(n_a, dim)) @ mix + 0.3
    b = rng.normal(size=(n_b, dim)) @ (mix + 0.5 * rng.normal(size=(dim, dim)) / np.sqrt(dim))
    assert min(n_a, n_b) < dim  # the low-rank path is the one under test
    exact = frechet_distance(*feature_stats(a), *feature_stats(b))
    assert fid_from_features(a, b) == pytest.approx(exact, rel=1e-6)
    # a set against itself: both forms give ~0 relative to the covariance scale
    scale = np.trace(feature_stats(a)[1])
    assert abs(fid_from_features(a, a)) < 1e-6 * scale
    assert abs(frechet_distance(*feature_stats(a), *feature_stats(a))) < 1e-6 * scale
