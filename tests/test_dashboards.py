"""The dashboard report: the scaling answer (a trend per doubling with its interval and test,
a power law only where enough set sizes identify it), and the report reads evaluation runs
back from a real MLflow store and writes every figure and table."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from dashboards.report import (
    ReportError,
    evaluation_records,
    report_experiment,
    search_evaluations,
    write_report,
)
from dashboards.scaling import fit_power_law, power_law, scaling_row, trend

PAIRS = (300, 750, 1500, 3000, 6000)


def test_power_law_fit_recovers_the_exponent():
    rng = np.random.default_rng(0)
    n = np.repeat(np.array(PAIRS, dtype=float), 3)
    y = power_law(n, 40.0, 0.6, 0.5) + rng.normal(0, 0.01, len(n))
    fit = fit_power_law(n, y)
    assert fit is not None and fit.points == len(n) and fit.identifiable
    assert abs(fit.b - 0.6) < max(fit.b_ci95, 0.03)
    assert abs(fit.c - 0.5) < 0.1 and fit.rmse < 0.05


def units(pairs, gaps_of_unit) -> dict[tuple, list[tuple[float, float]]]:
    """Points by seed unit: unit i gets gaps_of_unit(i, pairs) at every set size."""
    return {(0, i): list(zip(pairs, gaps_of_unit(i, np.asarray(pairs, float)))) for i in range(3)}


def test_a_power_law_on_three_set_sizes_is_refused():
    sizes = [300.0, 1500.0, 6000.0]
    assert fit_power_law(np.repeat(sizes, 3), np.tile([3.0, 2.0, 1.0], 3)) is None
    # four points but only two set sizes: the offset and the exponent cannot be told apart
    assert fit_power_law(np.array([100.0, 100, 400, 400]), np.array([3.0, 3.1, 1, 1.1])) is None
    row = scaling_row("greedy b1", "ΔFID", units(sizes, lambda i, n: 8 * n**-0.5 + 0.01 * i))
    assert row["power_law"] == "not fitted: 3 set sizes (needs 5)"
    assert "b" not in row and "power law" not in row["aic"]
    # the original encoder (N = 0) is left out of a fit
    n = np.array([0.0, *PAIRS])
    assert fit_power_law(n, power_law(np.maximum(n, 1), 5.0, 0.5, 0.0)).points == len(PAIRS)


def test_a_flat_trend_is_no_trend():
    rng = np.random.default_rng(3)
    flat = units(PAIRS, lambda i, n: 5.0 + rng.normal(0, 0.5, len(n)))
    row = scaling_row("char-swap b2", "ΔFID", flat)
    assert not row["trend_detected"] and row["ci95_low"] < 0 < row["ci95_high"]
    assert row["sentence"].startswith("char-swap b2: no trend detectable at this size")
    assert row["units"] == 3 and row["set_sizes"] == len(PAIRS)


def test_a_real_trend_is_found_with_its_sign_and_size():
    # ΔFID falls by 1.5 per doubling in every unit, with noise: the interval holds -1.5
    rng = np.random.default_rng(4)
    falling = units(PAIRS, lambda i, n: 20 - 1.5 * np.log2(n) + rng.normal(0, 0.2, len(n)))
    found = trend(falling)
    assert found.detected and found.low < -1.5 < found.high and found.p_value < 0.05
    row = scaling_row("greedy b2", "ΔFID", falling)
    assert "ΔFID shrinks by 1.5" in row["sentence"] and "95 % CI" in row["sentence"]
    # linear in log N has no saturation: the power law runs to its bound and says so
    assert row["power_law"].startswith("not identifiable")
    assert row["aic"]["log-linear"] < row["aic"]["constant"]
    # one unit: a slope, but no interval and no claim
    single = trend({(0, 0): falling[(0, 0)]})
    assert single.units == 1 and not single.detected
    assert "no trend can be claimed" in single.sentence("greedy b2")


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
            if recipe != "none":  # the attacked set's statistics, as the sweep logs them
                metrics.update(attack_success_rate=0.9, attack_similarity_mean=0.95,
                               attack_similarity_p05=0.93, attack_mean_words_changed=1.0)
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
        "delta_fid_trend.png",
    ):
        assert figure in names and (out / figure).stat().st_size > 10_000
    rows = json.loads((out / "fits.json").read_text())
    fits = {f["condition"]: f for f in rows if f["metric"] == "ΔFID"}
    assert set(fits) == {"char-swap b1 wd0", "char-swap b1 wd1"}
    for fit in fits.values():
        # ΔFID = 8 N^-0.5 + 0.2: falls with every doubling, five sizes identify the power law
        assert fit["trend_detected"] and fit["slope_per_doubling"] < 0
        assert abs(fit["power_law"]["b"] - 0.5) < 0.05 and fit["points"] == 10
    rows = json.loads((out / "rows.json").read_text())
    attacked = [r for r in rows if r["condition"] == "char-swap b1" and r["fraction"] == 1.0]
    assert {r["w_distill"] for r in attacked} == {0.0, 1.0}
    assert all(r["seeds"] == 2 and r["delta_fid_ci95"] > 0 for r in attacked)
    (audit,) = json.loads((out / "audit.json").read_text())
    assert audit["condition"] == "char-swap b1" and audit["success_rate"] == pytest.approx(0.9)
    assert audit["similarity_p05"] == pytest.approx(0.93) and audit["samples"] == []
    summary = (out / "summary.md").read_text()
    assert "## Attack audit" in summary and "| char-swap b1 | 0.900 | 0.950 | 0.930 |" in summary
    assert "| 0 (original) |" in summary and "per doubling ± 95 %" in summary
    assert "- char-swap b1 wd0: ΔFID shrinks by" in summary
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
    assert {"fid_vs_pairs.png", "delta_fid_trend.png"} <= {p.name for p in paths}
    assert json.loads((tmp_path / "report" / "fits.json").read_text()) == []


def test_report_names_a_missing_experiment(tmp_path):
    with pytest.raises(ReportError, match="no MLflow experiment 'nope'"):
        report_experiment(f"sqlite:///{tmp_path / 'mlflow.db'}", "nope", tmp_path / "out")


def test_a_report_says_its_protocol_and_refuses_a_mix(tmp_path):
    """Runs without a protocol tag (older versions) read as in-domain; the transfer and the
    in-domain readings are never averaged into one table."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    _, keys = log_study(uri, "study", tmp_path / "artifacts")
    records = evaluation_records(search_evaluations(uri, "study"), set(keys))
    assert {r.protocol for r in records} == {"in-domain"}
    write_report(records, tmp_path / "report", "in domain")
    assert "In domain: fine-tuned, generated and scored on one data set's splits." in (
        tmp_path / "report" / "summary.md"
    ).read_text()
    records[0] = dataclasses.replace(records[0], protocol="transfer", trained_on="synthetic")
    with pytest.raises(ReportError, match="mix the in-domain and the transfer protocol"):
        write_report(records, tmp_path / "mixed", "mixed")
    assert not (tmp_path / "mixed").exists()  # nothing half-written
