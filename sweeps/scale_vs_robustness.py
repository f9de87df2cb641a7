"""The study: MoCLIP fine-tuning-set size versus robustness to adversarial prompts (FID).

    python sweeps/scale_vs_robustness.py [--config FILE] [key.path=value ...]
        [--tracking-uri URI] [--search grid|optuna] [--resume]

e.g. `python sweeps/scale_vs_robustness.py --config sweeps/configs/smoke.yaml grid.seeds=[0,1]`.

Stage 0 builds or reuses the data, the frozen evaluator and generator and the transfer prompt
sets; stage 1 fine-tunes MoCLIP on nested subsets (Ray Train TorchTrainers in Ray Tune trials);
stage 2 evaluates every encoder under every attack (Ray Tune trials), each encoder as soon as
its fine-tune ends (one Tuner runs both stages, sweeps/schedule.py); every trial becomes an
MLflow child run of the sweep's parent run, and the sweep ends with the table fraction x recipe
x budget and a plot of FID against the number of fine-tuning pairs.
In Optuna mode (--search optuna) an Optuna search with ASHA stopping picks each fraction's loss
weight and learning rates before stage 1. Running the same command again reuses every finished
trial and creates no duplicate runs; --resume continues interrupted fine-tunes from their
checkpoints.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

import yaml

from sweeps.config import ConfigError, StudyConfig, load_config


def sweep_key(config: StudyConfig) -> str:
    """A hash of everything that decides the sweep's numbers (not where or how it runs)."""
    from sweeps.stage0 import digest

    tree = config.to_dict()
    for name in ("workdir", "ray", "tracking"):
        tree.pop(name)
    # the generator's sampling settings change no number: evaluations sample with
    # evaluation.ddim_steps and evaluation.guidance, in batches of generator.sample_batch
    tree["generator"] = config.generator.weights_dict()
    tree["evaluation"] = config.evaluation_key()
    return digest(tree)


def checkpoint_uri(storage: str, path: str) -> str:
    """A checkpoint's path as Ray reports it (no scheme) back into a URI of the storage."""
    from urllib.parse import urlparse

    parsed = urlparse(storage)
    if parsed.scheme in ("", "file"):
        return path
    return f"{parsed.scheme}://{path}" + (f"?{parsed.query}" if parsed.query else "")


def storage_location(config: StudyConfig, workdir: Path) -> str:
    """Where Ray keeps trials and checkpoints: ray.storage_path, else $MOCLIP_RAY_STORAGE (what
    cluster/tracking_stack.py prints), else <workdir>/ray."""
    path = config.ray.storage_path or os.environ.get("MOCLIP_RAY_STORAGE")
    if path and "://" in path:
        return path
    return str((Path(path) if path else workdir / "ray").resolve())


class SweepState:
    """workdir/sweeps/<key>/state.json: the run name of Ray's outputs and how far it got."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.values = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self, **values) -> None:
        self.values.update(values)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values, indent=2) + "\n")
        tmp.replace(self.path)


class StageClock:
    """Wall seconds per stage of one sweep process, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 1)

    def line(self) -> str:
        return ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in self.seconds.items())


@dataclass
class Tally:
    """One kind of trial in a Tuner: the stage its lines name, how many are to run, what records
    a finished one (`on_result(job, result, checkpoint)`, returning a summary), the counts."""

    stage: str
    total: int
    on_result: Callable[[dict, dict, object], str]
    done: int = 0
    failed: int = 0


