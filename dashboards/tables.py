"""The tables the report draws, from evaluations of any origin (the sweep's result store or
MLflow's runs): the robustness gap per evaluation, paired on the generation noise, and the
table fraction x recipe x budget with means over seed units and 95 % Student-t intervals."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from moclip.metrics import t_interval


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
    subset_seed: int | None = None  # the subset draw (None: the original encoder)
    protocol: str = "in-domain"  # or "transfer": scored on MSR Action3D after retargeting
    trained_on: str = ""  # the data fine-tuned on (the run's tag), where recorded

    @property
    def unit(self) -> tuple[int, int]:
        """The replicate: (subset draw, training seed), or for the original encoder (no draw)
        the generation seed."""
        return (self.subset_seed or 0, self.seed or 0)

    def repeats(self, metric: str) -> list[float]:
        """The metric's value in each generation repeat (`name_r{i}`), as recorded."""
        values, i = [], 0
        while f"{metric}_r{i}" in self.metrics:
            values.append(self.metrics[f"{metric}_r{i}"])
            i += 1
        return values


# The second headline metric: recognition accuracy where the study scores actions (MSR
# Action3D, the action recogniser), else R-precision (the text-motion evaluator).
HEADLINES = {"accuracy_top1": "accuracy top-1", "r_precision_top3": "R-prec top-3"}
# its drop under attack (clean − attacked: positive when the attack hurts)
DROPS = {"accuracy_top1": "accuracy_drop", "r_precision_top3": "r_precision_drop"}
GAPS = ("delta_fid", "accuracy_drop", "r_precision_drop")


def headline_metric(evaluations: list[Evaluation]) -> str:
    """`accuracy_top1` if the records have it (an action-recognition study), else
    `r_precision_top3`."""
    return row_headline([r.metrics for r in evaluations])


def row_headline(rows: list[dict]) -> str:
    """The same for `summary_rows`' rows (or any dicts of metrics)."""
    return "accuracy_top1" if any("accuracy_top1" in r for r in rows) else "r_precision_top3"


@dataclass(frozen=True)
class Gap:
    """metric(attacked) − metric(clean) of one encoder, generator arm and seed unit: the mean
    over repeats of the differences paired on each repeat's shared noise."""

    value: float
    per_repeat: tuple[float, ...]


def robustness_gaps(evaluations: list[Evaluation], metric: str = "fid") -> dict[str, Gap]:
    """Δmetric = metric(perturbed) − metric(clean) of the same encoder, generator arm and seed
    unit (ΔFID by default), per evaluation key, paired repeat by repeat where the repeats were
    recorded (the two conditions share each repeat's diffusion noise)."""
    clean = {
        (r.encoder_key, r.arm, r.unit): r for r in evaluations if r.recipe == "none"
    }
    gaps = {}
    for record in evaluations:
        base = clean.get((record.encoder_key, record.arm, record.unit))
        if base is None or metric not in base.metrics or metric not in record.metrics:
            continue
        attacked, original = record.repeats(metric), base.repeats(metric)
        paired = tuple(a - o for a, o in zip(attacked, original))
        if paired and len(attacked) == len(original):
            gaps[record.key] = Gap(float(np.mean(paired)), paired)
        else:
            gaps[record.key] = Gap(record.metrics[metric] - base.metrics[metric], ())
    return gaps


def condition_label(recipe: str, budget: int) -> str:
    return "clean" if recipe == "none" else f"{recipe} b{budget}"


def spread_interval(per_unit: list[float], per_repeat: list[float]) -> tuple[float, float, str]:
    """(mean, 95 % half-width, what it spans): Student-t over the seed units where there are
    at least two; with one unit, Student-t over its generation repeats (a narrower quantity)."""
    if len(per_unit) >= 2 or len(per_repeat) < 2:
        mean, half = t_interval(per_unit)
        return mean, half, "units"
    mean, half = t_interval(per_repeat)
    return float(per_unit[0]), half, "repeats"


