"""The tables the report draws, from evaluations of any origin (the sweep's result store or
MLflow's runs): the robustness gap per evaluation, and the table fraction x recipe x budget with
means over seeds and 95 % intervals."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Evaluation:
    """One scored encoder under one condition: what the tables read of an evaluation."""

    key: str
    encoder_key: str
    fraction: float
    w_distill: float | None
    seed: int | None
    recipe: str
    budget: int
    n_pairs: int
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None  # the MLflow run, where it came from one
    arm: str = "frozen"  # the generator: frozen (trained on the original encoder) or adapted


def interval(values: Iterable[float]) -> tuple[float, float]:
    """(mean, 1.96 std / sqrt(n)) with the sample std (ddof 1); 0 for a single value."""
    array = np.asarray(list(values), dtype=np.float64)
    if len(array) < 2:
        return float(array.mean()), 0.0
    return float(array.mean()), float(1.96 * array.std(ddof=1) / math.sqrt(len(array)))


# The second headline metric: recognition accuracy where the study scores actions (MSR
# Action3D, the action recogniser), else R-precision (the text-motion evaluator).
HEADLINES = {"accuracy_top1": "accuracy top-1", "r_precision_top3": "R-prec top-3"}


def headline_metric(evaluations: list[Evaluation]) -> str:
    """`accuracy_top1` if the records have it (an action-recognition study), else
    `r_precision_top3`."""
    return row_headline([r.metrics for r in evaluations])


def row_headline(rows: list[dict]) -> str:
    """The same for `summary_rows`' rows (or any dicts of metrics)."""
    return "accuracy_top1" if any("accuracy_top1" in r for r in rows) else "r_precision_top3"


def robustness_gaps(
    evaluations: list[Evaluation], metric: str = "fid"
) -> dict[str, tuple[float, float]]:
    """Δmetric = metric(perturbed) - metric(clean) of the same encoder and generator arm (ΔFID
    by default), per evaluation key, with an interval sqrt(ci_p^2 + ci_c^2) (independent repeats; common noise
    makes it conservative)."""
    clean = {(r.encoder_key, r.arm): r.metrics for r in evaluations if r.recipe == "none"}
    gaps = {}
    for record in evaluations:
        base = clean.get((record.encoder_key, record.arm))
        if base is None or metric not in base:
            continue
        metrics = record.metrics
        gaps[record.key] = (
            metrics[metric] - base[metric],
            math.hypot(metrics[f"{metric}_ci95"], base[f"{metric}_ci95"]),
        )
    return gaps


def condition_label(recipe: str, budget: int) -> str:
    return "clean" if recipe == "none" else f"{recipe} b{budget}"


def summary_rows(evaluations: list[Evaluation], gaps: dict[str, tuple[float, float]]) -> list[dict]:
    """One row per (fraction, w_distill, generator arm, recipe, budget): means over seeds with
    95 % intervals
    across seeds (with one seed, the interval over generation repeats)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in evaluations:
        group = (record.fraction, record.w_distill, record.arm, record.recipe, record.budget)
        groups[group].append(record)
    headline = headline_metric(evaluations)
    drops = robustness_gaps(evaluations, headline) if headline == "accuracy_top1" else {}
    rows = []
    for (fraction, w_distill, arm, recipe, budget), records in sorted(
        groups.items(),
        key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2], kv[0][3] != "none", kv[0][3:]),
    ):
        row = {
            "fraction": fraction,
            "w_distill": w_distill,
            "generator": arm,
            "condition": condition_label(recipe, budget),
            "recipe": recipe,
            "budget": budget,
            "n_pairs": float(np.mean([r.n_pairs for r in records])),
            "seeds": len(records),
        }
        for name, values, single in (
            ("fid", [r.metrics["fid"] for r in records], "fid_ci95"),
            (headline, [r.metrics[headline] for r in records], f"{headline}_ci95"),
        ):
            mean, ci = interval(values)
            row[name] = mean
            row[f"{name}_ci95"] = ci if len(values) > 1 else records[0].metrics[single]
        # the accuracy drop is clean minus attacked: positive when the attack hurts
        for name, found, sign in (("delta_fid", gaps, 1.0), ("accuracy_drop", drops, -1.0)):
            deltas = [found[r.key] for r in records if r.key in found]
            if deltas:
                mean, ci = interval(sign * d for d, _ in deltas)
                row[name] = mean
                row[f"{name}_ci95"] = ci if len(deltas) > 1 else deltas[0][1]
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    show_w = len({r["w_distill"] for r in rows if r["w_distill"] is not None}) > 1
    show_arm = len({r.get("generator", "frozen") for r in rows}) > 1
    headline = row_headline(rows)
    header = ["fraction", "pairs"] + (["w_distill"] if show_w else [])
    header += ["generator"] if show_arm else []
    header += ["condition", "seeds", "FID", "ΔFID", HEADLINES[headline]]
    header += ["accuracy drop"] if headline == "accuracy_top1" else []
    lines = []
    for row in rows:

        def signed(name: str) -> str:
            if name not in row or row["recipe"] == "none":
                return "—"
            return f"{row[name]:+.3f} ± {row[f'{name}_ci95']:.3f}"

        cells = [
            "0 (original)" if row["fraction"] == 0 else f"{row['fraction']:g}",
            f"{row['n_pairs']:.0f}",
        ]
        cells += (
            [f"{row['w_distill']:g}" if row["w_distill"] is not None else "—"] if show_w else []
        )
        cells += [row.get("generator", "frozen")] if show_arm else []
        cells += [
            row["condition"],
            str(row["seeds"]),
            f"{row['fid']:.3f} ± {row['fid_ci95']:.3f}",
            signed("delta_fid"),
            f"{row[headline]:.3f} ± {row[f'{headline}_ci95']:.3f}",
        ]
        cells += [signed("accuracy_drop")] if headline == "accuracy_top1" else []
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    return "\n".join(out)
