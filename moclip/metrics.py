"""The text-to-motion evaluation metrics of Guo et al. 2022, as pure functions of features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix, negative eigenvalues clipped to 0."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)).

    Tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the
    symmetric PSD matrix S1^(1/2) S2 S1^(1/2) (same spectrum as S1 S2), which stays real and
    stable for singular or near-singular covariances, where sqrtm(S1 S2) can turn complex.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"mismatched shapes: mu {mu1.shape} vs {mu2.shape}, sigma "
            f"{sigma1.shape} vs {sigma2.shape}"
        )
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    value = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt
    return float(max(value, 0.0))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (N-1)-normalised covariance of (N, D) features."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two (N, D) feature sets."""
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def _distances(text: torch.Tensor, motion: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "euclidean":
        return torch.cdist(text.double(), motion.double())
    if distance == "cosine":
        t = torch.nn.functional.normalize(text.double(), dim=-1)
        m = torch.nn.functional.normalize(motion.double(), dim=-1)
        return -(t @ m.T)
    raise ValueError(f"distance must be 'euclidean' or 'cosine', got {distance!r}")


def r_precision(
    text: np.ndarray | torch.Tensor,
    motion: np.ndarray | torch.Tensor,
    batch: int = 32,
    seed: int = 0,
    top: Sequence[int] = (1, 2, 3),
    distance: str = "euclidean",
) -> dict[str, float]:
    """Share of texts whose own motion is among the k nearest of the `batch` motions in its
    batch: rows are matched pairs, shuffled with `seed`, cut into batches of 32 (a remainder
    is left out); chance is k/32."""
    text, motion = torch.as_tensor(text), torch.as_tensor(motion)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(text)))
    hits = dict.fromkeys(top, 0)
    count = 0
    for start in range(0, len(order) - batch + 1, batch):
        rows = order[start : start + batch]
        dist = _distances(text[rows], motion[rows], distance)
        rank = (dist < dist.diagonal()[:, None]).sum(1) + 1
        for k in top:
            hits[k] += int((rank <= k).sum())
        count += batch
    if count == 0:
        raise ValueError(f"R-precision needs at least {batch} pairs, got {len(text)}")
    return {f"r_precision_top{k}": hits[k] / count for k in top}


def matching_score(text: np.ndarray, motion: np.ndarray) -> float:
    """MM-Dist: mean_i ||t_i - m_i|| over matched rows."""
    return float(
        np.linalg.norm(np.asarray(text, np.float64) - np.asarray(motion, np.float64), axis=1).mean()
    )


def diversity(features: np.ndarray, pairs: int = 300, seed: int = 0) -> float:
    """Mean ||f_a - f_b|| over `pairs` random pairs (two seeded draws without replacement)."""
    features = np.asarray(features, np.float64)
    if len(features) < 2:
        raise ValueError("diversity needs at least 2 motions")
    pairs = min(pairs, len(features))
    rng = np.random.default_rng(seed)
    first = rng.choice(len(features), pairs, replace=False)
    second = rng.choice(len(features), pairs, replace=False)
    return float(np.linalg.norm(features[first] - features[second], axis=1).mean())


def multimodality(features: np.ndarray, pairs: int = 10, seed: int = 0) -> float:
    """Mean distance between motions generated for the same text: features (N_texts, K, D),
    `pairs` seeded pairs drawn per text among its K generations."""
    features = np.asarray(features, np.float64)
    if features.ndim != 3 or features.shape[1] < 2:
        raise ValueError(f"need (texts, K >= 2, D) features, got shape {features.shape}")
    pairs = min(pairs, features.shape[1])
    rng = np.random.default_rng(seed)
    first = rng.choice(features.shape[1], pairs, replace=False)
    second = rng.choice(features.shape[1], pairs, replace=False)
    return float(np.linalg.norm(features[:, first] - features[:, second], axis=-1).mean())


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """(mean, t_{n-1} * s / sqrt(n)): the Student-t half-width of the mean of n values (sample
    std, ddof 1); nan for a single value, whose spread is unknown."""
    from scipy.stats import t

    values = np.asarray(values, np.float64)
    if len(values) == 0:
        raise ValueError("no values")
    if len(values) < 2:
        return float(values[0]), float("nan")
    quantile = float(t.ppf(0.5 + level / 2, len(values) - 1))
    return float(values.mean()), float(quantile * values.std(ddof=1) / np.sqrt(len(values)))


def mean_interval(values: Sequence[float]) -> tuple[float, float]:
    """The 95 % Student-t interval of the mean over R repeats (`t_interval`)."""
    return t_interval(values)


def kid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 (KID, Binkowski et al. 2018)."""
    x = np.asarray(features_a, np.float64)
    y = np.asarray(features_b, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"need (N >= 2, D) features of one width, got {x.shape} and {y.shape}")
    width = x.shape[1]
    k_xx = (x @ x.T / width + 1) ** 3
    k_yy = (y @ y.T / width + 1) ** 3
    k_xy = (x @ y.T / width + 1) ** 3
    m, n = len(x), len(y)
    within_x = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    within_y = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


def real_floor(
    real: np.ndarray, reference: np.ndarray, count: int, draws: int = 10, seed: int = 0
) -> dict[str, float]:
    """FID and KID of `count` real motions' features (`draws` seeded draws from `real`, held
    out from `reference`) against `reference`: what a perfect generator scores at this sample
    size. Each as mean and 95 % Student-t half-width over the draws, and the sizes."""
    real = np.asarray(real, np.float64)
    count = min(count, len(real))
    rng = np.random.default_rng(seed)
    stats = gaussian_stats(reference)
    fids, kids = [], []
    for _ in range(draws):
        sample = real[rng.choice(len(real), count, replace=False)]
        fids.append(frechet_distance(*gaussian_stats(sample), *stats))
        kids.append(kid(sample, reference))
    out = {"floor_motions": float(count), "floor_reference": float(len(reference))}
    for name, values in (("fid", fids), ("kid", kids)):
        out[f"floor_{name}"], out[f"floor_{name}_ci95"] = t_interval(values)
    return out
