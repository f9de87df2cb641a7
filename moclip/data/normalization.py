"""Per-dimension feature normalisation, with statistics taken on the training split."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

STD_FLOOR = 1e-6


class RunningStats:
    """Accumulates frame counts, sums and sums of squares of (T, D) feature arrays, in float64."""

    def __init__(self, dim: int) -> None:
        self.frames = 0
        self.total = np.zeros(dim)
        self.total_sq = np.zeros(dim)

    def add(self, features: np.ndarray) -> None:
        f = np.asarray(features, dtype=np.float64)
        self.add_sums(len(f), f.sum(0), (f * f).sum(0))

    def add_sums(self, frames: int, total: np.ndarray, total_sq: np.ndarray) -> None:
        self.frames += frames
        self.total += total
        self.total_sq += total_sq

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """mean = S/N, std = sqrt(S2/N - mean^2); a std below 1e-6 (a constant dimension) is set
        to 1 so normalising leaves that dimension unscaled instead of dividing by ~0."""
        if self.frames == 0:
            raise ValueError("no frames to compute normalisation statistics from")
        mean = self.total / self.frames
        std = np.sqrt(np.maximum(self.total_sq / self.frames - mean**2, 0.0))
        std = np.where(std < STD_FLOOR, 1.0, std)
        return mean.astype(np.float32), std.astype(np.float32)


def feature_stats(motions: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std over all frames of the given (T, D) arrays."""
    stats = None
    for features in motions:
        stats = stats or RunningStats(features.shape[-1])
        stats.add(features)
    if stats is None:
        raise ValueError("no motions to compute normalisation statistics from")
    return stats.result()


def normalize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std."""
    return (features - mean) / std


def denormalize(features: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """x * std + mean."""
    return features * std + mean
