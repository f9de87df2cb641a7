"""How the robustness gap shrinks with the fine-tuning set: a saturating power law in N."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_POINTS = 4  # three parameters need at least one residual degree of freedom
MIN_SIZES = 3  # and at least three distinct set sizes to tell the exponent from the offset


@dataclass(frozen=True)
class PowerLawFit:
    a: float
    b: float
    c: float
    b_ci95: float  # 1.96 x the standard error of b; inf when the data cannot pin it down
    points: int
    rmse: float

    def predict(self, n: np.ndarray) -> np.ndarray:
        return power_law(np.asarray(n, dtype=np.float64), self.a, self.b, self.c)


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """ΔFID(N) = a · N^(−b) + c."""
    return a * np.power(n, -b) + c


def fit_power_law(pairs: np.ndarray, gaps: np.ndarray) -> PowerLawFit | None:
    """Least-squares fit of ΔFID(N) = a · N^(−b) + c to per-seed points (N > 0), b in [0, 4];
    None when there are too few points or set sizes, or the fit does not converge."""
    from scipy.optimize import curve_fit

    n = np.asarray(pairs, dtype=np.float64)
    y = np.asarray(gaps, dtype=np.float64)
    keep = (n > 0) & np.isfinite(y)
    n, y = n[keep], y[keep]
    if len(n) < MIN_POINTS or len(np.unique(n)) < MIN_SIZES:
        return None
    # Start from a line through the smallest and largest set in log-log space (offset 0).
    order = np.argsort(n)
    span = max(float(np.ptp(y)), 1e-6)
    start = (span * float(n[order[0]]) ** 0.5, 0.5, float(y.min()))
    try:
        params, covariance = curve_fit(
            power_law,
            n,
            y,
            p0=start,
            bounds=([-np.inf, 0.0, -np.inf], [np.inf, 4.0, np.inf]),
            maxfev=20000,
        )
    except (RuntimeError, ValueError):
        return None
    a, b, c = (float(v) for v in params)
    variance = float(covariance[1, 1]) if np.all(np.isfinite(covariance)) else math.inf
    residual = y - power_law(n, a, b, c)
    return PowerLawFit(
        a=a,
        b=b,
        c=c,
        b_ci95=1.96 * math.sqrt(variance) if variance >= 0 else math.inf,
        points=len(n),
        rmse=float(np.sqrt(np.mean(residual**2))),
    )