def summary_rows(evaluations: list[Evaluation], gaps: dict[str, Gap]) -> list[dict]:
    """One row per (fraction, w_distill, generator arm, recipe, budget): means over seed
    units with 95 % Student-t intervals over them (with one unit, over its generation
    repeats: `spread` says which), and the per-unit values behind every mean (`NAME_values`),
    so that any interval can be recomputed from the row."""
    groups: dict[tuple, list[Evaluation]] = defaultdict(list)
    for record in evaluations:
        group = (record.fraction, record.w_distill, record.arm, record.recipe, record.budget)
        groups[group].append(record)
    headline = headline_metric(evaluations)
    drops = robustness_gaps(evaluations, headline)
    rows = []
    for (fraction, w_distill, arm, recipe, budget), records in sorted(
        groups.items(),
        key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2], kv[0][3] != "none", kv[0][3:]),
    ):
        records = sorted(records, key=lambda r: r.unit)
        row = {
            "fraction": fraction,
            "w_distill": w_distill,
            "generator": arm,
            "condition": condition_label(recipe, budget),
            "recipe": recipe,
            "budget": budget,
            "n_pairs": float(np.mean([r.n_pairs for r in records])),
            "seeds": len(records),
            "units": [list(r.unit) for r in records],
            "repeats": int(min(r.metrics.get("repeats", 1) for r in records)),
        }
        # the floor (real against real, clean rows only) beside the scores
        for name in ("fid", "kid", headline, "diversity", "multimodality", "floor_fid"):
            if all(name in r.metrics for r in records):
                values = [r.metrics[name] for r in records]
                mean, half, _ = spread_interval(values, records[0].repeats(name))
                row.update({name: mean, f"{name}_ci95": half, f"{name}_values": values})
        # the drop is clean minus attacked: positive when the attack hurts
        for name, found, sign in (("delta_fid", gaps, 1.0), (DROPS[headline], drops, -1.0)):
            chosen = [found[r.key] for r in records if r.key in found]
            if chosen and recipe != "none":
                values = [sign * g.value for g in chosen]
                repeats = [sign * d for d in chosen[0].per_repeat]
                mean, half, _ = spread_interval(values, repeats)
                row.update({name: mean, f"{name}_ci95": half, f"{name}_values": values})
        row["spread"] = "units" if len(records) >= 2 else "repeats"
        rows.append(row)
    return rows


def ci_text(value: float, digits: int = 3) -> str:
    """An interval's half-width as the tables print it: n/a where there is none (one value)."""
    return "n/a" if not math.isfinite(value) else f"{value:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    show_w = len({r["w_distill"] for r in rows if r["w_distill"] is not None}) > 1
    show_arm = len({r.get("generator", "frozen") for r in rows}) > 1
    headline = row_headline(rows)
    header = ["fraction", "pairs"] + (["w_distill"] if show_w else [])
    header += ["generator"] if show_arm else []
    show_kid = any("kid" in r for r in rows)
    header += ["condition", "seeds", "FID", "ΔFID"] + (["KID"] if show_kid else [])
    header += [HEADLINES[headline], {"accuracy_top1": "accuracy drop"}.get(headline, "R-prec drop")]
    lines = []
    for row in rows:

        def signed(name: str) -> str:
            if name not in row or row["recipe"] == "none":
                return "—"
            return f"{row[name]:+.3f} ± {ci_text(row[f'{name}_ci95'])}"

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
            f"{row['fid']:.3f} ± {ci_text(row['fid_ci95'])}",
            signed("delta_fid"),
        ]
        if show_kid:
            cells.append(f"{row['kid']:.4f} ± {ci_text(row['kid_ci95'], 4)}" if "kid" in row else "—")
        cells += [f"{row[headline]:.3f} ± {ci_text(row[f'{headline}_ci95'])}", signed(DROPS[headline])]
        lines.append(cells)
    widths = [max([len(h), *(len(c[i]) for c in lines)]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    return "\n".join(out)