def make_progress_callback(tallies: dict[str, Tally], stops_trials: bool = False):
    """A Ray Tune callback: one line per finished or failed trial, named by its kind's stage
    (a trial's kind is its config's "kind", else the first tally's), a status line every 30 s,
    and the kind's `on_result` for each finished trial (in this process). With `stops_trials`
    (a scheduler stops trials early) it also frees the placement groups that stopped
    fine-tunes leave behind."""
    import ray.tune

    from sweeps.stage0 import STATUS_EVERY_S

    first = next(iter(tallies))

    class Progress(ray.tune.Callback):
        def __init__(self) -> None:
            self.started = self.last = self.last_cleanup = time.monotonic()

        def tally(self, trial) -> Tally:
            return tallies[trial.config.get("kind", first)]

        def on_step_end(self, iteration, trials, **info):
            now = time.monotonic()
            if stops_trials and now - self.last_cleanup >= CLEANUP_EVERY_S:
                self.last_cleanup = now
                freed = remove_orphaned_placement_groups()
                if freed:
                    stage = tallies[first].stage
                    print(f"[{stage}] freed {freed} stopped fine-tune(s)' CPUs", flush=True)
            if now - self.last < STATUS_EVERY_S:
                return
            self.last = now
            running = [t for t in trials if t.status == "RUNNING"]
            names = ", ".join(
                t.config["job"]["name"]
                + (f" at step {t.last_result['step']}" if "step" in t.last_result else "")
                for t in running[:4]
            )
            counts = "; ".join(
                (f"{t.stage}: " if len(tallies) > 1 else "")
                + f"{t.done}/{t.total} done, {t.failed} failed"
                for t in tallies.values()
            )
            print(
                f"[{' + '.join(t.stage for t in tallies.values())}] {counts}; {len(running)} "
                f"running ({names}), {now - self.started:.0f} s",
                flush=True,
            )

        def on_trial_complete(self, iteration, trials, trial, **info):
            tally = self.tally(trial)
            result = dict(trial.last_result)
            sampled = {k: v for k, v in trial.config.items() if k not in ("job", "kind")}
            job = {**trial.config["job"], **sampled}
            tally.done += 1
            try:
                summary = tally.on_result(job, result, trial.checkpoint)
            except Exception as err:  # noqa: BLE001 - a logging failure must not fail the trial
                summary = f"finished, but recording it failed: {type(err).__name__}: {err}"
            print(
                f"[{tally.stage}] {tally.done}/{tally.total} {job['name']}: {summary} "
                f"({time.monotonic() - self.started:.0f} s)",
                flush=True,
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            tally = self.tally(trial)
            tally.failed += 1
            print(
                f"[{tally.stage}] FAILED {trial.config['job']['name']}: see {trial.local_path}",
                flush=True,
            )

    return Progress()


def run_trials(
    name: str,
    trainable,
    param_space: dict,
    resources: dict | Callable,
    storage: str,
    callback,
    label: Callable,
    max_concurrent: int = 0,
    reuse_actors: bool = True,
    max_failures: int = 0,
    **tune_options,
):
    """One Tuner, named `name` in Ray's storage: `trainable` with `resources` (or, callable, a
    trial config's PlacementGroupFactory), `label(trial)` naming each trial and its folder,
    and `tune_options` for Tune (search_alg, scheduler, metric, mode, num_samples)."""
    import ray.tune

    tune_config = ray.tune.TuneConfig(
        max_concurrent_trials=max_concurrent or None,
        trial_name_creator=label,
        trial_dirname_creator=label,
        reuse_actors=reuse_actors,
        **tune_options,
    )
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(trainable, resources),
        param_space=param_space,
        tune_config=tune_config,
        run_config=ray.tune.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=[callback],
            failure_config=ray.tune.FailureConfig(max_failures=max_failures),
            # local-mode fine-tunes report every checkpoint to Tune: keep the last two, as
            # Ray Train keeps them for its own runs
            checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=2),
            verbose=0,
        ),
    )
    return tuner.fit()


def numeric(result: dict) -> dict[str, float]:
    skip = {"done", "training_iteration", "timestamp", "pid", "time_since_restore"}
    return {
        k: float(v)
        for k, v in result.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip
    }


