import numpy as np
import pytest

from moclip.metrics import (
    diversity,
    fid,
    frechet_distance,
    matching_score,
    mean_interval,
    multimodality,
    r_precision,
)


def test_fid_is_zero_for_identical_sets():
    x = np.random.default_rng(0).normal(size=(500, 8))
    assert fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_matches_the_closed_form_in_1d():
    # (m1 - m2)^2 + s1^2 + s2^2 - 2 s1 s2 = (m1 - m2)^2 + (s1 - s2)^2
    value = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]]))
    assert value == pytest.approx((1 - 3) ** 2 + (2 - 3) ** 2)


def test_frechet_matches_the_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    assert frechet_distance(mu1, np.diag(s1**2), mu2, np.diag(s2**2)) == pytest.approx(expected)


def test_frechet_handles_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 32))  # 10 samples in 32 dims: rank-deficient covariance
    y = rng.normal(size=(10, 32)) + 0.5
    value = fid(x, y)
    assert np.isfinite(value) and value > 0
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_r_precision_perfect_and_chance():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(320, 16))
    perfect = r_precision(x, x)
    assert perfect == {"r_precision_top1": 1.0, "r_precision_top2": 1.0, "r_precision_top3": 1.0}
    chance = r_precision(rng.normal(size=(6400, 16)), rng.normal(size=(6400, 16)))
    for k in (1, 2, 3):
        assert chance[f"r_precision_top{k}"] == pytest.approx(k / 32, abs=0.012)
    with pytest.raises(ValueError, match="at least 32"):
        r_precision(x[:10], x[:10])


def test_matching_diversity_multimodality():
    x = np.random.default_rng(4).normal(size=(400, 6))
    assert matching_score(x, x) == 0.0
    assert matching_score(np.zeros((3, 2)), np.ones((3, 2))) == pytest.approx(np.sqrt(2))
    same = np.ones((400, 6))
    assert diversity(same) == 0.0
    assert diversity(x) == pytest.approx(np.sqrt(2 * 6), rel=0.15)  # E|a-b| for N(0, I)
    assert diversity(x, seed=1) == diversity(x, seed=1) != diversity(x, seed=2)
    assert multimodality(np.repeat(x[:20, None], 5, axis=1)) == 0.0
    assert multimodality(x.reshape(40, 10, 6)) > 1.0


def test_mean_interval():
    mean, half = mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and half == pytest.approx(1.96 * np.std([1, 2, 3, 4]) / 2)
    assert mean_interval([5.0]) == (5.0, 0.0)
