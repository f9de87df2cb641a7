"""Optuna mode's pieces for Ray Tune: the search space over loss weight and learning rates, the
Optuna searcher (seeded, told about trials finished by an earlier run) and the ASHA scheduler
that stops weak fine-tunes at its rungs, the steps at which the workers report the objective."""

from __future__ import annotations

from sweeps.config import StudyConfig
from sweeps.plan import SEARCHED
from sweeps.records import TrialRecord

OBJECTIVE = "objective"  # the metric name the fine-tuning workers report in Optuna mode
PROGRESS = "step"  # ASHA's clock: fine-tuning steps done


def search_space(config: StudyConfig) -> dict:
    """Tune domains for the sampled values; a range whose ends are equal is a constant."""
    import ray.tune

    search = config.search
    space = {}
    for name in SEARCHED:
        low, high = getattr(search, name)
        if low == high:
            space[name] = low
        elif name == "w_distill":
            space[name] = ray.tune.uniform(low, high)
        else:
            space[name] = ray.tune.loguniform(low, high)
    return space


def sampled_names(config: StudyConfig) -> list[str]:
    """The values Optuna actually chooses (not the constant ones)."""
    return [name for name in SEARCHED if len(set(getattr(config.search, name))) == 2]


def make_searcher(config: StudyConfig, finished: list[TrialRecord]):
    """OptunaSearch (TPE, seeded by search.seed), told the (params, objective) of `finished`
    trials so that a repeated or resumed search does not run them again."""
    from ray.tune.search.optuna import OptunaSearch

    names = sampled_names(config)
    points = [{name: record.params[name] for name in names} for record in finished]
    return OptunaSearch(
        metric=OBJECTIVE,
        mode=config.search.direction,
        seed=config.search.seed,
        points_to_evaluate=points or None,
        evaluated_rewards=[record.objective for record in finished] or None,
    )


def grace_steps(config: StudyConfig) -> int:
    """ASHA's first rung: search.grace_steps, else a quarter of the fine-tune; at most all of it."""
    steps = config.finetune.steps
    return min(config.search.grace_steps or max(1, steps // 4), steps)


def rung_steps(config: StudyConfig) -> list[int]:
    """The steps before the last at which ASHA compares trials: grace * reduction_factor^k.

    A search trial scores its model here, at its checkpoints (Tune wants the objective in
    every report of a search trial) and at its last step; each score is a generation pass."""
    steps, rungs = config.finetune.steps, []
    rung = grace_steps(config)
    while rung < steps:
        rungs.append(rung)
        rung *= config.search.reduction_factor
    return rungs


def make_scheduler(config: StudyConfig):
    """ASHA over fine-tuning steps: rungs at grace, grace*rf, ... below finetune.steps."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr=PROGRESS,
        # one past the last step: ASHA stops a trial that reaches max_t, which would kill a
        # finished fine-tune before Ray Train releases its workers; past it, it ends by itself
        max_t=config.finetune.steps + 1,
        grace_period=grace_steps(config),
        reduction_factor=config.search.reduction_factor,
    )


def best_record(records: list[TrialRecord], direction: str) -> TrialRecord | None:
    """The fully trained trial with the best objective (ties: the earliest)."""
    complete = [r for r in records if r.complete]
    if not complete:
        return None
    sign = 1.0 if direction == "min" else -1.0
    return min(complete, key=lambda r: sign * r.objective)
