"""The study: MoCLIP fine-tuning-set size versus robustness to adversarial prompts (FID).

    python sweeps/scale_vs_robustness.py [--config FILE] [key.path=value ...]
        [--tracking-uri URI] [--search grid|optuna] [--resume] [--quiet | --verbose]

e.g. `python sweeps/scale_vs_robustness.py --config sweeps/configs/smoke.yaml grid.seeds=[0,1]`.

The stages, each in its module:
- stage 0 (sweeps/stage0.py) builds or reuses the data, the frozen evaluator and generator and
  the transfer prompt sets;
- the Optuna stage (sweeps/optuna_stage.py, with --search optuna) picks each fraction's loss
  weight and learning rates, ASHA stopping weak fine-tunes;
- stage 1 fine-tunes MoCLIP on nested subsets (Ray Train in Ray Tune trials) and stage 2
  evaluates every encoder under every attack (Ray Tune trials), each encoder as soon as its
  fine-tune ends: one Tuner runs both (sweeps/schedule.py, sweeps/execution.py);
- every finished trial is stored and becomes an MLflow child run of the sweep's parent run
  (sweeps/recording.py), and the sweep ends with the table fraction x recipe x budget and the
  report (dashboards/).
Running the same command again reuses every finished trial and creates no duplicate runs;
--resume continues interrupted fine-tunes from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import yaml

from sweeps.config import ConfigError, StudyConfig, load_config
from sweeps.data import absolute_eval_root, protocol_tags
from sweeps.keys import sweep_key
from sweeps.log import RESULT, configure, stage_log
from sweeps.state import StageClock, SweepState, resume_hint, storage_location, ui_hint

log = stage_log("sweep")


class Sweep:
    """One sweep: the config, where things go, the result store and the MLflow tracker (in
    its recorder), and the stages after stage 0."""

    def __init__(self, config: StudyConfig, args: argparse.Namespace) -> None:
        from sweeps.recording import Recorder
        from sweeps.results import ResultStore
        from sweeps.tracking import Tracker, resolve_tracking_uri

        self.config = config
        self.workdir = Path(config.workdir).resolve()
        self.key = sweep_key(config)
        self.state = SweepState(self.workdir / "sweeps" / self.key)
        self.store = ResultStore(self.workdir / "results")
        self.storage = storage_location(config, self.workdir)
        previous = self.state.values.get("status")
        if args.resume and previous == "running":
            self.run_name = self.state.values["run_name"]
            log.info("resuming %s (Ray run %s)", self.key, self.run_name)
        else:
            if previous == "running":
                log.info(
                    "an earlier run of this sweep was interrupted: its finished trials are "
                    "reused, unfinished fine-tunes start again from step 0 (--resume continues "
                    "them from their last checkpoints)"
                )
            elif args.resume:
                log.info("nothing to resume for this config; starting it")
            self.run_name = time.strftime("%Y%m%d-%H%M%S")
        self.state.save(run_name=self.run_name, status="running")
        uri = resolve_tracking_uri(args.tracking_uri, config.tracking.tracking_uri, self.workdir)
        local = uri.startswith("sqlite:") and not (
            args.tracking_uri or config.tracking.tracking_uri
        )
        self.tracker = Tracker(
            uri,
            config.tracking.experiment,
            self.workdir / "mlartifacts" if local else None,
            run_tags=protocol_tags(config),
        )
        self.tracking_uri = uri
        self.recorder = Recorder(
            config, self.store, self.tracker, self.storage, self.state.folder, uri
        )
        self.interrupted = False  # a stage's Tuner stopped (SIGINT) before all trials ended
        self.log_stage0 = False  # stage 0's files still to be logged to a new parent run

    def ready_models(self, stage0, wait: bool = True) -> bool:
        """Whether stage 0's evaluator and generator are ready (with `wait`, once they are);
        the first time they are, log stage 0 to a new parent run."""
        if wait:
            stage0.wait_for_models()
        elif not stage0.collect_models():
            return False
        if self.log_stage0:
            self.log_stage0 = False
            self.recorder.log_stage0(stage0)
        return True

    def search(self, stage0) -> tuple[dict[float, dict], list[str]]:
        """The Optuna stage: each fraction's best values, and the fractions without one."""
        from sweeps.optuna_stage import run_search

        self.ready_models(stage0)
        tuned, missing, self.interrupted = run_search(
            self.config, stage0, self.recorder, self.run_name, self.storage
        )
        return tuned, missing

    def finetune_and_evaluate(self, stage0, tuned: dict | None = None) -> tuple[list, list]:
        """Stages 1 and 2 in one Tuner: fine-tune every grid point (or, with `tuned`, every
        fraction's Optuna choice for every seed) and evaluate every encoder under every
        condition, each where not finished before; (the evaluation records, the names of the
        fine-tunes and evaluations that did not finish)."""
        from sweeps.execution import (
            Tally,
            finetune_slots,
            make_progress_callback,
            run_trials,
            stage_resources,
            trainable,
            trial_retries,
        )
        from sweeps.plan import baseline_encoder, evaluation_jobs, finetune_jobs
        from sweeps.schedule import FinetunesThenEvaluations
        from sweeps.trials import stage_trial

        config, store, recorder = self.config, self.store, self.recorder
        finetunes = finetune_jobs(config, stage0, tuned)
        training = [job for job in finetunes if store.get(job.key) is None]
        stage_log("stage 1").info(
            "%d fine-tunes: %d finished earlier, %d to run (%s, %s)",
            len(finetunes),
            len(finetunes) - len(training),
            len(training),
            f"{config.finetune.epochs:g} epochs each"
            if config.finetune.epochs
            else f"{config.finetune.steps} steps each",
            "each in its Tune trial's process"
            if config.ray.local_finetunes
            else f"{config.ray.num_workers} worker(s) each",
        )
        baseline = baseline_encoder(config) if config.grid.baseline else None
        if baseline:
            recorder.log_baseline(baseline)
        for job in finetunes:
            if job not in training:
                recorder.log_finetune(store.get(job.key))
        evaluations = evaluation_jobs(config, stage0, ([baseline] if baseline else []) + finetunes)
        waiting = [job for job in evaluations if store.get(job.key) is None]
        encoders = len(finetunes) + bool(baseline)
        stage_log("stage 2").info(
            "%d evaluations (%d encoders x %d conditions): %d finished earlier, %d to run%s",
            len(evaluations),
            encoders,
            len(evaluations) // max(1, encoders),
            len(evaluations) - len(waiting),
            len(waiting),
            ", each once its encoder is fine-tuned" if training else "",
        )
        to_run = {job.key for job in waiting}
        for job in evaluations:
            if job.key not in to_run:
                recorder.log_evaluation(store.get(job.key))
        if training or waiting:
            by_encoder: dict[str, list] = {}
            for job in waiting:
                by_encoder.setdefault(job.encoder_key, []).append(job)
            # the adapted arm's generator, from the record of the evaluation that adapts it
            adapting = {job.encoder_key: job.key for job in evaluations if job.adapts}
            searcher = FinetunesThenEvaluations(
                training,
                by_encoder,
                encoder=lambda key: self.recorded_encoder(key, baseline),
                models_ready=lambda: self.ready_models(stage0, wait=False),
                wait_for_models=lambda: self.ready_models(stage0),
                max_finetunes=finetune_slots(config),
                adapted=lambda key: getattr(store.get(adapting.get(key, "")), "checkpoint", None),
            )
            tallies = {
                "finetune": Tally("stage 1", len(training), recorder.record_finetune),
                "evaluation": Tally("stage 2", len(waiting), recorder.record_evaluation),
            }
            payload = stage0.payload(config)
            run_trials(
                f"stages-{self.run_name}",
                trainable(
                    stage_trial, config, stage0, self.run_name, self.storage, payload=payload
                ),
                {},
                stage_resources(config),
                self.storage,
                make_progress_callback(tallies),
                lambda trial: trial.config["job"]["key"],
                # a searcher gets one pending trial at a time by default; as many as there are
                # trials lets every released one wait in Tune's queue, which is the demand an
                # autoscaling cluster sizes itself by (the searcher still holds back the rest)
                max_concurrent=len(training) + len(waiting),
                max_failures=trial_retries(config),
                search_alg=searcher,
                num_samples=len(training) + len(waiting),
            )
            ended = sum(tally.done + tally.failed for tally in tallies.values())
            self.interrupted = ended + len(searcher.dropped) < len(training) + len(waiting)
            if searcher.dropped:
                stage_log("stage 2").info(
                    "%d evaluations not run: their encoders' fine-tunes did not finish",
                    len(searcher.dropped),
                )
        missing = [job.name for job in finetunes if store.get(job.key) is None]
        if missing:
            stage_log("stage 1").info("not finished: %s", ", ".join(missing))
        # each encoder's record read once, not once per evaluation of it
        encoder_keys = {job.encoder_key for job in evaluations}
        recorded = {key for key in encoder_keys if self.recorded_encoder(key, baseline)}
        evaluated = [job for job in evaluations if job.encoder_key in recorded]
        records = [store.get(job.key) for job in evaluated]
        missing += [job.name for job, record in zip(evaluated, records) if record is None]
        return [record for record in records if record is not None], missing

    def recorded_encoder(self, key: str, baseline) -> dict | None:
        """What an evaluation needs of its encoder (checkpoint, drift), None while (or when)
        its fine-tune has no record."""
        if baseline and key == baseline.key:
            return {"checkpoint": None, "drift": 1.0}
        record = self.store.get(key)
        if record is None:
            return None
        return {"checkpoint": record.checkpoint, "drift": record.metrics.get("teacher_drift")}

    def report(self, evaluations: list) -> str:
        """The table, and the report into the sweep's folder (and, the first time, its run)."""
        reported = self.state.values.get("reported")
        table = self.recorder.report(evaluations, log_to_parent=not reported)
        if not reported:
            self.state.save(reported=True)
        return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="a YAML file (default: configs/default.yaml)")
    parser.add_argument("overrides", nargs="*", help="key.path=value, e.g. grid.seeds=[0]")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else a SQLite store in the workdir)",
    )
    parser.add_argument("--search", choices=("grid", "optuna"), help="overrides search.mode")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep, fine-tunes from their last checkpoints",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="only warnings and the result")
    verbosity.add_argument("--verbose", action="store_true", help="debug lines too")
    args = parser.parse_intermixed_args(argv)
    configure(-1 if args.quiet else 1 if args.verbose else 0)
    overrides = list(args.overrides) + ([f"search.mode={args.search}"] if args.search else [])
    try:
        config = absolute_eval_root(load_config(args.config, overrides))
    except ConfigError as err:
        parser.error(str(err))
    from sweeps.storage import redact_tree

    resolved = yaml.safe_dump(redact_tree(config.to_dict()), sort_keys=False).rstrip()
    stage_log("config").info("resolved:\n%s", resolved)
    return run(config, args)


