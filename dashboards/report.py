"""The study's report from its MLflow runs: FID, ΔFID and R-precision top-3 against the number
of fine-tuning pairs, ΔFID heat maps over fraction x w_distill, the change of every robustness
gap per doubling of the fine-tuning set (with its interval, a test against no trend, and a
power law only where enough set sizes identify one), the real-versus-real floor, and
a Markdown and an HTML summary; written to a folder and logged to the sweep's parent run.

    python dashboards/report.py --experiment NAME [--tracking-uri URI] [--out DIR]
        [--parent RUN_ID | --no-log]

The sweep calls it at its end for its own evaluations; by hand it covers every evaluation run
of the experiment (one experiment per study).
"""

from __future__ import annotations

import argparse
import html
import json
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import numpy as np

from dashboards.plots import curves, delta_heatmaps, delta_vs_drift, trend_figure
from dashboards.scaling import scaling_row
from dashboards.tables import (
    DROPS,
    Evaluation,
    Gap,
    ci_text,
    condition_label,
    format_table,
    robustness_gaps,
    row_headline,
    summary_rows,
)

ARTIFACT_FOLDER = "report"
FIGURES = {
    "fid_vs_pairs.png": ("fid", "FID"),
    "delta_fid_vs_pairs.png": ("delta_fid", "ΔFID"),
    "r_precision_top3_vs_pairs.png": ("r_precision_top3", "R-precision top-3"),
}
# an action-recognition study (MSR Action3D) draws accuracy and its drop instead of R-precision
ACTION_FIGURES = {
    "fid_vs_pairs.png": ("fid", "FID"),
    "delta_fid_vs_pairs.png": ("delta_fid", "ΔFID"),
    "accuracy_top1_vs_pairs.png": ("accuracy_top1", "recognition accuracy top-1"),
    "accuracy_drop_vs_pairs.png": ("accuracy_drop", "accuracy drop (clean − attacked)"),
}


class ReportError(RuntimeError):
    """Nothing to report on, or no run to log to; the message says which experiment or run."""


