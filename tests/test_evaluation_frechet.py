"""The Frechet distance against closed forms and scipy, feature statistics, and the Inception loader."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from mergan.evaluation import frechet
from mergan.evaluation.frechet import (
    FeatureStats,
    InceptionFeatures,
    InceptionWeightsError,
    fid_from_stats,
    frechet_distance,
    inception_weights_path,
)


def reference_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """The usual formula with scipy's matrix square root (as in pytorch-fid)."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def test_diagonal_gaussians_match_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    var1, var2 = rng.uniform(0.1, 3.0, size=16), rng.uniform(0.1, 3.0, size=16)
    closed_form = np.sum((mu1 - mu2) ** 2) + np.sum(var1 + var2 - 2 * np.sqrt(var1 * var2))
    value = frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2))
    assert value == pytest.approx(closed_form, rel=1e-6)


def test_full_covariances_match_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(32, 32)), rng.normal(size=(32, 32))
    sigma1, sigma2 = a @ a.T / 32 + 0.1 * np.eye(32), b @ b.T / 32 + 0.1 * np.eye(32)
    mu1, mu2 = rng.normal(size=32), rng.normal(size=32)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(
        reference_frechet(mu1, sigma1, mu2, sigma2), rel=1e-6)


def test_identical_gaussians_are_at_distance_zero_even_when_singular():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(8, 3))
    sigma = a @ a.T  # rank 3
    # the square roots of round-off eigenvalues (~1e-14) leave ~1e-7: tiny next to tr(sigma)
    assert abs(frechet_distance(np.ones(8), sigma, np.ones(8), sigma)) < 1e-6 * np.trace(sigma)
    assert frechet_distance(np.zeros(8), sigma, np.ones(8), sigma) == pytest.approx(8.0, rel=1e-6)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_feature_stats_match_numpy_and_merge():
    features = torch.randn(50, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    whole, first, second = FeatureStats(6), FeatureStats(6), FeatureStats(6)
    whole.add(features)
    first.add(features[:20])
    second.add(features[20:])
    mean, cov = whole.mean_cov()
    np.testing.assert_allclose(mean, features.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(features.numpy(), rowvar=False), rtol=1e-10)
    merged_mean, merged_cov = (first + second).mean_cov()
    np.testing.assert_allclose(merged_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(merged_cov, cov, rtol=1e-10)
    assert fid_from_stats(whole, first + second) == pytest.approx(0.0, abs=1e-9)


# -- Inception: no real weights exist offline, so a randomly initialised network stands in ------
@pytest.fixture(scope="module")
def random_inception_file(tmp_path_factory):
    from torchvision.models import inception_v3

    path = tmp_path_factory.mktemp("inception") / "inception_v3_random.pth"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), path)
    return str(path)


def test_inception_weights_load_and_give_a_finite_fid(random_inception_file):
    # 75x75 (Inception's smallest input) keeps this fast on CPU; the default 299 is checked below
    features = InceptionFeatures(random_inception_file, "cpu", image_size=75)
    assert features.variant == "torchvision"
    generator = torch.Generator().manual_seed(0)
    gray = torch.rand(4, 1, 32, 32, generator=generator) * 2 - 1  # grayscale: repeated to 3 channels
    color = torch.rand(4, 3, 32, 32, generator=generator) * 2 - 1
    gray_features = features(gray)
    assert gray_features.shape == (4, 2048)
    first, second = FeatureStats(2048), FeatureStats(2048)
    first.add(gray_features)
    second.add(features(color))
    assert np.isfinite(fid_from_stats(first, second))


class _Seen(Exception):
    pass


def test_inception_sees_299_pixel_rgb_images(random_inception_file):
    features = InceptionFeatures(random_inception_file, "cpu")
    shapes = []

    def record_and_stop(module, inputs):
        shapes.append(tuple(inputs[0].shape))
        raise _Seen  # the shape is all this test needs: skip the expensive forward

    features.net.Conv2d_1a_3x3.register_forward_pre_hook(record_and_stop)
    with pytest.raises(_Seen):
        features(torch.zeros(2, 1, 32, 32))
    assert shapes == [(2, 3, 299, 299)]


def test_pytorch_fid_weights_select_the_fid_blocks(tmp_path):
    from torchvision.models import inception_v3

    path = tmp_path / "pt_inception_like.pth"
    with torch.random.fork_rng(devices=[]):
        torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).state_dict(),
                   path)
    features = InceptionFeatures(str(path), "cpu", image_size=75)
    assert features.variant == "pytorch-fid"
    assert features(torch.zeros(2, 3, 32, 32)).shape == (2, 2048)


def test_missing_or_corrupt_inception_weights_give_a_clear_error(tmp_path):
    with pytest.raises(InceptionWeightsError, match="no such file.*inception_v3"):
        InceptionFeatures(str(tmp_path / "absent.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a state dict" * 100)
    with pytest.raises(InceptionWeightsError, match="cannot be read"):
        InceptionFeatures(str(corrupt))
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, other)
    with pytest.raises(InceptionWeightsError, match="not an inception_v3 state_dict"):
        InceptionFeatures(str(other))


def test_inception_path_comes_from_the_config_or_the_environment(monkeypatch):
    class Config:
        inception_weights = None

    monkeypatch.delenv(frechet.INCEPTION_ENV, raising=False)
    assert inception_weights_path(Config()) is None
    monkeypatch.setenv(frechet.INCEPTION_ENV, "/weights/from/env.pth")
    assert inception_weights_path(Config()) == "/weights/from/env.pth"
    Config.inception_weights = "/weights/from/config.pth"
    assert inception_weights_path(Config()) == "/weights/from/config.pth"


def test_building_inception_leaves_the_global_rng_alone(random_inception_file):
    before = torch.get_rng_state()
    InceptionFeatures(random_inception_file, "cpu", image_size=75)
    assert torch.equal(before, torch.get_rng_state())
