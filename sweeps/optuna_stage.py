"""Optuna mode's stage (`--search optuna`): per fraction, an Optuna search over loss weight and
learning rates with ASHA stopping weak fine-tunes at its rungs, before stage 1 trains every
seed with each fraction's best values. Finished trials are fed back to Optuna, not run again.
"""

from __future__ import annotations

import dataclasses

from sweeps.config import StudyConfig
from sweeps.execution import (
    Tally,
    finetune_slots,
    make_progress_callback,
    remove_orphaned_placement_groups,
    run_trials,
    trainable,
    trial_retries,
)
from sweeps.log import stage_log
from sweeps.plan import finetune_config, search_job
from sweeps.recording import Recorder
from sweeps.search import OBJECTIVE, best_record, make_scheduler, make_searcher, search_space

log = stage_log("search")


def run_search(
    config: StudyConfig, stage0, recorder: Recorder, run_name: str, storage: str
) -> tuple[dict[float, dict], list[str], bool]:
    """(the best fully trained values per fraction, the fractions without one, whether the
    search was interrupted). Stage 0's models must be ready (the objective scores with them)."""
    from sweeps.trials import finetune_trial

    search, store = config.search, recorder.store
    budget = max(config.attacks.budgets)
    payload = stage0.payload(config, split="val")  # the test split never chooses anything
    tuned, missing = {}, []
    for fraction in config.grid.fractions:
        job = search_job(config, stage0, fraction)
        # the fraction's fine-tune length (its epochs in steps): what ASHA's rungs count
        steps = finetune_config(config, job).steps
        study = dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, steps=steps))
        finished = store.find(job.group)
        for record in finished:
            recorder.log_search(record)
        todo = search.trials - len(finished)
        log.info(
            "fraction %g (%d pairs): %d Optuna trials, %d finished earlier, %d to run; "
            "objective %s under %s at budget %d (%s), ASHA over %d steps (%g epochs)",
            fraction,
            job.n_pairs,
            search.trials,
            len(finished),
            max(0, todo),
            search.objective,
            search.objective_attack,
            budget,
            search.direction,
            steps,
            config.finetune.epochs,
        )
        if todo > 0:
            tally = Tally(
                "search",
                todo,
                lambda job, result, checkpoint: recorder.record_search(
                    stage0, job, result, checkpoint
                ),
            )
            run_trials(
                f"search-{run_name}-f{fraction:g}",
                trainable(finetune_trial, study, stage0, run_name, storage, scoring=payload),
                {"job": dataclasses.asdict(job), **search_space(config)},
                config.ray.finetune_trial_resources(),
                storage,
                make_progress_callback({"finetune": tally}, stops_trials=True),
                lambda trial: f"{trial.config['job']['group']}-{trial.trial_id}",
                max_concurrent=min(finetune_slots(config), search.max_concurrent or 1 << 30),
                max_failures=trial_retries(config),
                # in local mode a trial's process takes on the next trial (saving a process
                # start and its imports); not with Ray Train workers, where ASHA stops trials
                # with their TorchTrainers mid-run (untried with reuse)
                reuse_actors=config.ray.local_finetunes,
                search_alg=make_searcher(config, [r for r in finished if r.complete]),
                scheduler=make_scheduler(study),
                metric=OBJECTIVE,
                mode=search.direction,
                num_samples=todo,
            )
            # the last trials ASHA stopped may have died after the final cleanup tick
            remove_orphaned_placement_groups()
            if tally.done + tally.failed < todo:
                return tuned, missing, True
            finished = store.find(job.group)
        best = best_record(finished, search.direction)
        if best is None:
            log.info(
                "fraction %g: no trial ran all %d steps; it is left out of stages 1 and 2",
                fraction,
                steps,
            )
            missing.append(job.name)
            continue
        tuned[fraction] = best.params
        stopped = sum(not r.complete for r in finished)
        log.info(
            "fraction %g: best %s %.3f of %d trials (%d stopped early by ASHA) with %s",
            fraction,
            search.objective,
            best.objective,
            len(finished),
            stopped,
            ", ".join(f"{k}={v:.3g}" for k, v in best.params.items()),
        )
        if todo <= 0:  # logged by the run that finished this search
            continue
        recorder.tracker.parent_metrics(
            {
                "search/best_objective": best.objective,
                **{f"search/best_{k}": v for k, v in best.params.items()},
            },
            step=job.n_pairs,
        )
    return tuned, missing, False