class Sweep:
    """One sweep: the config, where things go, the result store and the MLflow tracker."""

    def __init__(self, config: StudyConfig, args: argparse.Namespace) -> None:
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
            print(f"[sweep] resuming {self.key} (Ray run {self.run_name})", flush=True)
        else:
            if previous == "running":
                print(
                    "[sweep] an earlier run of this sweep was interrupted: its finished trials "
                    "are reused, unfinished fine-tunes start again from step 0 (--resume "
                    "continues them from their last checkpoints)",
                    flush=True,
                )
            elif args.resume:
                print("[sweep] nothing to resume for this config; starting it", flush=True)
            self.run_name = time.strftime("%Y%m%d-%H%M%S")
        self.state.save(run_name=self.run_name, status="running")
        uri = resolve_tracking_uri(args.tracking_uri, config.tracking.tracking_uri, self.workdir)
        local = uri.startswith("sqlite:") and not (
            args.tracking_uri or config.tracking.tracking_uri
        )
        self.tracker = Tracker(
            uri, config.tracking.experiment, self.workdir / "mlartifacts" if local else None
        )
        self.tracking_uri = uri
        self.interrupted = False  # a stage's Tuner stopped (SIGINT) before all trials ended
        self.log_stage0 = False  # stage 0's files still to be logged to a new parent run

    def ready_models(self, stage0, wait: bool = True) -> bool:
        """Whether stage 0's evaluator and generator are ready (with `wait`, once they are);
        the first time they are, log stage 0 to a new parent run."""
        if wait:
            stage0.wait_for_models()
        elif not stage0.collect_models():
            return False
        if not self.log_stage0:
            return True
        self.log_stage0 = False
        self.tracker.parent_artifact(stage0.evaluator_path, "stage0")
        self.tracker.parent_artifact(stage0.generator_path, "stage0")
        for path in stage0.transfer_paths.values():
            self.tracker.parent_artifact(path, "stage0/perturbed_prompts")
        if stage0.repairs:  # what the loader trimmed, filled and dropped, with the ids
            path = self.state.folder / "data_repairs.json"
            path.write_text(json.dumps(stage0.repairs, indent=2) + "\n")
            self.tracker.parent_artifact(path, "stage0")
        prefix = "recognizer_" if stage0.labels is not None else "evaluator_gt_"
        self.tracker.parent_metrics(
            {f"{prefix}{k}": v for k, v in stage0.figures["evaluator"].items()}
        )
        return True

    # stage 1 -----------------------------------------------------------------------------

    def finetune_slots(self) -> int:
        """How many fine-tunes run at once (`ray.finetune_slots`, else what the cluster holds
        now); says so, since an autoscaling cluster holds fewer at the start than it will."""
        import ray

        ray_config = self.config.ray
        cluster = ray.cluster_resources()
        slots = ray_config.finetunes_at_once(cluster)
        if ray_config.finetune_slots:
            print(f"[sweep] {slots} fine-tunes at once (ray.finetune_slots)", flush=True)
        else:
            now = ", ".join(f"{cluster.get(k, 0):g} {k}" for k in ray_config.worker_resources())
            print(
                f"[sweep] {slots} fine-tune(s) at once, what the cluster holds now ({now}); an "
                f"autoscaling cluster's ray.finetune_slots is what it can grow to",
                flush=True,
            )
        return slots

    def trial_retries(self) -> int:
        """Tune's retries of a failed trial: in local mode a fine-tune's trial is its worker,
        so Tune is to restart it from its last checkpoint (an evaluation just runs again);
        otherwise Ray Train restarts the workers."""
        return self.config.ray.max_failures if self.config.ray.local_finetunes else 0

    def reuse_search_processes(self) -> bool:
        """Whether an Optuna search trial's process takes on the next trial: in local mode, to
        save a process start and its imports (torch, Ray, open_clip: about 10 s on 2 cores) per
        trial; not with Ray Train workers, where ASHA stops trials with their TorchTrainers
        mid-run (untried with reuse)."""
        return self.config.ray.local_finetunes

    def finetune_trainable(self, stage0, scoring: dict | None = None):
        """The Tune trainable that runs one fine-tune (scoring its model in Optuna mode)."""
        import ray.tune

        from sweeps.trials import finetune_trial

        return ray.tune.with_parameters(
            finetune_trial,
            study=self.config.to_dict(),
            root=stage0.root,
            run_name=self.run_name,
            storage=self.storage,
            fingerprints=stage0.fingerprints,
            scoring=scoring,
        )

    def stage_trainable(self, stage0):
        """The Tune trainable of stages 1 and 2: a fine-tune or an evaluation by its config."""
        import ray.tune

        from sweeps.trials import stage_trial

        return ray.tune.with_parameters(
            stage_trial,
            study=self.config.to_dict(),
            root=stage0.root,
            run_name=self.run_name,
            storage=self.storage,
            fingerprints=stage0.fingerprints,
            payload=stage0.payload(self.config),
        )

    def stage_resources(self, trial_config: dict):
        """What a trial of stages 1 and 2 holds, by its kind (the same for both in local mode
        on CPUs, so that either kind can take on the other's process)."""
        import ray.tune

        ray_config = self.config.ray
        if trial_config["kind"] == "finetune":
            resources = ray_config.finetune_trial_resources()
        else:
            resources = ray_config.evaluation_trial_resources()
        return ray.tune.PlacementGroupFactory([resources])

    def finetune_and_evaluate(self, stage0, tuned: dict | None = None) -> tuple[list, list]:
        """Stages 1 and 2 in one Tuner: fine-tune every grid point (or, with `tuned`, every
        fraction's Optuna choice for every seed) and evaluate every encoder under every
        condition, each where not finished before; (the evaluation records, the names of the
        fine-tunes and evaluations that did not finish)."""
        from sweeps.plan import baseline_encoder, evaluation_jobs, finetune_jobs
        from sweeps.schedule import FinetunesThenEvaluations

        config = self.config
        finetunes = finetune_jobs(config, stage0, tuned)
        training = [job for job in finetunes if self.store.get(job["key"]) is None]
        print(
            f"[stage 1] {len(finetunes)} fine-tunes: {len(finetunes) - len(training)} finished "
            f"earlier, {len(training)} to run ({config.finetune.steps} steps each, "
            + (
                "each in its Tune trial's process)"
                if config.ray.local_finetunes
                else f"{config.ray.num_workers} worker(s) each)"
            ),
            flush=True,
        )
        baseline = baseline_encoder(config) if config.grid.baseline else None
        if baseline:
            self.log_baseline(baseline)
        for job in finetunes:
            if job not in training:
                self.log_finetune(self.store.get(job["key"]))
        # an evaluation's key does not depend on its encoder's checkpoint: the jobs are known
        # before the fine-tunes run, and get checkpoint and drift when released
        planned = [{**job, "checkpoint": None} for job in finetunes]
        evaluations = evaluation_jobs(config, stage0, ([baseline] if baseline else []) + planned)
        waiting = [job for job in evaluations if self.store.get(job["key"]) is None]
        encoders = len(planned) + bool(baseline)
        print(
            f"[stage 2] {len(evaluations)} evaluations ({encoders} encoders x "
            f"{len(evaluations) // max(1, encoders)} conditions): "
            f"{len(evaluations) - len(waiting)} finished earlier, {len(waiting)} to run"
            + (", each once its encoder is fine-tuned" if training else ""),
            flush=True,
        )
        to_run = {job["key"] for job in waiting}
        for job in evaluations:
            if job["key"] not in to_run:
                self.log_evaluation(self.store.get(job["key"]))
        if training or waiting:
            by_encoder: dict[str, list[dict]] = {}
            for job in waiting:
                by_encoder.setdefault(job["encoder_key"], []).append(job)
            searcher = FinetunesThenEvaluations(
                training,
                by_encoder,
                encoder=lambda key: self.recorded_encoder(key, baseline),
                models_ready=lambda: self.ready_models(stage0, wait=False),
                wait_for_models=lambda: self.ready_models(stage0),
                max_finetunes=self.finetune_slots(),
            )
            tallies = {
                "finetune": Tally("stage 1", len(training), self.record_finetune),
                "evaluation": Tally("stage 2", len(waiting), self.record_evaluation),
            }
            run_trials(
                f"stages-{self.run_name}",
                self.stage_trainable(stage0),
                {},
                self.stage_resources,
                self.storage,
                make_progress_callback(tallies),
                lambda trial: trial.config["job"]["key"],
                # a searcher gets one pending trial at a time by default; as many as there are
                # trials lets every released one wait in Tune's queue, which is the demand an
                # autoscaling cluster sizes itself by (the searcher still holds back the rest)
                max_concurrent=len(training) + len(waiting),
                max_failures=self.trial_retries(),
                search_alg=searcher,
                num_samples=len(training) + len(waiting),
            )
            ended = sum(tally.done + tally.failed for tally in tallies.values())
            self.interrupted = ended + len(searcher.dropped) < len(training) + len(waiting)
            if searcher.dropped:
                print(
                    f"[stage 2] {len(searcher.dropped)} evaluations not run: their encoders' "
                    "fine-tunes did not finish",
                    flush=True,
                )
        missing = [job["name"] for job in finetunes if self.store.get(job["key"]) is None]
        if missing:
            print(f"[stage 1] not finished: {', '.join(missing)}", flush=True)
        # each encoder's record read once, not once per evaluation of it
        encoder_keys = {job["encoder_key"] for job in evaluations}
        recorded = {key for key in encoder_keys if self.recorded_encoder(key, baseline)}
        evaluated = [job for job in evaluations if job["encoder_key"] in recorded]
        records = [self.store.get(job["key"]) for job in evaluated]
        missing += [job["name"] for job, record in zip(evaluated, records) if record is None]
        return [record for record in records if record is not None], missing

    def recorded_encoder(self, key: str, baseline: dict | None) -> dict | None:
        """What an evaluation needs of its encoder (checkpoint, drift), None while (or when)
        its fine-tune has no record."""
        if baseline and key == baseline["key"]:
            return {"checkpoint": None, "drift": 1.0}
        record = self.store.get(key)
        if record is None:
            return None
        return {"checkpoint": record["checkpoint"], "drift": record["metrics"].get("teacher_drift")}

    def record_finetune(self, job: dict, result: dict, checkpoint) -> str:
        record = {
            "key": job["key"],
            "kind": "finetune",
            "job": job,
            "metrics": numeric(result),
            # Ray Train's runs name their checkpoint in the result; local-mode ones are Tune's
            "checkpoint": checkpoint_uri(
                self.storage, result.get("checkpoint_path") or checkpoint.path
            ),
        }
        self.store.put(job["key"], record)
        self.log_finetune(record)
        metrics = record["metrics"]
        resumed = int(metrics.get("resumed_at_step", 0))
        return (
            f"{job['n_pairs']} pairs, R-precision top-1 {metrics.get('r_precision_top1', 0):.3f},"
            f" drift {metrics.get('teacher_drift', 0):.3f}"
            + (f" (resumed from its step-{resumed} checkpoint)" if resumed else "")
        )

    def log_baseline(self, baseline: dict) -> None:
        self.tracker.child(
            baseline["key"],
            "finetune original encoder",
            {"fraction": 0.0, "n_pairs": 0, "encoder": self.config.encoder.identity},
            {"drift": 1.0},
            step=0,
            tags={"kind": "finetune", "fraction": "0"},
        )

    def log_finetune(self, record: dict) -> None:
        import ray.train

        from sweeps.plan import finetune_config

        if self.tracker.find_trial(record["key"]):
            return
        job, metrics = record["job"], record["metrics"]
        effective = finetune_config(self.config, job)
        params = {k: job[k] for k in ("fraction", "n_pairs", "n_motions", "w_contrastive")}
        params.update(
            w_distill=job["w_distill"],
            seed=job["seed"],
            steps=effective.steps,
            lr_text=effective.lr_text,
            lr_motion=effective.lr_motion,
        )
        params["checkpoint"] = record["checkpoint"]
        metrics = {**metrics, "drift": metrics.get("teacher_drift", float("nan"))}
        # a checkpoint in local storage is read where it lies (no copy of ~100 MB while the
        # other trials train); one in S3 is downloaded to a temporary folder
        with ray.train.Checkpoint(record["checkpoint"]).as_directory() as folder:
            self.tracker.child(
                record["key"],
                job["name"],
                params,
                metrics,
                step=job["n_pairs"],
                tags={"kind": "finetune", "fraction": f"{job['fraction']:g}"},
                artifacts=[(Path(folder) / "moclip.pt", "checkpoint")],
            )

    # Optuna mode ---------------------------------------------------------------------------

    def search(self, stage0) -> tuple[dict[float, dict], list[str]]:
        """Per fraction, Optuna over loss weight and learning rates with ASHA stopping weak
        fine-tunes at its rungs; (the best fully trained values per fraction, the
        fractions without one)."""
        from sweeps.plan import search_group
        from sweeps.search import (
            OBJECTIVE,
            best_record,
            make_scheduler,
            make_searcher,
            search_space,
        )

        config, search = self.config, self.config.search
        seed, budget = config.grid.seeds[0], max(config.attacks.budgets)
        self.ready_models(stage0)
        payload = stage0.payload(config)
        tuned, missing = {}, []
        for fraction in config.grid.fractions:
            group = "so-" + search_group(config, stage0, fraction)
            finished = self.store.find(group)
            for record in finished:
                self.log_search(record)
            todo = search.trials - len(finished)
            motions, pairs = stage0.subset_sizes[(fraction, seed)]
            print(
                f"[search] fraction {fraction:g} ({pairs} pairs): {search.trials} Optuna "
                f"trials, {len(finished)} finished earlier, {max(0, todo)} to run; objective "
                f"{search.objective} under {search.objective_attack} at budget {budget} "
                f"({search.direction}), ASHA over {config.finetune.steps} steps",
                flush=True,
            )
            if todo > 0:
                job = {
                    "key": None,
                    "group": group,
                    "name": f"search f{fraction:g}",
                    "fraction": fraction,
                    "seed": seed,
                    "w_contrastive": config.grid.w_contrastive[0],
                    "n_pairs": pairs,
                    "n_motions": motions,
                }
                tally = Tally(
                    "search",
                    todo,
                    lambda job, result, checkpoint: self.record_search(
                        stage0, job, result, checkpoint
                    ),
                )
                run_trials(
                    f"search-{self.run_name}-f{fraction:g}",
                    self.finetune_trainable(stage0, scoring=payload),
                    {"job": job, **search_space(config)},
                    config.ray.finetune_trial_resources(),
                    self.storage,
                    make_progress_callback({"finetune": tally}, stops_trials=True),
                    lambda trial: f"{trial.config['job']['group']}-{trial.trial_id}",
                    max_concurrent=min(self.finetune_slots(), search.max_concurrent or 1 << 30),
                    max_failures=self.trial_retries(),
                    reuse_actors=self.reuse_search_processes(),
                    search_alg=make_searcher(config, [r for r in finished if r["complete"]]),
                    scheduler=make_scheduler(config),
                    metric=OBJECTIVE,
                    mode=search.direction,
                    num_samples=todo,
                )
                # the last trials ASHA stopped may have died after the final cleanup tick
                remove_orphaned_placement_groups()
                if tally.done + tally.failed < todo:
                    self.interrupted = True
                    return tuned, missing
                finished = self.store.find(group)
            best = best_record(finished, search.direction)
            if best is None:
                print(
                    f"[search] fraction {fraction:g}: no trial ran all {config.finetune.steps} "
                    "steps; it is left out of stages 1 and 2",
                    flush=True,
                )
                missing.append(f"search f{fraction:g}")
                continue
            tuned[fraction] = best["params"]
            stopped = sum(not r["complete"] for r in finished)
            print(
                f"[search] fraction {fraction:g}: best {search.objective} {best['objective']:.3f}"
                f" of {len(finished)} trials ({stopped} stopped early by ASHA) with "
                + ", ".join(f"{k}={v:.3g}" for k, v in best["params"].items()),
                flush=True,
            )
            if todo <= 0:  # logged by the run that finished this search
                continue
            self.tracker.parent_metrics(
                {
                    "search/best_objective": best["objective"],
                    **{f"search/best_{k}": v for k, v in best["params"].items()},
                },
                step=pairs,
            )
        return tuned, missing

    def record_search(self, stage0, job: dict, result: dict, checkpoint) -> str:
        """Keep one Optuna trial (and, when it ran every step, its fine-tune for stage 1)."""
        from sweeps.plan import SEARCHED, finetune_job

        config = self.config
        params = {name: float(job[name]) for name in SEARCHED}
        finetune = finetune_job(
            config, stage0, job["fraction"], job["seed"], job["w_contrastive"], **params
        )
        steps = int(result.get("step", 0))
        complete = steps == config.finetune.steps and "r_precision_top1" in result
        record = {
            "key": f"{job['group']}-{finetune['key']}",
            "kind": "search",
            "job": finetune,
            "params": params,
            "objective": float(result["objective"]),
            "steps": steps,
            "complete": complete,
            "metrics": numeric(result),
        }
        self.store.put(record["key"], record)
        if complete and self.store.get(finetune["key"]) is None:
            self.record_finetune(finetune, result, checkpoint)
        self.log_search(record)
        outcome = "all steps" if complete else f"stopped by ASHA after {steps} steps"
        values = ", ".join(f"{k}={v:.3g}" for k, v in params.items())
        return f"{config.search.objective} {record['objective']:.3f} ({outcome}) with {values}"

    def log_search(self, record: dict) -> None:
        if self.tracker.find_trial(record["key"]):
            return
        job = record["job"]
        params = {k: job[k] for k in ("fraction", "n_pairs", "seed", "w_contrastive")}
        params.update(record["params"])
        metrics = {k: v for k, v in record["metrics"].items() if k.startswith("objective")}
        metrics["steps_trained"] = record["steps"]
        self.tracker.child(
            record["key"],
            f"search f{job['fraction']:g} wd{job['w_distill']:.3g}",
            params,
            metrics,
            step=record["steps"],
            tags={
                "kind": "search",
                "fraction": f"{job['fraction']:g}",
                "outcome": "complete" if record["complete"] else "stopped early",
            },
        )

    # stage 2 -----------------------------------------------------------------------------

    def record_evaluation(self, job: dict, result: dict, checkpoint) -> str:
        perturbed = None
        if checkpoint is not None:
            from sweeps.trials import PERTURBED_FILE

            folder = self.workdir / "results" / "sets"
            folder.mkdir(parents=True, exist_ok=True)
            with checkpoint.as_directory() as source:
                perturbed = folder / f"{job['key']}.jsonl"
                perturbed.write_bytes((Path(source) / PERTURBED_FILE).read_bytes())
        record = {
            "key": job["key"],
            "kind": "evaluation",
            "job": job,
            "metrics": numeric(result),
            "perturbed": str(perturbed) if perturbed else None,
        }
        self.store.put(job["key"], record)
        self.log_evaluation(record)
        metrics = record["metrics"]
        if "accuracy_top1" in metrics:
            second = f"accuracy top-1 {metrics['accuracy_top1']:.3f}"
        else:
            second = f"R-precision top-3 {metrics['r_precision_top3']:.3f}"
        return f"FID {metrics['fid']:.3f} ± {metrics['fid_ci95']:.3f}, {second}"

    def log_evaluation(self, record: dict) -> None:
        from sweeps.results import condition_label

        if self.tracker.find_trial(record["key"]):
            return
        job = record["job"]
        params = {
            k: job[k]
            for k in ("fraction", "n_pairs", "w_contrastive", "w_distill", "seed", "recipe")
        }
        params.update(budget=job["budget"], encoder_key=job["encoder_key"])
        metrics = dict(record["metrics"])
        if job.get("drift") is not None:
            metrics["drift"] = job["drift"]
        artifacts = []
        if record.get("perturbed"):
            artifacts.append((Path(record["perturbed"]), "perturbed_prompts"))
        self.tracker.child(
            record["key"],
            job["name"],
            params,
            metrics,
            step=job["n_pairs"],
            tags={
                "kind": "evaluation",
                "condition": condition_label(job["recipe"], job["budget"]),
                "recipe": job["recipe"],
                "budget": str(job["budget"]),
                "fraction": f"{job['fraction']:g}",
            },
            artifacts=artifacts,
        )

    # the end ------------------------------------------------------------------------------

    def report(self, evaluations: list[dict]) -> str:
        """ΔFID into each evaluation run, curves into the parent run, the table, and the
        dashboard report (figures, fits, summary) into the sweep's folder and parent run."""
        from dashboards.report import report_experiment
        from sweeps.results import format_table, headline_metric, robustness_gaps, summary_rows

        gaps = robustness_gaps(evaluations)
        headline = headline_metric(evaluations)
        drops = robustness_gaps(evaluations, headline) if headline == "accuracy_top1" else {}
        for record in evaluations:
            if record["key"] in gaps and not record.get("delta_logged"):
                delta, ci = gaps[record["key"]]
                logged = {"delta_fid": delta, "delta_fid_ci95": ci}
                if record["key"] in drops:  # clean minus attacked
                    drop, drop_ci = drops[record["key"]]
                    logged.update(accuracy_drop=-drop, accuracy_drop_ci95=drop_ci)
                run_id = self.tracker.find_trial(record["key"])
                self.tracker.log_metrics(run_id, logged, step=record["job"]["n_pairs"])
                self.store.update(record["key"], delta_logged=True)
        rows = summary_rows(evaluations, gaps)
        table = format_table(rows)
        folder = self.state.folder
        (folder / "table.txt").write_text(table + "\n")
        (folder / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
        reported = self.state.values.get("reported")
        try:
            report_experiment(
                self.tracking_uri,
                self.config.tracking.experiment,
                folder / "report",
                parent_run_id=None if reported else self.tracker.parent_id,
                trial_keys={r["key"] for r in evaluations},
            )
        except Exception as err:  # noqa: BLE001 - every result is stored; the report can wait
            print(
                f"[sweep] the report failed ({type(err).__name__}: {err}); every result is kept:"
                f" python dashboards/report.py --experiment {self.config.tracking.experiment}",
                flush=True,
            )
        if not reported:
            for row in rows:
                name = row["condition"].replace(" ", "_")
                metrics = {f"fid/{name}": row["fid"], f"{headline}/{name}": row[headline]}
                if row["recipe"] != "none":
                    for gap in ("delta_fid", "accuracy_drop"):
                        if gap in row:
                            metrics[f"{gap}/{name}"] = row[gap]
                self.tracker.parent_metrics(metrics, step=int(row["n_pairs"]))
            for path in (folder / "table.txt", folder / "rows.json"):
                self.tracker.parent_artifact(path, "results")
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
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides) + ([f"search.mode={args.search}"] if args.search else [])
    try:
        config = load_config(args.config, overrides)
    except ConfigError as err:
        parser.error(str(err))
    from sweeps.storage import redact_tree

    resolved = yaml.safe_dump(redact_tree(config.to_dict()), sort_keys=False).rstrip()
    print("[config] resolved:\n" + resolved)
    return run(config, args)


