"""Everything the sweep asks of Ray, in one module: starting it, one Tuner per stage with a
progress callback that records each finished trial in the driver, the trainables and their
resources, and the one private Ray call (fenced by version).

Jobs cross into Ray as dicts (`{"kind": ..., "job": job.to_dict()}` in a trial's config) and
come back typed (`job_from_dict`) before anything else sees them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import ray
import ray.tune

from sweeps.config import StudyConfig
from sweeps.log import stage_log
from sweeps.records import Job, job_from_dict

STATUS_EVERY_S = 30.0  # a status line while trials run
# Ray versions whose GCS placement-group records remove_orphaned_placement_groups reads
# (a private API); on others the cleanup is skipped with a warning.
PRIVATE_API_RAY = ((2, 52), (2, 60))


@dataclass
class Tally:
    """One kind of trial in a Tuner: the stage its lines name, how many are to run, what records
    a finished one (`on_result(job, result, checkpoint)`, returning a summary), the counts."""

    stage: str
    total: int
    on_result: Callable[[Job, dict, object], str]
    done: int = 0
    failed: int = 0


def make_progress_callback(tallies: dict[str, Tally], stops_trials: bool = False):
    """A Ray Tune callback: one line per finished or failed trial, named by its kind's stage
    (a trial's kind is its config's "kind", else the first tally's), a status line every 30 s,
    and the kind's `on_result` for each finished trial (in this process). With `stops_trials`
    (a scheduler stops trials early) it also frees the placement groups that stopped
    fine-tunes leave behind."""
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
                    stage_log(tallies[first].stage).info(
                        "freed %d stopped fine-tune(s)' CPUs", freed
                    )
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
            stage_log(" + ".join(t.stage for t in tallies.values())).info(
                "%s; %d running (%s), %.0f s", counts, len(running), names, now - self.started
            )

        def on_trial_complete(self, iteration, trials, trial, **info):
            tally = self.tally(trial)
            result = dict(trial.last_result)
            sampled = {k: v for k, v in trial.config.items() if k not in ("job", "kind")}
            job = job_from_dict({**trial.config["job"], **sampled})
            tally.done += 1
            try:
                summary = tally.on_result(job, result, trial.checkpoint)
            except Exception as err:  # noqa: BLE001 - a logging failure must not fail the trial
                summary = f"finished, but recording it failed: {type(err).__name__}: {err}"
            stage_log(tally.stage).info(
                "%d/%d %s: %s (%.0f s)",
                tally.done,
                tally.total,
                job.name,
                summary,
                time.monotonic() - self.started,
            )

        def on_trial_error(self, iteration, trials, trial, **info):
            tally = self.tally(trial)
            tally.failed += 1
            stage_log(tally.stage).error(
                "FAILED %s: see %s", trial.config["job"]["name"], trial.local_path
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


CLEANUP_EVERY_S = 5.0  # how often a search looks for placement groups of stopped fine-tunes
# Fine-tunes may start while stage 0's trainings hold the CPUs; Ray Train's default (60 s)
# would fail their worker groups while they wait.
WORKER_GROUP_START_TIMEOUT_S = "1800"


def start_ray(config: StudyConfig) -> None:
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
    reads GCS's records directly (a private Ray API), on the Ray versions in PRIVATE_API_RAY
    only: elsewhere it warns once and frees nothing (stopped fine-tunes then hold their CPUs
    until the sweep ends)."""
    if not private_api_supported():
        return 0
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


def private_api_supported(version: str | None = None) -> bool:
    """Whether `version` (default: the installed Ray's) lies in PRIVATE_API_RAY; warns once
    when not."""
    parts = tuple(int(p) for p in (version or ray.__version__).split(".")[:2])
    supported = PRIVATE_API_RAY[0] <= parts <= PRIVATE_API_RAY[1]
    if not supported and not getattr(private_api_supported, "warned", False):
        private_api_supported.warned = True  # type: ignore[attr-defined]
        stage_log("search").warning(
            "Ray %s is outside the versions whose placement-group records this sweep reads "
            "(%s); ASHA-stopped fine-tunes keep their CPUs until the sweep ends",
            version or ray.__version__,
            " to ".join(".".join(map(str, v)) for v in PRIVATE_API_RAY),
        )
    return supported


def checkpoint_uri(storage: str, path: str) -> str:
    """A checkpoint's path as Ray reports it (no scheme) back into a URI of the storage."""
    parsed = urlparse(storage)
    if parsed.scheme in ("", "file"):
        return path
    return f"{parsed.scheme}://{path}" + (f"?{parsed.query}" if parsed.query else "")


def trainable(function, config: StudyConfig, stage0, run_name: str, storage: str, **options):
    """`function` (sweeps.trials) as a Tune trainable with what every trial is given: the
    study, the data folder and its fingerprints, the run name and the storage."""
    return ray.tune.with_parameters(
        function,
        study=config.to_dict(),
        root=stage0.root,
        run_name=run_name,
        storage=storage,
        fingerprints=stage0.fingerprints,
        **options,
    )


def stage_resources(config: StudyConfig) -> Callable[[dict], object]:
    """What a trial of stages 1 and 2 holds, by its kind (the same for both in local mode on
    CPUs, so that either kind can take on the other's process)."""

    def resources(trial_config: dict):
        if trial_config["kind"] == "finetune":
            bundle = config.ray.finetune_trial_resources()
        else:
            bundle = config.ray.evaluation_trial_resources()
        return ray.tune.PlacementGroupFactory([bundle])

    return resources


def finetune_slots(config: StudyConfig) -> int:
    """How many fine-tunes run at once (`ray.finetune_slots`, else what the cluster holds
    now); says so, since an autoscaling cluster holds fewer at the start than it will."""
    ray_config = config.ray
    cluster = ray.cluster_resources()
    slots = ray_config.finetunes_at_once(cluster)
    if ray_config.finetune_slots:
        stage_log("sweep").info("%d fine-tunes at once (ray.finetune_slots)", slots)
    else:
        now = ", ".join(f"{cluster.get(k, 0):g} {k}" for k in ray_config.worker_resources())
        stage_log("sweep").info(
            "%d fine-tune(s) at once, what the cluster holds now (%s); an autoscaling "
            "cluster's ray.finetune_slots is what it can grow to",
            slots,
            now,
        )
    return slots


def trial_retries(config: StudyConfig) -> int:
    """Tune's retries of a failed trial: in local mode a fine-tune's trial is its worker, so
    Tune is to restart it from its last checkpoint (an evaluation just runs again); otherwise
    Ray Train restarts the workers."""
    return config.ray.max_failures if config.ray.local_finetunes else 0


def asha_milestones(scheduler, below: int) -> list[int] | None:
    """The steps below `below` at which an ASHAScheduler compares trials, read from its
    brackets (a private Ray API: None on Ray versions outside PRIVATE_API_RAY). What
    `sweeps.search.rung_steps` must match."""
    if not private_api_supported():
        return None
    (bracket,) = scheduler._brackets
    return sorted(milestone for milestone, _ in bracket._rungs if milestone < below)
