"""What the driver does with each finished trial: keep it in the result store (what makes a sweep
resumable) and log it to MLflow as a child run of the sweep's parent run, never twice; and, at
the end, the table and the report (drawn by `dashboards/`) into the sweep's folder and run.
"""

from __future__ import annotations

import json
from pathlib import Path

from dashboards.tables import (
    DROPS,
    Gap,
    format_table,
    headline_metric,
    robustness_gaps,
    summary_rows,
)
from sweeps.config import StudyConfig
from sweeps.execution import checkpoint_uri, numeric
from sweeps.log import stage_log
from sweeps.plan import SEARCHED, finetune_config, finetune_job
from sweeps.records import (
    PERTURBED_FILE,
    EvaluationJob,
    FinetuneJob,
    SearchJob,
    TrialRecord,
    as_evaluation,
)
from sweeps.results import ResultStore
from sweeps.tracking import Tracker


def fields_of(record, *names: str) -> dict:
    """Some fields of a job or config, by name, as MLflow params."""
    return {name: getattr(record, name) for name in names}


class Recorder:
    """The result store and the MLflow tracker of one sweep, and how each kind of trial goes
    into both."""

    def __init__(
        self,
        config: StudyConfig,
        store: ResultStore,
        tracker: Tracker,
        storage: str,
        folder: Path,
        tracking_uri: str,
    ) -> None:
        self.config = config
        self.store = store
        self.tracker = tracker
        self.storage = storage  # Ray's, where checkpoints lie
        self.folder = folder  # the sweep's own: table, rows, report
        self.tracking_uri = tracking_uri

    # the parent run and stage 0 -----------------------------------------------------------

    def open_parent(self, sweep_key: str, stage0, code_version: str) -> bool:
        """Create the sweep's parent run (the whole config as params; the code, data
        fingerprints, the loader's repairs, package versions and platform as tags), or find
        it again; whether it existed."""
        from sweeps.tracking import flatten, package_versions, platform_facts

        tags = {
            "code_version": code_version,
            "data_fingerprint": stage0.data_fingerprint,
            "train_fingerprint": stage0.train_fingerprint,
            "test_fingerprint": stage0.test_fingerprint,
            # a transfer study's MSR Action3D splits: what it was scored on
            **{f"{name}_fingerprint": v for name, v in stage0.scored_fingerprints.items()},
            **{
                f"data.repairs.{split}.{name}": str(count)
                for split, repairs in stage0.repairs.items()
                for name, count in repairs["counts"].items()
            },
            **{f"version.{k}": v for k, v in package_versions().items()},
            **{f"platform.{k}": v for k, v in platform_facts().items()},
        }
        name = f"sweep {self.config.name} {sweep_key}"
        return self.tracker.open_parent(sweep_key, name, flatten(self.config.to_dict()), tags)

    def log_stage0(self, stage0) -> None:
        """Stage 0's models, prompt sets, data repairs and scoring-model figures into the
        parent run."""
        self.tracker.parent_artifact(stage0.evaluator_path, "stage0")
        self.tracker.parent_artifact(stage0.generator_path, "stage0")
        for path in stage0.transfer_paths.values():
            self.tracker.parent_artifact(path, "stage0/perturbed_prompts")
        if stage0.repairs:  # what the loader trimmed, filled and dropped, with the ids
            path = self.folder / "data_repairs.json"
            path.write_text(json.dumps(stage0.repairs, indent=2) + "\n")
            self.tracker.parent_artifact(path, "stage0")
        prefix = "recognizer_" if stage0.labels is not None else "evaluator_gt_"
        self.tracker.parent_metrics(
            {f"{prefix}{k}": v for k, v in stage0.figures["evaluator"].items()}
        )

    # stage 1 ------------------------------------------------------------------------------

    def record_finetune(self, job: FinetuneJob, result: dict, checkpoint) -> str:
        record = TrialRecord(
            key=job.key,
            kind="finetune",
            job=job,
            metrics=numeric(result),
            # Ray Train's runs name their checkpoint in the result; local-mode ones are Tune's
            checkpoint=checkpoint_uri(
                self.storage, result.get("checkpoint_path") or checkpoint.path
            ),
        )
        self.store.put(record)
        self.log_finetune(record)
        metrics = record.metrics
        resumed = int(metrics.get("resumed_at_step", 0))
        chosen = int(metrics.get("selected_step", metrics.get("step", 0)))
        return (
            f"{job.n_pairs} pairs, {metrics.get('epochs', 0):.3g} epochs = "
            f"{int(metrics.get('step', 0))} steps (checkpoint of step {chosen}), R-precision "
            f"top-1 {metrics.get('r_precision_top1', 0):.3f},"
            f" drift {metrics.get('teacher_drift', 0):.3f}"
            + (f" (resumed from its step-{resumed} checkpoint)" if resumed else "")
        )

    def log_baseline(self, baseline: FinetuneJob) -> None:
        self.tracker.child(
            baseline.key,
            "finetune original encoder",
            {"fraction": 0.0, "n_pairs": 0, "encoder": self.config.encoder.identity},
            {"drift": 1.0},
            step=0,
            tags={"kind": "finetune", "fraction": "0"},
        )

    def log_finetune(self, record: TrialRecord) -> None:
        import ray.train

        if self.tracker.find_trial(record.key):
            return
        job = record.job
        effective = finetune_config(self.config, job)
        params = {
            **fields_of(job, "fraction", "n_pairs", "n_motions", "w_contrastive", "w_distill"),
            "seed": job.seed,
            "subset_seed": job.subset_seed,
            **fields_of(
                effective, "epochs", "steps", "motion_only_steps", "lr_text", "lr_motion"
            ),
            "checkpoint": record.checkpoint,
        }
        metrics = {**record.metrics, "drift": record.metrics.get("teacher_drift", float("nan"))}
        # a checkpoint in local storage is read where it lies (no copy of ~100 MB while the
        # other trials train); one in S3 is downloaded to a temporary folder
        with ray.train.Checkpoint(record.checkpoint).as_directory() as folder:
            self.tracker.child(
                record.key,
                job.name,
                params,
                metrics,
                step=job.n_pairs,
                tags={"kind": "finetune", "fraction": f"{job.fraction:g}"},
                artifacts=[(Path(folder) / "moclip.pt", "checkpoint")],
            )

    # Optuna mode --------------------------------------------------------------------------

    def record_search(self, stage0, job: SearchJob, result: dict, checkpoint) -> str:
        """Keep one Optuna trial. Its fine-tune is not kept for stage 1: a search trial never
        reads the test split, so stage 1 trains the chosen values again and scores them."""
        config = self.config
        params = {name: float(getattr(job, name)) for name in SEARCHED}
        finetune = finetune_job(
            config, stage0, job.fraction, job.seed, job.w_contrastive, **params,
            subset_seed=job.subset_seed,
        )
        steps = int(result.get("step", 0))
        complete = steps == finetune_config(config, finetune).steps
        record = TrialRecord(
            key=f"{job.group}-{finetune.key}",
            kind="search",
            job=finetune,
            params=params,
            objective=float(result["objective"]),
            steps=steps,
            complete=complete,
            metrics=numeric(result),
        )
        self.store.put(record)
        self.log_search(record)
        outcome = "all steps" if complete else f"stopped by ASHA after {steps} steps"
        values = ", ".join(f"{k}={v:.3g}" for k, v in params.items())
        return f"{config.search.objective} {record.objective:.3f} ({outcome}) with {values}"

    def log_search(self, record: TrialRecord) -> None:
        if self.tracker.find_trial(record.key):
            return
        job = record.job
        params = {**fields_of(job, "fraction", "n_pairs", "seed", "w_contrastive"), **record.params}
        metrics = {k: v for k, v in record.metrics.items() if k.startswith("objective")}
        metrics["steps_trained"] = record.steps
        self.tracker.child(
            record.key,
            f"search f{job.fraction:g} wd{job.w_distill:.3g}",
            params,
            metrics,
            step=record.steps,
            tags={
                "kind": "search",
                "fraction": f"{job.fraction:g}",
                "outcome": "complete" if record.complete else "stopped early",
            },
        )

    # stage 2 ------------------------------------------------------------------------------

    def record_evaluation(self, job: EvaluationJob, result: dict, checkpoint) -> str:
        perturbed = None
        if checkpoint is not None and job.recipe != "none":
            folder = self.store.folder / "sets"
            folder.mkdir(parents=True, exist_ok=True)
            with checkpoint.as_directory() as source:
                perturbed = folder / f"{job.key}.jsonl"
                perturbed.write_bytes((Path(source) / PERTURBED_FILE).read_bytes())
        record = TrialRecord(
            key=job.key,
            kind="evaluation",
            job=job,
            metrics=numeric(result),
            perturbed=str(perturbed) if perturbed else None,
            # the adapted arm's generator, which the encoder's other adapted evaluations read
            checkpoint=checkpoint_uri(self.storage, checkpoint.path) if job.adapts else None,
        )
        self.store.put(record)
        self.log_evaluation(record)
        metrics = record.metrics
        if "accuracy_top1" in metrics:
            second = f"accuracy top-1 {metrics['accuracy_top1']:.3f}"
        else:
            second = f"R-precision top-3 {metrics['r_precision_top3']:.3f}"
        return f"FID {metrics['fid']:.3f} ± {metrics['fid_ci95']:.3f}, {second}"

    def log_evaluation(self, record: TrialRecord) -> None:
        from dashboards.tables import condition_label

        if self.tracker.find_trial(record.key):
            return
        job = record.job
        params = fields_of(
            job, "fraction", "n_pairs", "w_contrastive", "w_distill", "seed", "recipe", "budget"
        )
        params["subset_seed"] = job.subset_seed
        params["encoder_key"] = job.encoder_key
        params["generator"] = job.arm
        metrics = dict(record.metrics)
        if job.drift is not None:
            metrics["drift"] = job.drift
        artifacts = [(Path(record.perturbed), "perturbed_prompts")] if record.perturbed else []
        self.tracker.child(
            record.key,
            job.name,
            params,
            metrics,
            step=job.n_pairs,
            tags={
                "kind": "evaluation",
                "condition": condition_label(job.recipe, job.budget),
                "recipe": job.recipe,
                "budget": str(job.budget),
                "fraction": f"{job.fraction:g}",
                "generator": job.arm,
            },
            artifacts=artifacts,
        )

    # the end ------------------------------------------------------------------------------

    def report(self, records: list[TrialRecord], log_to_parent: bool) -> str:
        """ΔFID into each evaluation run, and the table and the dashboard report (figures,
        fits, summary) into the sweep's folder; with `log_to_parent`, the curves, the table
        and the report into the parent run too. Returns the table."""
        from dashboards.report import report_experiment

        evaluations = [as_evaluation(record) for record in records]
        gaps = robustness_gaps(evaluations)
        headline = headline_metric(evaluations)
        drops = robustness_gaps(evaluations, headline)
        for record in records:
            if record.key in gaps and not record.delta_logged:
                # paired on each repeat's noise: the interval is Student-t over the repeats
                logged = gap_metrics("delta_fid", gaps[record.key])
                if record.key in drops:  # clean minus attacked
                    logged.update(gap_metrics(DROPS[headline], drops[record.key], -1.0))
                run_id = self.tracker.find_trial(record.key)
                self.tracker.log_metrics(run_id, logged, step=record.job.n_pairs)
                self.store.update(record.key, delta_logged=True)
        rows = summary_rows(evaluations, gaps)
        table = format_table(rows)
        (self.folder / "table.txt").write_text(table + "\n")
        (self.folder / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
        try:
            report_experiment(
                self.tracking_uri,
                self.config.tracking.experiment,
                self.folder / "report",
                parent_run_id=self.tracker.parent_id if log_to_parent else None,
                trial_keys={r.key for r in records},
            )
        except Exception as err:  # noqa: BLE001 - every result is stored; the report can wait
            stage_log("sweep").warning(
                "the report failed (%s: %s); every result is kept: python dashboards/report.py"
                " --experiment %s",
                type(err).__name__,
                err,
                self.config.tracking.experiment,
            )
        if log_to_parent:
            for row in rows:
                name = row["condition"].replace(" ", "_")
                name += "" if row.get("generator", "frozen") == "frozen" else "_adapted"
                metrics = {f"fid/{name}": row["fid"], f"{headline}/{name}": row[headline]}
                if row["recipe"] != "none":
                    for gap in ("delta_fid", DROPS[headline]):
                        if gap in row:
                            metrics[f"{gap}/{name}"] = row[gap]
                self.tracker.parent_metrics(metrics, step=int(row["n_pairs"]))
            for path in (self.folder / "table.txt", self.folder / "rows.json"):
                self.tracker.parent_artifact(path, "results")
        return table


def gap_metrics(name: str, gap: Gap, sign: float = 1.0) -> dict[str, float]:
    """One evaluation's gap as MLflow metrics: its value and Student-t half-width over the
    paired repeats (nan with fewer than two)."""
    from moclip.metrics import t_interval

    values = [sign * d for d in gap.per_repeat]
    half = t_interval(values)[1] if len(values) >= 2 else float("nan")
    return {name: sign * gap.value, f"{name}_ci95": half}