CLEANUP_EVERY_S = 5.0  # how often a search looks for placement groups of stopped fine-tunes
# Fine-tunes may start while stage 0's trainings hold the CPUs; Ray Train's default (60 s)
# would fail their worker groups while they wait.
WORKER_GROUP_START_TIMEOUT_S = "1800"


def start_ray(config: StudyConfig) -> None:
    import ray

    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", WORKER_GROUP_START_TIMEOUT_S)
    # Ray Tune copies AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY from the driver's environment into
    # its trials' runtime environment, and Ray's runtime-env agent writes that environment to
    # its log at INFO level: a local Ray started here logs from WARNING up. (On a cluster the
    # nodes take credentials from their instance profile, and there is nothing to copy.)
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")
    ray.init(
        address=config.ray.address,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=True,
        logging_level="WARNING",
    )


def remove_orphaned_placement_groups() -> int:
    """Remove placement groups whose creating actor is dead; how many.

    When ASHA stops a fine-tune, Tune kills its trial and with it the Ray Train controller,
    whose workers' placement group would then hold its CPUs until the driver exits: Ray
    Train's own cleaner needs the dashboard's state API, absent from a local Ray without the
    dashboard packages. The public placement-group table does not name the creator, so this
    reads GCS's records directly (a private Ray API)."""
    import ray
    from ray._private.state import state
    from ray._raylet import ActorID, PlacementGroupID
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import PlacementGroup

    removed = 0
    for blob in state._connect_and_get_accessor().get_placement_group_table():
        info = gcs_pb2.PlacementGroupTableData.FromString(blob)
        orphan = (
            info.creator_actor_dead
            and not ActorID(info.creator_actor_id).is_nil()  # a driver's own groups stay
            and not info.is_detached
            and info.state == gcs_pb2.PlacementGroupTableData.CREATED
        )
        if orphan:
            group_id = PlacementGroupID(info.placement_group_id)
            ray.util.remove_placement_group(PlacementGroup(group_id))
            removed += 1
    return removed


