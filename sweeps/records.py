"""The sweep's jobs and results as frozen dataclasses, without Ray. They become dicts only where
they leave Python: Ray Tune's param space (`to_dict`/`from_dict`) and the JSON result store
(`TrialRecord.to_dict`/`from_dict`, which reads the stores earlier versions wrote)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from dashboards.tables import Evaluation

T = TypeVar("T")
PERTURBED_FILE = "perturbed.jsonl"  # an evaluation trial's perturbed set, in its checkpoint


def _from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """`cls` from a dict, ignoring keys it has no field for (older stores, Tune's extras)."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in values.items() if k in names})


# fields added after stores were written: left out while unset, so that a record reads
# back as the version that wrote it did
LATER_FIELDS = ("subset_seed",)


class _Record:
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: v for k, v in out.items() if not (k in LATER_FIELDS and v is None)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        return _from_dict(cls, values)


@dataclass(frozen=True)
class FinetuneJob(_Record):
    """One fine-tune of stage 1 (or, with key "base-…" and no seed, the original encoder):
    `subset_seed` draws its nested subset, `seed` its initialisation and batches."""

    kind: ClassVar[str] = "finetune"
    key: str
    name: str
    fraction: float
    seed: int | None
    w_contrastive: float | None
    w_distill: float | None
    n_pairs: int
    n_motions: int = 0
    lr_text: float | None = None  # None: the config's rate (a grid point), else Optuna's
    lr_motion: float | None = None
    subset_seed: int | None = None

    @property
    def is_baseline(self) -> bool:
        return self.key.startswith("base-")


@dataclass(frozen=True)
class SearchJob(_Record):
    """One Optuna trial of a fraction's search; Optuna's sampled values are set per trial."""

    kind: ClassVar[str] = "finetune"  # its Tune trial runs a fine-tune
    group: str
    name: str
    fraction: float
    seed: int
    w_contrastive: float
    n_pairs: int
    n_motions: int
    key: None = None  # known once the sampled values are: see plan.finetune_job
    w_distill: float | None = None
    lr_text: float | None = None
    lr_motion: float | None = None
    subset_seed: int = 0


@dataclass(frozen=True)
class EvaluationJob(_Record):
    """One encoder under one attack condition (stage 2); `checkpoint` and `drift` are set when
    the encoder's fine-tune is recorded."""

    kind: ClassVar[str] = "evaluation"
    key: str
    name: str
    encoder_key: str
    fraction: float
    seed: int | None
    w_contrastive: float | None
    w_distill: float | None
    n_pairs: int
    recipe: str
    budget: int
    lr_text: float | None = None
    lr_motion: float | None = None
    checkpoint: str | None = None
    drift: float | None = None
    # "frozen": the generator trained on the original encoder; "adapted": that generator
    # trained on for this encoder (by its clean evaluation, which stores it), read from
    # `generator` by the others once it is
    arm: str = "frozen"
    generator: str | None = None
    # the fine-tune's subset draw (None: the original encoder, which has none); `seed` is the
    # fine-tune's training seed, or for the original encoder the generation seed alone
    subset_seed: int | None = None

    def generation_seed(self, study) -> int:
        """The generation noise of this (subset seed, seed) unit: each unit its own draw, the
        same for its clean and attacked conditions (ΔFID is paired on it)."""
        import numpy as np

        parts = [study.evaluation.seed, self.subset_seed or 0, self.seed or 0]
        return int(np.random.SeedSequence(parts).generate_state(1)[0] >> 1)

    @property
    def adapts(self) -> bool:
        """Whether this trial trains the adapted generator (the adapted arm's clean one)."""
        return self.arm == "adapted" and self.recipe == "none"


Job = FinetuneJob | SearchJob | EvaluationJob


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial as the result store keeps it: its job and reported metrics, plus per
    kind the fine-tune's checkpoint, the evaluation's perturbed set and whether its ΔFID went to
    MLflow, or the search trial's sampled values, objective and steps."""

    key: str
    kind: str  # "finetune" | "evaluation" | "search"
    job: FinetuneJob | EvaluationJob
    metrics: dict[str, float] = field(default_factory=dict)
    checkpoint: str | None = None
    perturbed: str | None = None
    delta_logged: bool = False
    params: dict[str, float] | None = None
    objective: float | None = None
    steps: int | None = None
    complete: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["job"] = self.job.to_dict()
        # as earlier versions wrote it: only the fields this kind of record has
        if not self.delta_logged:
            del out["delta_logged"]
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrialRecord:
        job_type = EvaluationJob if values["kind"] == "evaluation" else FinetuneJob
        return _from_dict(cls, {**values, "job": job_type.from_dict(values["job"])})


def as_evaluation(record: TrialRecord) -> Evaluation:
    """An evaluation's record as the report's tables read it."""
    job = record.job
    assert isinstance(job, EvaluationJob), record.key
    return Evaluation(
        key=record.key,
        encoder_key=job.encoder_key,
        fraction=job.fraction,
        w_distill=job.w_distill,
        seed=job.seed,
        recipe=job.recipe,
        budget=job.budget,
        n_pairs=job.n_pairs,
        metrics=record.metrics,
        arm=job.arm,
        subset_seed=job.subset_seed,
    )


def job_from_dict(values: dict[str, Any]) -> Job:
    """A job back from a Tune trial's config: an evaluation has a recipe, a search trial a
    group, anything else is a fine-tune."""
    if "recipe" in values:
        return EvaluationJob.from_dict(values)
    if "group" in values:
        return SearchJob.from_dict(values)
    return FinetuneJob.from_dict(values)
