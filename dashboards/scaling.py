"""The scaling answer: how a robustness gap (ΔFID, or the accuracy / R-precision drop) changes
as the fine-tuning set doubles, with its interval and a test against "no trend"; and, where
there are enough set sizes, a power law compared with simpler models.

The unit of replication is a (subset draw, training seed) pair: each gives one gap per set
size (the fractions of one draw are nested), so each has its own slope against log2(pairs).
The slope's interval is Student-t over those per-unit slopes (a two-stage random-slope model),
the test a one-sample t-test of them against 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
MIN_POWER_LAW_SIZES = 5  # three parameters, and two set sizes left to judge them by
B_RANGE = (0.0, 4.0)  # the exponent's bounds in the fit


@dataclass(frozen=True)
class Trend:
    """A gap's change per doubling of the fine-tuning set, over `units` replicates."""

    slope: float  # per doubling (mean of the per-unit slopes)
    low: float  # 95 % Student-t interval over units; nan with one unit
    high: float
    p_value: float  # two-sided t-test against slope 0; nan with one unit
    units: int
    sizes: int
    unit_slopes: tuple[float, ...]

    @property
    def detected(self) -> bool:
        """Whether the interval excludes 0 (p < 0.05)."""
        return self.units >= 2 and not (self.low <= 0.0 <= self.high)

    def sentence(self, condition: str, what: str = "ΔFID") -> str:
        """One sentence: the answer with its interval, or that no trend is detectable."""
        size = f"{self.units} seed unit(s) x {self.sizes} set sizes"
        if self.units < 2:
            return (
                f"{condition}: {what} changes by {self.slope:+.3f} per doubling of the "
                f"fine-tuning set, one seed unit only ({size}): no interval, no trend can be "
                f"claimed."
            )
        interval = f"95 % CI {self.low:+.3f} to {self.high:+.3f}, p = {self.p_value:.2g}, {size}"
        if not self.detected:
            return (
                f"{condition}: no trend detectable at this size; {what} changes by "
                f"{self.slope:+.3f} per doubling ({interval})."
            )
        verb = "grows" if self.slope > 0 else "shrinks"
        return (
            f"{condition}: {what} {verb} by {abs(self.slope):.3f} per doubling of the "
            f"fine-tuning set ({interval})."
        )


def unit_slope(pairs: np.ndarray, values: np.ndarray) -> float:
    """Least-squares slope of values against log2(pairs): the change per doubling."""
    x = np.log2(np.asarray(pairs, np.float64))
    y = np.asarray(values, np.float64)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def trend(points: dict[tuple, list[tuple[float, float]]]) -> Trend | None:
    """The per-doubling trend of `points` (unit -> [(pairs, gap)]); None when no unit has
    two set sizes."""
    from scipy.stats import t

    slopes = []
    sizes = set()
    for rows in points.values():
        n = np.array([p for p, _ in rows], np.float64)
        if len(np.unique(n)) < 2:
            continue
        sizes.update(n.tolist())
        slopes.append(unit_slope(n, np.array([g for _, g in rows])))
    if not slopes:
        return None
    values = np.array(slopes)
    mean = float(values.mean())
    if len(values) < 2:
        return Trend(mean, math.nan, math.nan, math.nan, 1, len(sizes), tuple(slopes))
    se = float(values.std(ddof=1) / math.sqrt(len(values)))
    df = len(values) - 1
    half = float(t.ppf(0.5 + LEVEL / 2, df)) * se
    p_value = float(2 * t.sf(abs(mean) / se, df)) if se > 0 else (0.0 if mean else 1.0)
    return Trend(mean, mean - half, mean + half, p_value, len(values), len(sizes), tuple(slopes))


@dataclass(frozen=True)
class PowerLawFit:
    a: float
    b: float
    c: float
    b_ci95: float  # Student-t (n - 3 df) x the standard error of b; inf when unknown
    points: int
    rmse: float
    aic: float
    identifiable: bool
    reason: str  # why not, where not

    def predict(self, n: np.ndarray) -> np.ndarray:
        return power_law(np.asarray(n, dtype=np.float64), self.a, self.b, self.c)


def power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """ΔFID(N) = a · N^(−b) + c."""
    return a * np.power(n, -b) + c


def aic(residuals: np.ndarray, parameters: int) -> float:
    """AIC of a least-squares fit with Gaussian errors: n log(RSS / n) + 2k."""
    n = len(residuals)
    rss = max(float(np.sum(np.square(residuals))), 1e-300)
    return n * math.log(rss / n) + 2 * parameters