def preflight(config: StudyConfig, args: argparse.Namespace) -> None:
    """Fail in seconds, before any work, when the tracking server or the storage cannot be
    reached (StorageError or TrackingError naming them)."""
    from sweeps.storage import check_storage
    from sweeps.tracking import check_reachable, resolve_tracking_uri

    workdir = Path(config.workdir).resolve()
    check_reachable(resolve_tracking_uri(args.tracking_uri, config.tracking.tracking_uri, workdir))
    check_storage(storage_location(config, workdir))


def ui_hint(tracking_uri: str) -> str:
    """How to open the MLflow UI on the sweep's runs."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def resume_hint(why: str, store: Path) -> str:
    """What a sweep that stopped early says: why, and how to finish it."""
    return (
        f"[sweep] {why}; finished trials are kept in {store}. "
        "Run the same command with --resume to finish the rest."
    )


def run(config: StudyConfig, args: argparse.Namespace) -> int:
    import ray

    from moclip.data.dataset import DatasetError
    from sweeps.stage0 import ModelTrainingError, data_root, run_stage0
    from sweeps.storage import StorageError, redact
    from sweeps.tracking import (
        TrackingError,
        code_version,
        flatten,
        package_versions,
        platform_facts,
    )

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
        print(
            f"[sweep] {sweep.key}: MLflow {redact(sweep.tracking_uri)}, experiment "
            f"{config.tracking.experiment!r}; Ray storage {sweep.storage}",
            flush=True,
        )
        try:
            with clock("stage 0"):
                stage0 = run_stage0(config)
        except DatasetError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(
            f"[stage 0] data and prompt sets ready in {time.monotonic() - stage0.started:.0f} s"
            + (f"; the {' and '.join(stage0.running)} train on" if stage0.running else ""),
            flush=True,
        )
        existed = sweep.tracker.open_parent(
            sweep.key,
            f"sweep {config.name} {sweep.key}",
            flatten(config.to_dict()),
            {
                "code_version": code_version(ROOT),
                "data_fingerprint": stage0.data_fingerprint,
                "train_fingerprint": stage0.train_fingerprint,
                "test_fingerprint": stage0.test_fingerprint,
                **{
                    f"data.repairs.{split}.{name}": str(count)
                    for split, repairs in stage0.repairs.items()
                    for name, count in repairs["counts"].items()
                },
                **{f"version.{k}": v for k, v in package_versions().items()},
                **{f"platform.{k}": v for k, v in platform_facts().items()},
            },
        )
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
        print(resume_hint("stopped by the error above", sweep.store.folder), flush=True)
        return 2
    finally:
        ray.shutdown()
    if sweep.interrupted:
        print(resume_hint("interrupted", sweep.store.folder), flush=True)
        return 130
    second = "recognition accuracy" if stage0.labels is not None else "R-precision top-3"
    print(f"\n[result] FID, ΔFID and {second} (mean ± 95 % interval over seeds):\n{table}")
    print(
        f"\n[result] report: {sweep.state.folder / 'report' / 'summary.html'}; MLflow: "
        f"{ui_hint(redact(sweep.tracking_uri))} (experiment "
        f"{config.tracking.experiment!r}, parent run 'sweep {config.name} {sweep.key}', "
        f"metrics fid/* against step = fine-tuning pairs)"
    )
    clock.seconds["total"] = round(time.monotonic() - started, 1)
    sweep.state.save(status="finished" if not missing else "running", seconds=clock.seconds)
    sweep.tracker.parent_metrics(
        {f"seconds/{k.replace(' ', '_')}": v for k, v in clock.seconds.items()}
    )
    sweep.tracker.finish("FINISHED" if not missing else "FAILED")
    print(f"[sweep] done in {clock.seconds['total']:.0f} s ({clock.line()})", flush=True)
    return 0 if not missing else 1


if __name__ == "__main__":
    sys.exit(main())
