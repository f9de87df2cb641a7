import numpy as np
import pytest

from moclip.metrics import (
    diversity,
    fid,
    frechet_distance,
    kid,
    matching_score,
    mean_interval,
    multimodality,
    r_precision,
    real_floor,
    t_interval,
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


def test_mean_interval_is_student_t():
    mean, half = mean_interval([1.0, 2.0, 3.0, 4.0])
    # t_{0.975, 3} = 3.182: the textbook quantile, not 1.96
    assert mean == 2.5 and half == pytest.approx(3.1824 * np.std([1, 2, 3, 4], ddof=1) / 2, 1e-4)
    single = mean_interval([5.0])
    assert single[0] == 5.0 and np.isnan(single[1])  # one value: its spread is unknown


def test_t_interval_covers_the_mean_95_percent_of_the_time_at_n_3():
    rng = np.random.default_rng(0)
    samples = rng.normal(10.0, 2.0, size=(4000, 3))
    halves = np.array([t_interval(row)[1] for row in samples])
    covered = np.abs(samples.mean(1) - 10.0) <= halves
    assert 0.935 < covered.mean() < 0.965
    # the interval it replaces, 1.96 s / sqrt(n), covers about 81 % at n = 3
    normal = 1.96 * samples.std(1, ddof=1) / np.sqrt(3)
    assert (np.abs(samples.mean(1) - 10.0) <= normal).mean() < 0.85


def test_kid_is_the_unbiased_cubic_kernel_mmd():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 3)), rng.normal(0.5, 1.0, size=(5, 3))

    def k(a, b):
        return (sum(ai * bi for ai, bi in zip(a, b)) / 3 + 1) ** 3

    within_x = sum(k(x[i], x[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    within_y = sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    across = sum(k(a, b) for a in x for b in y) / (7 * 5)
    assert kid(x, y) == pytest.approx(within_x + within_y - 2 * across, rel=1e-12)
    # unbiased: near 0 on average for two samples of one distribution, even small ones
    same = [kid(rng.normal(size=(20, 8)), rng.normal(size=(30, 8))) for _ in range(300)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(300)
    with pytest.raises(ValueError, match="one width"):
        kid(x, y[:, :2])


def test_the_real_floor_is_small_sample_bias():
    """At 64 motions in 256 dimensions, two samples of one distribution score a large FID;
    KID stays near 0. The floor is what a perfect generator would score."""
    rng = np.random.default_rng(6)
    reference, held_out = rng.normal(size=(90, 256)), rng.normal(size=(400, 256))
    floor = real_floor(held_out, reference, 64, draws=5)
    assert floor["floor_motions"] == 64 and floor["floor_reference"] == 90
    assert floor["floor_fid"] > 50 and abs(floor["floor_kid"]) < 0.5
    assert floor["floor_fid_ci95"] > 0
