"""The order in which stages 1 and 2 hand their trials to one Ray Tune Tuner.

Both stages run in one Tuner so that an encoder's evaluations start as soon as its fine-tune is
recorded (not when the slowest fine-tune ends) and a trial process that has finished a
fine-tune, its imports done, takes on an evaluation. Tune asks a searcher for each next trial;
this one answers with the fine-tunes first (the longest jobs first keeps the last slot from
running alone at the end), then with each encoder's evaluations once they can run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ray.tune.search import Searcher

from sweeps.records import EvaluationJob, FinetuneJob


class FinetunesThenEvaluations(Searcher):
    """Fine-tunes, then evaluations, one trial at a time into the slots that `max_finetunes`
    fine-tunes would fill.

    `evaluations` maps an encoder's key to its evaluation jobs still to run; they are released
    once `models_ready()` (the frozen evaluator and generator) and the encoder is out of
    `finetunes`' unfinished runs, with `encoder(key)` (its checkpoint and drift, or None when
    its fine-tune failed: its evaluations are then dropped and counted in `dropped`). With no
    trial left to run meanwhile it blocks in `wait_for_models()`. An encoder's adapted-arm
    evaluations wait for the one that adapts its generator (its clean evaluation), and take
    the generator `adapted(key)` finds for it (none: they are dropped too). A suggested config
    is {"kind": "finetune" | "evaluation", "job": the job as a dict}."""

    def __init__(
        self,
        finetunes: list[FinetuneJob],
        evaluations: dict[str, list[EvaluationJob]],
        encoder: Callable[[str], dict | None],
        models_ready: Callable[[], bool],
        wait_for_models: Callable[[], None],
        max_finetunes: int,
        adapted: Callable[[str], str | None] = lambda key: None,
    ) -> None:
        super().__init__()
        self.queue: list[FinetuneJob | EvaluationJob] = list(finetunes)
        self.training = {job.key for job in finetunes}  # fine-tunes not yet ended
        self.waiting = {key: list(jobs) for key, jobs in evaluations.items() if jobs}
        self.encoder = encoder
        self.adapted = adapted
        self.models_ready = models_ready
        self.wait_for_models = wait_for_models
        self.max_finetunes = max(1, max_finetunes)
        self.trials: dict[str, dict] = {}  # running: trial id -> its suggested config
        self.dropped: list[str] = []  # names of evaluations whose encoder has no fine-tune
        self.held: dict[str, list[EvaluationJob]] = {}  # adapted arm, waiting for its generator
        self.adapting: set[str] = set()  # encoders whose generator is being adapted

    def suggest(self, trial_id: str) -> dict | str | None:
        self.release()
        if not self.queue:
            return None if self.waiting or self.held else Searcher.FINISHED
        # nothing while the fine-tunes fill their slots: with Ray Train workers a fine-tune's
        # trial holds no CPU itself, and an evaluation would take the one its workers wait for
        finetunes = sum(config["kind"] == "finetune" for config in self.trials.values())
        if finetunes >= self.max_finetunes:
            return None
        job = self.queue.pop(0)
        self.trials[trial_id] = {"kind": job.kind, "job": job.to_dict()}
        return self.trials[trial_id]

    def release(self) -> None:
        """Queue the evaluations of every encoder whose fine-tune has ended, once the models
        are ready (waiting for them when nothing else can run meanwhile), and the adapted
        arm's held ones whose generator is adapted."""
        self.release_adapted()
        ready = [key for key in self.waiting if key not in self.training]
        if not ready:
            return
        if not self.models_ready():
            if self.trials or self.queue:
                return
            self.wait_for_models()
        for key in ready:
            jobs = self.waiting.pop(key)
            encoder = self.encoder(key)
            if encoder is None:
                self.dropped += [job.name for job in jobs]
                continue
            jobs = [dataclasses.replace(job, **encoder) for job in jobs]
            self.queue += [job for job in jobs if job.arm != "adapted"]
            adapted = [job for job in jobs if job.arm == "adapted"]
            first = [job for job in adapted if job.adapts]
            if adapted and first and self.adapted(key) is None:
                self.queue += first  # it adapts the generator; the rest wait for it
                self.adapting.add(key)
                adapted = [job for job in adapted if not job.adapts]
            if adapted:
                self.held[key] = adapted
        self.release_adapted()

    def release_adapted(self) -> None:
        """Queue the held adapted-arm evaluations of every encoder whose generator is adapted
        (with it), dropping them where its adaptation failed."""
        for key in [key for key in self.held if key not in self.adapting]:
            jobs = self.held.pop(key)
            generator = self.adapted(key)
            if generator is None:
                self.dropped += [job.name for job in jobs]
                continue
            self.queue += [dataclasses.replace(job, generator=generator) for job in jobs]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        config = self.trials.pop(trial_id, None)
        if config is None:
            return
        job = config["job"]
        if config["kind"] == "finetune":
            self.training.discard(job["key"])
        elif job.get("arm") == "adapted" and job["recipe"] == "none":
            self.adapting.discard(job["encoder_key"])

    def save(self, checkpoint_path: str) -> None:
        """Nothing: a rerun of the sweep finds its finished trials in the sweep's result store,
        not in Tune's experiment state."""
