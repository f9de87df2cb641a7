"""Figures of a study: metrics against the number of fine-tuning pairs, ΔFID heat maps over
fraction x w_distill, and the per-doubling trends. Each takes the summary rows of
`sweeps.results.summary_rows` (means over seeds with 95 % intervals) and writes one PNG."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

LINESTYLES = ("-", "--", ":", "-.")
ORIGINAL_OFFSET = (
    4.0  # the original encoder (0 pairs) is drawn this factor left of the smallest set
)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _styles(rows: list[dict]) -> dict[str, dict]:
    """A colour per recipe and a line style per budget, the same in every figure."""
    recipes = sorted({r["recipe"] for r in rows} - {"none"})
    budgets = sorted({r["budget"] for r in rows if r["recipe"] != "none"})
    styles = {"clean": {"color": "black", "linestyle": "-", "linewidth": 2.0}}
    for row in rows:
        if row["recipe"] != "none":
            styles[row["condition"]] = {
                "color": f"C{recipes.index(row['recipe']) % 10}",
                "linestyle": LINESTYLES[budgets.index(row["budget"]) % len(LINESTYLES)],
            }
    return styles


def _save(fig, path: Path, tight: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _no_attacks(ax) -> None:
    """Say so on axes that stay empty: a sweep without attacks has no ΔFID to draw."""
    ax.text(0.5, 0.5, "no attacked conditions", ha="center", va="center", transform=ax.transAxes)


def _legend(ax, **kwargs) -> None:
    """A legend, or where nothing was drawn, the note that there were no attacks."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)
    else:
        _no_attacks(ax)


def _w_distill_values(rows: list[dict]) -> list[float | None]:
    values = sorted({r["w_distill"] for r in rows if r["fraction"] > 0})
    return values or [None]


def arms(rows: list[dict]) -> list[str]:
    """The generator arms in `rows` (frozen first)."""
    return sorted({r.get("generator", "frozen") for r in rows}, key=lambda a: a != "frozen")


def curves(rows: list[dict], metric: str, title: str, path: Path) -> Path:
    """`metric` against fine-tuning pairs (log x), one line per attack condition with its 95 %
    band, one panel per w_distill and generator arm side by side; the original encoder (with
    the generator trained on it) is the leftmost point of every panel."""
    plt = _pyplot()
    styles = _styles(rows)
    panels = [(weight, arm) for weight in _w_distill_values(rows) for arm in arms(rows)]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.2), sharey=True, squeeze=False
    )
    tuned_pairs = [r["n_pairs"] for r in rows if r["fraction"] > 0]
    x_original = (min(tuned_pairs) if tuned_pairs else 1.0) / ORIGINAL_OFFSET
    for ax, (weight, arm) in zip(axes[0], panels):
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            chosen = row["w_distill"] == weight and row.get("generator", "frozen") == arm
            if metric in row and (row["fraction"] == 0 or chosen):
                groups[row["condition"]].append(row)
        for condition, items in sorted(groups.items(), key=lambda kv: kv[0] != "clean"):
            if metric in ("delta_fid", "accuracy_drop", "r_precision_drop") and condition == "clean":
                continue
            items.sort(key=lambda r: r["n_pairs"])
            x = np.array([r["n_pairs"] if r["fraction"] > 0 else x_original for r in items])
            y = np.array([r[metric] for r in items])
            ci = np.array([r.get(f"{metric}_ci95", 0.0) for r in items])
            style = styles.get(condition, {})
            ax.plot(x, y, marker="o", label=condition, **style)
            ax.fill_between(x, y - ci, y + ci, color=style.get("color"), alpha=0.12)
        ax.set_xscale("log")
        ax.axvline(x_original * np.sqrt(ORIGINAL_OFFSET), color="0.8", linewidth=0.8)
        ax.set_xlabel("fine-tuning pairs (leftmost: the original encoder)")
        label = title if weight is None else f"{title}, w_distill = {weight:g}"
        ax.set_title(label + (f", {arm} generator" if len(arms(rows)) > 1 else ""))
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel(title)
    _legend(axes[0][-1], fontsize=8, loc="best")
    return _save(fig, path)


