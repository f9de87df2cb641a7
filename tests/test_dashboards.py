"""The dashboard report: the power-law fit recovers a known exponent, and the report reads
evaluation runs back from a real MLflow store and writes every figure and table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from dashboards.power_law import fit_power_law, power_law
from dashboards.report import (
    ReportError,
    evaluation_records,
    report_experiment,
    search_evaluations,
    write_report,
)

PAIRS = (300, 750, 1500, 3000, 6000)


def test_power_law_fit_recovers_the_exponent():
    rng = np.random.default_rng(0)
    n = np.repeat(np.array(PAIRS, dtype=float), 3)
    y = power_law(n, 40.0, 0.6, 0.5) + rng.normal(0, 0.01, len(n))
    fit = fit_power_law(n, y)
    assert fit is not None and fit.points == len(n)
    assert abs(fit.b - 0.6) < 3 * max(fit.b_ci95 / 1.96, 0.01)
    assert abs(fit.c - 0.5) < 0.1 and fit.rmse < 0.05


def test_power_law_fit_needs_enough_points_and_sizes():
    assert fit_power_law(np.array([100.0, 200.0, 400.0]), np.array([3.0, 2.0, 1.0])) is None
    # four points but only two set sizes: the offset and the exponent cannot be told apart
    assert fit_power_law(np.array([100.0, 100, 400, 400]), np.array([3.0, 3.1, 1, 1.1])) is None
    # the original encoder (N = 0) is left out of the fit
    n = np.array([0.0, *PAIRS])
    assert fit_power_law(n, power_law(np.maximum(n, 1), 5.0, 0.5, 0.0)).points == len(PAIRS)


def log_study(uri: str, experiment: str, artifacts: Path) -> tuple[str, set[str]]:
    """Evaluation runs as the sweep logs them: ΔFID = 8 N^-0.5 + 0.2 for char-swap, with a
    seed offset; a baseline encoder at N = 0; two w_distill values."""
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(experiment, artifacts.as_uri())
    parent = client.create_run(experiment_id, tags={"kind": "sweep"}).info.run_id
    keys = set()
    encoders = [(0.0, 0, None, None)] + [
        (f, int(f * 6000), wd, seed)
        for f in (0.05, 0.125, 0.25, 0.5, 1.0)
        for wd in (0.0, 1.0)
        for seed in (0, 1)
    ]
    for fraction, pairs, w_distill, seed in encoders:
        clean_fid = 10.0 - 2.0 * fraction
        for recipe, budget in (("none", 0), ("char-swap", 1)):
            gap = 0.0
            if recipe != "none":
                gap = 8.0 * max(pairs, 1) ** -0.5 + 0.2 + 0.01 * (seed or 0)
                gap += 0.05 if w_distill == 0.0 else 0.0
            key = f"ev-{fraction}-{w_distill}-{seed}-{recipe}"
            keys.add(key)
            run = client.create_run(
                experiment_id,
                tags={"mlflow.parentRunId": parent, "trial_key": key, "kind": "evaluation"},
            ).info.run_id
            params = {
                "fraction": fraction,
                "n_pairs": pairs,
                "w_distill": w_distill,
                "seed": seed,
                "recipe": recipe,
                "budget": budget,
                "encoder_key": f"enc-{fraction}-{w_distill}-{seed}",
            }
            for name, value in params.items():
                client.log_param(run, name, value)
            metrics = {"fid": clean_fid + gap, "fid_ci95": 0.1, "r_precision_top3": 0.5}
            metrics["r_precision_top3_ci95"] = 0.01
            for name, value in metrics.items():
                client.log_metric(run, name, value, step=pairs)
            client.set_terminated(run)
    return parent, keys


def test_report_from_mlflow_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent, keys = log_study(uri, "study", tmp_path / "artifacts")
    frame = search_evaluations(uri, "study")
    records = evaluation_records(frame)
    assert len(records) == len(keys) == 42
    baseline = [r for r in records if r.fraction == 0]
    assert {r.w_distill for r in baseline} == {None}

    out = tmp_path / "report"
    paths = report_experiment(uri, "study", out, parent_run_id=parent)
    names = {p.name for p in paths}
    for figure in (
        "fid_vs_pairs.png",
        "delta_fid_vs_pairs.png",
        "r_precision_top3_vs_pairs.png",
        "delta_fid_heatmap.png",
        "delta_fid_power_law.png",
    ):
        assert figure in names and (out / figure).stat().st_size > 10_000
    fits = {f["condition"]: f for f in json.loads((out / "fits.json").read_text())}
    assert set(fits) == {"char-swap b1 wd0", "char-swap b1 wd1"}
    for fit in fits.values():
        assert abs(fit["b"] - 0.5) < 0.05 and fit["points"] == 10
    rows = json.loads((out / "rows.json").read_text())
    attacked = [r for r in rows if r["condition"] == "char-swap b1" and r["fraction"] == 1.0]
    assert {r["w_distill"] for r in attacked} == {0.0, 1.0}
    assert all(r["seeds"] == 2 and r["delta_fid_ci95"] > 0 for r in attacked)
    summary = (out / "summary.md").read_text()
    assert "| 0 (original) |" in summary and "b ± 95 %" in summary
    assert "<table>" in (out / "summary.html").read_text()
    logged = {a.path for a in MlflowClient(uri).list_artifacts(parent, "report")}
    assert "report/summary.html" in logged and "report/delta_fid_heatmap.png" in logged

    # only the given trials
    some = {k for k in keys if "-0.5-" in k or k.startswith("ev-0.0-")}
    subset = evaluation_records(frame, some)
    assert len(subset) == len(some) == 2 + 8


def test_report_of_a_sweep_without_attacks(tmp_path):
    """Clean conditions only: every figure is written, the ΔFID ones say there is nothing to
    draw, and matplotlib has nothing to warn about (an empty legend warned before)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, keys = log_study(uri, "study", tmp_path / "artifacts")
    frame = search_evaluations(uri, "study")
    clean = evaluation_records(frame, {k for k in keys if k.endswith("-none")})
    assert len(clean) == 21
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_report(clean, tmp_path / "report", "clean only")
    assert {"fid_vs_pairs.png", "delta_fid_power_law.png"} <= {p.name for p in paths}
    assert json.loads((tmp_path / "report" / "fits.json").read_text()) == []


def test_report_names_a_missing_experiment(tmp_path):
    with pytest.raises(ReportError, match="no MLflow experiment 'nope'"):
        report_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "nope", tmp_path / "out")