def _value(text, kind=float):
    """A logged param back as a number (None for 'None' or missing)."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "None":
        return None
    return kind(float(text))


def evaluation_records(frame, trial_keys: set[str] | None = None) -> list[Evaluation]:
    """Evaluation runs of `mlflow.search_runs` as the tables' evaluations, optionally only
    those whose trial key is in `trial_keys`."""
    records = []
    metric_columns = [c for c in frame.columns if c.startswith("metrics.")]
    for _, run in frame.iterrows():
        key = run.get("tags.trial_key")
        if not isinstance(key, str) or (trial_keys is not None and key not in trial_keys):
            continue
        metrics = {
            c.removeprefix("metrics."): float(run[c])
            for c in metric_columns
            if run[c] is not None and np.isfinite(run[c])
        }
        if "fid" not in metrics:
            continue
        records.append(
            Evaluation(
                key=key,
                encoder_key=run.get("params.encoder_key"),
                fraction=_value(run.get("params.fraction")) or 0.0,
                w_distill=_value(run.get("params.w_distill")),
                seed=_value(run.get("params.seed"), int),
                recipe=run.get("params.recipe"),
                budget=_value(run.get("params.budget"), int) or 0,
                n_pairs=_value(run.get("params.n_pairs"), int) or 0,
                metrics=metrics,
                run_id=run["run_id"],
                arm=run.get("params.generator") if isinstance(run.get("params.generator"), str)
                else "frozen",
                subset_seed=_value(run.get("params.subset_seed"), int),
                protocol=_tag(run, "protocol") or "in-domain",  # runs of older versions
                trained_on=_tag(run, "trained_on"),
            )
        )
    return records


def _tag(run, name: str) -> str:
    value = run.get(f"tags.{name}")
    return value if isinstance(value, str) else ""


PROTOCOLS = {
    "in-domain": "In domain: fine-tuned, generated and scored on one data set's splits.",
    "transfer": (
        "Transfer: MoCLIP fine-tuned and the generator trained on the {trained_on} corpus; "
        "the prompts are MSR Action3D's actions; the generated motions are retargeted to the "
        "Kinect skeleton (moclip.data.retarget) and scored by the action recogniser against "
        "MSR Action3D's real test subjects."
    ),
}


def protocol_text(records: list[Evaluation]) -> str:
    """The one protocol the records share, in a sentence; a ReportError if they mix the
    in-domain and the transfer readings (whose numbers are not comparable)."""
    found = {(r.protocol, r.trained_on) for r in records}
    if len({p for p, _ in found}) > 1:
        raise ReportError(
            "the runs mix the in-domain and the transfer protocol (tag 'protocol'); report "
            "one sweep at a time (its parent run) or give each its own experiment"
        )
    name, trained_on = min(found)
    return PROTOCOLS[name].format(trained_on=trained_on or "text-motion")


def unit_points(
    records: list[Evaluation], gaps: dict[str, Gap]
) -> dict[str, dict[tuple, list[tuple[float, float]]]]:
    """Per attacked condition (and w_distill, when there are several, and generator arm): the
    fine-tuned encoders' (pairs, gap) points by seed unit, what the trend is fitted to."""
    weights = {r.w_distill for r in records if r.fraction > 0}
    points: dict[str, dict[tuple, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in records:
        if r.recipe == "none" or r.fraction <= 0 or r.key not in gaps:
            continue
        label = f"{r.recipe} b{r.budget}"
        if len(weights) > 1:
            label += f" wd{r.w_distill:g}"
        if r.arm != "frozen":
            label += f" {r.arm}"
        points[label][r.unit].append((r.n_pairs, gaps[r.key].value))
    return {label: dict(units) for label, units in points.items()}


def _cell(row: dict, name: str, signed: bool = False, digits: int = 3) -> str:
    gap = name in ("delta_fid", "accuracy_drop", "r_precision_drop")
    if name not in row or (gap and row["recipe"] == "none"):
        return "—"
    sign = "+" if signed else ""
    return f"{row[name]:{sign}.{digits}f} ± {ci_text(row[f'{name}_ci95'], digits)}"


def _result_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    headline = row_headline(rows)
    header = ["fraction", "pairs", "w_distill", "generator", "condition", "seeds", "FID", "ΔFID"]
    header += ["KID", {"accuracy_top1": "accuracy top-1"}.get(headline, "R-prec top-3"), "drop"]
    body = [
        [
            "0 (original)" if r["fraction"] == 0 else f"{r['fraction']:g}",
            f"{r['n_pairs']:.0f}",
            "—" if r["w_distill"] is None else f"{r['w_distill']:g}",
            r.get("generator", "frozen"),
            r["condition"],
            str(r["seeds"]) + (" (repeats)" if r.get("spread") == "repeats" else ""),
            _cell(r, "fid"),
            _cell(r, "delta_fid", signed=True),
            _cell(r, "kid", digits=4),
            _cell(r, headline),
            _cell(r, DROPS[headline], signed=True),
        ]
        for r in rows
    ]
    return header, body


def _scaling_table(fits: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["condition", "gap", "per doubling ± 95 %", "p", "units x sizes", "AIC best",
              "power law"]
    body = []
    for f in fits:
        if "slope_per_doubling" not in f:
            body.append([f["condition"], f["metric"], "—", "—", "—", "—", "—"])
            continue
        half = (f["ci95_high"] - f["ci95_low"]) / 2
        law = f["power_law"]
        if isinstance(law, dict):
            law = f"b = {law['b']:.3f} ± {law['b_ci95']:.3g}"
        aics = f["aic"]
        best = min(aics, key=aics.get)
        body.append([
            f["condition"],
            f["metric"],
            f"{f['slope_per_doubling']:+.3f} ± {ci_text(half)}",
            ci_text(f["p_value"], 3),
            f"{f['units']} x {f['set_sizes']}",
            best,
            law,
        ])
    return header, body


def floor_line(records: list[Evaluation]) -> str:
    """The real-versus-real floor the clean evaluations recorded, in one sentence."""
    found = next((r.metrics for r in records if "floor_fid" in r.metrics), None)
    if found is None:
        return "No real-versus-real floor was recorded."
    return (
        f"Real-versus-real floor: {found['floor_motions']:.0f} real motions held out from the "
        f"scored split against its {found['floor_reference']:.0f} real motions score FID "
        f"{found['floor_fid']:.3f} ± {ci_text(found['floor_fid_ci95'])} and KID "
        f"{found['floor_kid']:.4f} ± {ci_text(found['floor_kid_ci95'], 4)} (10 draws): a perfect "
        f"generator scores this at the same sample sizes, so FID above it is the generator's."
    )


def intro_text(records: list[Evaluation], rows: list[dict]) -> str:
    """What the table's numbers are: sizes, what each interval spans, how ΔFID is paired."""
    draws = sorted({r.subset_seed for r in records if r.subset_seed is not None})
    seeds = sorted({r.seed for r in records if r.seed is not None and r.fraction > 0})
    repeats = min((r.get("repeats", 1) for r in rows), default=1)
    return (
        f"{len(records)} evaluation runs; fine-tuned encoders over {len(draws)} subset draw(s) "
        f"x {len(seeds)} training seed(s), the original encoder over as many generation seeds; "
        f"{repeats} generation repeat(s) each. Means over seed units with 95 % Student-t "
        "intervals over them (n − 1 degrees of freedom; the subset draws' spread is in them "
        "only where there are several); a row marked (repeats) has one unit, and its interval "
        "spans its generation repeats only. ΔFID = FID(attacked) − FID(clean) of the same "
        "encoder and unit, paired repeat by repeat on the shared diffusion noise; the drop = "
        "clean − attacked of the second metric. KID: unbiased MMD² with the cubic polynomial "
        "kernel; rows.json holds the per-unit values behind every mean."
    )


def _markdown_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def audit_rows(
    records: list[Evaluation], samples: dict[str, list[tuple[str, str]]] | None = None
) -> list[dict]:
    """Per attacked condition: the share of prompts changed (each change passed the meaning
    check), the judge similarity of the changed ones (mean, 5th percentile; means over the
    condition's evaluations), and a few clean -> perturbed pairs where `samples` has them."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.recipe != "none" and r.arm == "frozen" and "attack_success_rate" in r.metrics:
            groups[condition_label(r.recipe, r.budget)].append(r.metrics)
    rows = []
    for condition, found in sorted(groups.items()):
        row = {"condition": condition, "evaluations": len(found)}
        for name in ("success_rate", "similarity_mean", "similarity_p05", "mean_words_changed"):
            values = [m[f"attack_{name}"] for m in found if f"attack_{name}" in m]
            row[name] = float(np.mean(values)) if values else math.nan
        row["samples"] = (samples or {}).get(condition, [])[:AUDIT_SAMPLES]
        rows.append(row)
    return rows


AUDIT_SAMPLES = 5


def _audit_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["condition", "changed (meaning kept)", "judge sim. mean", "5th pct", "words",
              "e.g. clean → perturbed"]
    body = [
        [
            r["condition"],
            ci_text(r["success_rate"]),
            ci_text(r["similarity_mean"]),
            ci_text(r["similarity_p05"]),
            ci_text(r["mean_words_changed"], 2),
            "; ".join(f"{a} → {b}" for a, b in r["samples"][:2]) or "—",
        ]
        for r in rows
    ]
    return header, body


def write_report(
    records: list[Evaluation],
    out: Path,
    title: str,
    samples: dict[str, list[tuple[str, str]]] | None = None,
) -> list[Path]:
    """Figures, fits.json, rows.json, audit.json, summary.md and summary.html for `records`
    in `out`; `samples`: per attacked condition, clean -> perturbed pairs for the audit."""
    if not records:
        raise ReportError(f"{title}: no evaluation runs with an FID to report on")
    protocol = protocol_text(records)  # refuses a mix before anything is written
    out.mkdir(parents=True, exist_ok=True)
    gaps = robustness_gaps(records)
    rows = summary_rows(records, gaps)
    shown = ACTION_FIGURES if row_headline(rows) == "accuracy_top1" else FIGURES
    figures = [curves(rows, metric, label, out / name) for name, (metric, label) in shown.items()]
    frozen = [r for r in rows if r.get("generator", "frozen") == "frozen"]
    figures.append(delta_heatmaps(frozen, out / "delta_fid_heatmap.png"))
    drifts = [
        (r.metrics["drift"], gaps[r.key].value, r.arm, condition_label(r.recipe, r.budget))
        for r in records
        if r.recipe != "none" and r.fraction > 0 and r.key in gaps and "drift" in r.metrics
    ]
    figures.append(delta_vs_drift(drifts, out / "delta_fid_vs_drift.png"))
    headline = row_headline(rows)
    drops = robustness_gaps(records, headline)
    scaling = []
    for metric, found, sign, label in (
        ("delta_fid", gaps, 1.0, "ΔFID"),
        (DROPS[headline], drops, -1.0, {"accuracy_drop": "accuracy drop"}.get(
            DROPS[headline], "R-precision drop"
        )),
    ):
        signed = {key: Gap(sign * g.value, ()) for key, g in found.items()}
        points = unit_points(records, signed)
        scaling += [scaling_row(c, label, points[c]) for c in sorted(points)]
        if metric == "delta_fid":
            figures.append(trend_figure(points, scaling, out / "delta_fid_trend.png"))
    (out / "fits.json").write_text(json.dumps(scaling, indent=2) + "\n")
    (out / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
    audit = audit_rows(records, samples)
    (out / "audit.json").write_text(json.dumps(audit, indent=2, ensure_ascii=False) + "\n")

    stamp = time.strftime("%Y-%m-%d %H:%M")
    intro = protocol + " " + intro_text(records, rows)
    floor = floor_line(records)
    result, fit = _result_table(rows), _scaling_table(scaling)
    fit_intro = (
        "Each gap's change per doubling of the fine-tuning set: the slope against log2(pairs) "
        "of each seed unit, averaged, with a 95 % Student-t interval over units and a t-test "
        "against no trend. AIC compares a constant gap with one linear in log2(pairs) (and a "
        "power law a·N^(−b) + c, fitted only with at least 5 set sizes and reported only "
        "where it is identifiable)."
    )
    answers = [f"- {row['sentence']}" for row in scaling]
    markdown = [f"# {title}", "", f"_{stamp}._ {intro}", "", floor, ""]
    markdown += ["## The answer", "", *answers, ""]
    markdown += [_markdown_table(*result), ""]
    markdown += ["## Scaling", "", fit_intro, "", _markdown_table(*fit), ""]
    audit_intro = (
        "The attacks: every change passed the meaning check (judge similarity to the clean "
        "prompt at least the threshold, no antonym swap), so the changed share is the share of "
        "prompts attacked with their meaning kept."
    )
    markdown += ["## Attack audit", "", audit_intro, "", _markdown_table(*_audit_table(audit)), ""]
    for row in audit:
        if row["samples"]:
            markdown += [f"**{row['condition']}**", ""]
            markdown += [f"- {a} → {b}" for a, b in row["samples"]] + [""]
    markdown += [f"![{p.stem}]({p.name})\n" for p in figures]
    summary_md = out / "summary.md"
    summary_md.write_text("\n".join(markdown))
    images = "".join(f'<p><img src="{p.name}" alt="{p.stem}"></p>' for p in figures)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}img{max-width:100%}"
        f"</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p><em>{stamp}.</em> {html.escape(intro)}</p><p>{html.escape(floor)}</p>"
        "<h2>The answer</h2><ul>"
        + "".join(f"<li>{html.escape(row['sentence'])}</li>" for row in scaling)
        + f"</ul>{_html_table(*result)}"
        f"<h2>Scaling</h2><p>{html.escape(fit_intro)}</p>{_html_table(*fit)}"
        f"<h2>Attack audit</h2><p>{html.escape(audit_intro)}</p>"
        f"{_html_table(*_audit_table(audit))}"
        f"{images}</body></html>"
    )
    summary_html = out / "summary.html"
    summary_html.write_text(page)
    return [
        *figures, out / "fits.json", out / "rows.json", out / "audit.json", summary_md, summary_html
    ]


def search_evaluations(tracking_uri: str, experiment: str):
    """Every evaluation run of `experiment` as a DataFrame (mlflow.search_runs)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        raise ReportError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    return mlflow.search_runs(
        experiment_names=[experiment],
        filter_string="tags.kind = 'evaluation'",
        output_format="pandas",
    )


def latest_sweep_run(tracking_uri: str, experiment: str) -> str:
    """The run id of the experiment's most recent sweep (parent) run."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    frame = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string="tags.kind = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if frame.empty:
        raise ReportError(f"experiment {experiment!r} at {tracking_uri} has no sweep run")
    return str(frame.iloc[0]["run_id"])


def perturbed_samples(
    tracking_uri: str, records: list[Evaluation]
) -> dict[str, list[tuple[str, str]]]:
    """Per attacked condition, the first changed clean -> perturbed pairs of one evaluation's
    perturbed set (its `perturbed_prompts` artifact; the original encoder's where it has one)."""
    import tempfile

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    chosen: dict[str, Evaluation] = {}
    for r in sorted(records, key=lambda r: (r.fraction, r.unit)):
        if r.recipe != "none" and r.run_id and r.arm == "frozen":
            chosen.setdefault(condition_label(r.recipe, r.budget), r)
    samples = {}
    with tempfile.TemporaryDirectory() as folder:
        for index, (condition, record) in enumerate(chosen.items()):
            own = Path(folder, str(index))  # one folder per run: the sets share a file name
            own.mkdir()
            try:
                local = Path(
                    client.download_artifacts(record.run_id, "perturbed_prompts", str(own))
                )
            except Exception:  # noqa: BLE001 - a run without the artifact has no sample
                continue
            pairs = []
            for path in sorted(local.rglob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines()[1:]:
                    row = json.loads(line)
                    if row["original"] != row["perturbed"]:
                        pairs.append((row["original"], row["perturbed"]))
            samples[condition] = pairs[:AUDIT_SAMPLES]
    return samples


def report_experiment(
    tracking_uri: str,
    experiment: str,
    out: Path,
    parent_run_id: str | None = None,
    trial_keys: set[str] | None = None,
) -> list[Path]:
    """Read the evaluation runs, write the report to `out` and, with `parent_run_id`, log it
    to that run under report/."""
    from mlflow.tracking import MlflowClient

    records = evaluation_records(search_evaluations(tracking_uri, experiment), trial_keys)
    samples = perturbed_samples(tracking_uri, records)
    paths = write_report(
        records, out, f"{experiment}: FID against fine-tuning set size", samples
    )
    if parent_run_id is not None:
        client = MlflowClient(tracking_uri)
        for path in paths:
            client.log_artifact(parent_run_id, str(path), ARTIFACT_FOLDER)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", required=True, help="the study's MLflow experiment")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./moclip_runs/mlflow.db)",
    )
    parser.add_argument("--out", type=Path, help="folder for the report (default: ./report-NAME)")
    parser.add_argument("--parent", help="log the report to this run (default: the latest sweep)")
    parser.add_argument("--no-log", action="store_true", help="only write the folder")
    args = parser.parse_args(argv)
    local = f"sqlite:///{Path('moclip_runs', 'mlflow.db').resolve()}"  # the sweep's default
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or local
    out = args.out or Path(f"report-{args.experiment}")
    try:
        parent = None if args.no_log else (args.parent or latest_sweep_run(uri, args.experiment))
        paths = report_experiment(uri, args.experiment, out, parent)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[report] {len(paths)} files in {out.resolve()}; open {out / 'summary.html'}")
    if parent:
        print(f"[report] logged to run {parent} under {ARTIFACT_FOLDER}/")
    print(format_table(json.loads((out / "rows.json").read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