def delta_heatmaps(rows: list[dict], path: Path) -> Path:
    """Mean ΔFID over fraction (columns; 0 = the original encoder) x w_distill (rows), one
    panel per attack condition, one colour scale for all."""
    plt = _pyplot()
    attacked = sorted({r["condition"] for r in rows if r["recipe"] != "none" and "delta_fid" in r})
    fractions = sorted({r["fraction"] for r in rows})
    weights = [w for w in _w_distill_values(rows) if w is not None] or [None]
    grids = {}
    for condition in attacked:
        grid = np.full((len(weights), len(fractions)), np.nan)
        for row in rows:
            if row["condition"] != condition or "delta_fid" not in row:
                continue
            column = fractions.index(row["fraction"])
            targets = (
                range(len(weights)) if row["fraction"] == 0 else [weights.index(row["w_distill"])]
            )
            for i in targets:
                grid[i, column] = row["delta_fid"]
        grids[condition] = grid
    columns = min(3, max(1, len(grids)))
    panels = max(1, len(grids))
    lines = -(-panels // columns)
    fig, axes = plt.subplots(
        lines,
        columns,
        figsize=(4.4 * columns + 1.0, (1.6 + 0.45 * len(weights)) * lines),
        squeeze=False,
        layout="constrained",
    )
    finite = np.concatenate([g[np.isfinite(g)] for g in grids.values()] or [np.zeros(1)])
    limit = float(np.max(np.abs(finite))) if finite.size else 1.0
    image = None
    for ax, (condition, grid) in zip(axes.flat, grids.items()):
        image = ax.imshow(grid, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(fractions)), ["orig." if f == 0 else f"{f:g}" for f in fractions])
        ax.set_yticks(range(len(weights)), ["—" if w is None else f"{w:g}" for w in weights])
        ax.set_xlabel("fraction")
        ax.set_ylabel("w_distill")
        ax.set_title(f"ΔFID, {condition}", fontsize=10)
        for (i, j), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(j, i, f"{value:+.2f}", ha="center", va="center", fontsize=8)
    for ax in list(axes.flat)[len(grids) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="ΔFID")
    else:
        _no_attacks(axes[0][0])
    return _save(fig, path, tight=False)


def trend_figure(
    points: dict[str, dict[tuple, list[tuple[float, float]]]], scaling: list[dict], path: Path
) -> Path:
    """Each seed unit's ΔFID against pairs (log2 axis), one colour per condition, with the
    mean per-doubling trend through the points' centre, its slope and 95 % interval in the
    legend (`dashboards.scaling`)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.8, 4.6))
    found = {row["condition"]: row for row in scaling if row["metric"] == "ΔFID"}
    for index, (condition, units) in enumerate(sorted(points.items())):
        color = f"C{index % 10}"
        flat = np.array([pair for rows in units.values() for pair in rows], dtype=np.float64)
        for rows in units.values():
            unit = np.array(sorted(rows), dtype=np.float64)
            ax.plot(unit[:, 0], unit[:, 1], color=color, alpha=0.35, marker="o", markersize=3)
        row = found.get(condition, {})
        label = condition
        if "slope_per_doubling" in row:
            x = np.log2(flat[:, 0])
            grid = np.linspace(x.min(), x.max(), 20)
            line = flat[:, 1].mean() + row["slope_per_doubling"] * (grid - x.mean())
            ax.plot(2**grid, line, color=color, linewidth=2.2)
            half = (row["ci95_high"] - row["ci95_low"]) / 2
            shown = "n/a" if not np.isfinite(half) else f"{half:.2f}"
            label += f": {row['slope_per_doubling']:+.2f} ± {shown} per doubling"
        ax.plot([], [], color=color, marker="o", label=label)
    ax.axhline(0.0, color="0.7", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("fine-tuning pairs N (log2)")
    ax.set_ylabel("ΔFID")
    ax.set_title("ΔFID per seed unit (thin) and the mean trend per doubling (thick)")
    ax.grid(alpha=0.3, which="both")
    _legend(ax, fontsize=7)
    return _save(fig, path)


def delta_vs_drift(points: list[tuple[float, float, str, str]], path: Path) -> Path:
    """ΔFID of every attacked evaluation against its encoder's drift from the teacher (mean
    cosine of its text features to the original's on the test captions; 1 = no drift), a
    colour per condition, a marker per generator arm."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    conditions = sorted({c for _, _, _, c in points})
    markers = {"frozen": "o", "adapted": "^"}
    for condition in conditions:
        for arm, marker in markers.items():
            chosen = [(d, g) for d, g, a, c in points if c == condition and a == arm]
            if chosen:
                x, y = zip(*chosen)
                colour = f"C{conditions.index(condition) % 10}"
                ax.scatter(x, y, marker=marker, color=colour, label=f"{condition}, {arm}")
    ax.axhline(0.0, color="0.7", linewidth=0.8)
    ax.set_xlabel("drift: mean cos(fine-tuned, original text features) on the test captions")
    ax.set_ylabel("ΔFID = FID(attacked) − FID(clean)")
    ax.set_title("ΔFID against the text tower's drift (each point an encoder and seed)")
    ax.grid(alpha=0.3)
    _legend(ax, fontsize=7, loc="best")
    return _save(fig, path)