def preflight(config: StudyConfig, args: argparse.Namespace) -> None:
    """Fail in seconds, before any work, when the tracking server or the storage cannot be
    reached (StorageError or TrackingError naming them)."""
    from sweeps.storage import check_storage
    from sweeps.tracking import check_reachable, resolve_tracking_uri

    workdir = Path(config.workdir).resolve()
    check_reachable(resolve_tracking_uri(args.tracking_uri, config.tracking.tracking_uri, workdir))
    check_storage(storage_location(config, workdir))


def run(config: StudyConfig, args: argparse.Namespace) -> int:
    import ray

    from moclip.data.dataset import DatasetError
    from sweeps.data import data_root
    from sweeps.execution import start_ray
    from sweeps.stage0 import ModelTrainingError, run_stage0
    from sweeps.storage import StorageError, redact
    from sweeps.tracking import TrackingError, code_version

    started = time.monotonic()
    clock = StageClock()
    # MLflow prints two links per run it ends when tracking to a server: a hundred lines for a
    # sweep; the sweep prints where to look at its end instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    try:
        with clock("setup"):
            preflight(config, args)
            data_root(config)  # before Ray starts: its cores go to the corpus builder first
    except (DatasetError, StorageError, TrackingError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with clock("ray start"):
        start_ray(config)
    try:
        sweep = Sweep(config, args)
        log.info(
            "%s: MLflow %s, experiment %r; Ray storage %s",
            sweep.key,
            redact(sweep.tracking_uri),
            config.tracking.experiment,
            sweep.storage,
        )
        try:
            with clock("stage 0"):
                stage0 = run_stage0(config)
        except DatasetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        stage_log("stage 0").info(
            "data and prompt sets ready in %.0f s%s",
            time.monotonic() - stage0.started,
            f"; the {' and '.join(stage0.running)} train on" if stage0.running else "",
        )
        existed = sweep.recorder.open_parent(sweep.key, stage0, code_version(ROOT))
        sweep.log_stage0 = not existed
        tuned, missing = None, []
        if config.search.mode == "optuna":
            with clock("search"):
                tuned, missing = sweep.search(stage0)
        if not sweep.interrupted:
            with clock("stages 1+2"):
                evaluations, missing_runs = sweep.finetune_and_evaluate(stage0, tuned)
            missing += missing_runs
        if not sweep.interrupted:
            # a no-op unless no evaluation ran (the models train beside the fine-tunes): the
            # parent run still gets stage 0's files and figures
            with clock("model wait"):
                sweep.ready_models(stage0)
            with clock("report"):
                table = sweep.report(evaluations)
    except ModelTrainingError as err:
        print(f"error: {err}", file=sys.stderr)
        log.info(resume_hint("stopped by the error above", sweep.store.folder))
        return 2
    finally:
        ray.shutdown()
    if sweep.interrupted:
        log.info(resume_hint("interrupted", sweep.store.folder))
        return 130
    second = "recognition accuracy" if stage0.labels is not None else "R-precision top-3"
    result = stage_log("result")
    result.log(
        RESULT,
        "FID, ΔFID, KID and %s (mean ± 95 %% Student-t interval over seed units; "
        "(repeats): over generation repeats):\n%s",
        second,
        table,
    )
    fits = sweep.state.folder / "report" / "fits.json"
    if fits.is_file():  # the answer, one sentence per attack and budget
        for row in json.loads(fits.read_text()):
            result.log(RESULT, "%s", row["sentence"])
    result.log(
        RESULT,
        f"report: {sweep.state.folder / 'report' / 'summary.html'}; MLflow: "
        f"{ui_hint(redact(sweep.tracking_uri))} (experiment "
        f"{config.tracking.experiment!r}, parent run 'sweep {config.name} {sweep.key}', "
        f"metrics fid/* against step = fine-tuning pairs)",
    )
    clock.seconds["total"] = round(time.monotonic() - started, 1)
    sweep.state.save(status="finished" if not missing else "running", seconds=clock.seconds)
    sweep.tracker.parent_metrics(
        {f"seconds/{k.replace(' ', '_')}": v for k, v in clock.seconds.items()}
    )
    sweep.tracker.finish("FINISHED" if not missing else "FAILED")
    log.info("done in %.0f s (%s)", clock.seconds["total"], clock.line())
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