def fit_power_law(pairs: np.ndarray, gaps: np.ndarray) -> PowerLawFit | None:
    """Least-squares ΔFID(N) = a · N^(−b) + c on per-unit points, b in [0, 4]; None with fewer
    than MIN_POWER_LAW_SIZES set sizes (refused: three parameters on three sizes fit anything)
    or when the fit fails. A fit whose b sits at a bound or whose interval is wider than b's
    range is marked not identifiable."""
    from scipy.optimize import curve_fit
    from scipy.stats import t

    n, y = _finite(pairs, gaps)
    if len(np.unique(n)) < MIN_POWER_LAW_SIZES or len(n) < 4:
        return None
    order = np.argsort(n)
    span = max(float(np.ptp(y)), 1e-6)
    start = (span * float(n[order[0]]) ** 0.5, 0.5, float(y.min()))
    try:
        params, covariance = curve_fit(
            power_law, n, y, p0=start, bounds=([-np.inf, B_RANGE[0], -np.inf],
                                               [np.inf, B_RANGE[1], np.inf]), maxfev=20000
        )
    except (RuntimeError, ValueError):
        return None
    a, b, c = (float(v) for v in params)
    variance = float(covariance[1, 1]) if np.all(np.isfinite(covariance)) else math.inf
    quantile = float(t.ppf(0.5 + LEVEL / 2, max(1, len(n) - 3)))
    half = quantile * math.sqrt(variance) if 0 <= variance < math.inf else math.inf
    residual = y - power_law(n, a, b, c)
    width = B_RANGE[1] - B_RANGE[0]
    reason = ""
    if min(b - B_RANGE[0], B_RANGE[1] - b) < 1e-3 * width:
        reason = f"b = {b:.3g} sits at its bound [{B_RANGE[0]:g}, {B_RANGE[1]:g}]"
    elif not 2 * half <= width:
        reason = f"b's 95 % interval (± {half:.3g}) is wider than its range {width:g}"
    return PowerLawFit(
        a=a, b=b, c=c, b_ci95=half, points=len(n), rmse=float(np.sqrt(np.mean(residual**2))),
        aic=aic(residual, 3), identifiable=not reason, reason=reason,
    )


def model_comparison(pairs: np.ndarray, gaps: np.ndarray) -> dict[str, float]:
    """AIC of a constant gap and of a gap linear in log2(pairs) (and of the power law, where
    it is fitted): the lowest is the best-supported; differences under 2 do not separate."""
    n, y = _finite(pairs, gaps)
    x = np.log2(n)
    line = np.polyfit(x, y, 1) if len(np.unique(x)) >= 2 else None
    out = {"constant": aic(y - y.mean(), 1)}
    if line is not None:
        out["log-linear"] = aic(y - np.polyval(line, x), 2)
    return out


def _finite(pairs, gaps) -> tuple[np.ndarray, np.ndarray]:
    n = np.asarray(pairs, dtype=np.float64)
    y = np.asarray(gaps, dtype=np.float64)
    keep = (n > 0) & np.isfinite(y)
    return n[keep], y[keep]


def scaling_row(condition: str, what: str, points: dict[tuple, list[tuple[float, float]]]) -> dict:
    """Everything the report says of one gap under one condition, as plain values: the trend
    and its sentence, the model comparison, and the power law or why there is none."""
    flat = [pair for rows in points.values() for pair in rows]
    n = np.array([p for p, _ in flat], np.float64)
    y = np.array([g for _, g in flat], np.float64)
    sizes = len(np.unique(n[n > 0]))
    row: dict = {"condition": condition, "metric": what, "points": len(flat), "set_sizes": sizes}
    found = trend(points)
    if found is None:
        row["sentence"] = f"{condition}: fewer than two set sizes; no trend can be estimated."
        return row
    row.update(
        slope_per_doubling=found.slope,
        ci95_low=found.low,
        ci95_high=found.high,
        p_value=found.p_value,
        units=found.units,
        unit_slopes=list(found.unit_slopes),
        trend_detected=found.detected,
        sentence=found.sentence(condition, what),
        aic=model_comparison(n, y),
    )
    fit = fit_power_law(n, y)
    if fit is None:
        row["power_law"] = (
            f"not fitted: {sizes} set sizes (needs {MIN_POWER_LAW_SIZES})"
            if sizes < MIN_POWER_LAW_SIZES
            else "not fitted: the least-squares fit did not converge"
        )
    elif not fit.identifiable:
        row["power_law"] = f"not identifiable: {fit.reason}"
        row["aic"]["power law"] = fit.aic
    else:
        row["power_law"] = {"a": fit.a, "b": fit.b, "b_ci95": fit.b_ci95, "c": fit.c,
                            "rmse": fit.rmse}
        row["aic"]["power law"] = fit.aic
    return row
