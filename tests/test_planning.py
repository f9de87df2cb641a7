"""The sweep's planning without Ray: jobs and their keys, the typed records and the result store
(including the files earlier versions wrote), the report's tables, and the layering (which
modules import Ray, which packages import which)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dashboards.tables import Evaluation, format_table, robustness_gaps, summary_rows
from sweeps.config import load_config
from sweeps.keys import digest, sweep_key
from sweeps.plan import (
    baseline_encoder,
    conditions,
    evaluation_jobs,
    finetune_job,
    finetune_jobs,
    search_job,
)
from sweeps.records import EvaluationJob, FinetuneJob, TrialRecord, as_evaluation, job_from_dict
from sweeps.results import ResultStore
from sweeps.stage0 import Stage0

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "sweeps" / "configs" / "default.yaml"

# Records as the sweep wrote them before the records were typed (trimmed metrics): a store
# left by that version must still read.
OLD_EVALUATION = {
    "key": "ev-03c5189b5e58",
    "kind": "evaluation",
    "job": {
        "key": "ev-03c5189b5e58",
        "name": "eval finetune f0.1 wd1 s1 | wordnet-synonym b2",
        "encoder_key": "ft-2de90052b89c",
        "checkpoint": "/runs/ray/stages-20261202-184953/ft-2de90052b89c/checkpoint_000000",
        "fraction": 0.1,
        "w_contrastive": 1.0,
        "w_distill": 1.0,
        "lr_text": None,
        "lr_motion": None,
        "seed": 1,
        "n_pairs": 144,
        "recipe": "wordnet-synonym",
        "budget": 2,
        "drift": 0.984449028968811,
    },
    "metrics": {"fid": 33.579021234638674, "fid_ci95": 0.14039221952236036},
    "perturbed": "/runs/results/sets/ev-03c5189b5e58.jsonl",
    "delta_logged": True,
}
OLD_FINETUNE = {
    "key": "ft-2de90052b89c",
    "kind": "finetune",
    "job": {
        "key": "ft-2de90052b89c",
        "name": "finetune f0.1 wd1 s1",
        "n_pairs": 144,
        "n_motions": 48,
        "fraction": 0.1,
        "w_contrastive": 1.0,
        "w_distill": 1.0,
        "seed": 1,
        "lr_text": None,
        "lr_motion": None,
    },
    "metrics": {"step": 16.0, "n_pairs": 144.0, "resumed_at_step": 0.0},
    "checkpoint": "/runs/ray/stages-20261202-184953/ft-2de90052b89c/checkpoint_000000",
}


@pytest.fixture
def config(tmp_path):
    return load_config(DEFAULT, [f"workdir={tmp_path}"])


@pytest.fixture
def stage0(config, tmp_path) -> Stage0:
    """Stage 0's outcome as the planner reads it: fingerprints, subset sizes, model files."""
    sizes = {
        (fraction, draw): (int(480 * fraction), int(1440 * fraction))
        for fraction in config.grid.fractions
        for draw in (*config.grid.subset_seeds, 1)
    }
    return Stage0(
        root=str(tmp_path / "data"),
        train_fingerprint="train-fp",
        test_fingerprint="test-fp",
        subset_sizes=sizes,
        evaluator_path=tmp_path / "evaluator-abc.pt",
        generator_path=tmp_path / "generator-def.pt",
        prompts=["a person waves.", "a person walks."],
        lengths=[40, 60],
    )


def test_the_grid_plans_one_fine_tune_per_point_with_distinct_stable_keys(config, stage0):
    jobs = finetune_jobs(config, stage0)
    grid = config.grid
    expected = len(grid.fractions) * len(grid.w_contrastive) * len(grid.w_distill)
    assert len(jobs) == expected * len(grid.seeds)
    assert len({job.key for job in jobs}) == len(jobs)
    assert [job.key for job in finetune_jobs(config, stage0)] == [job.key for job in jobs]
    first = jobs[0]
    assert (first.n_motions, first.n_pairs) == stage0.subset_sizes[(first.fraction, 0)]
    # every training seed fine-tunes on the one subset draw; another draw is another job
    assert {job.subset_seed for job in jobs} == {0}
    drawn = finetune_job(config, stage0, first.fraction, first.seed, first.w_contrastive,
                         first.w_distill, subset_seed=1)
    assert drawn.key != first.key and drawn.subset_seed == 1
    # a grid point and an Optuna sample of the same values are one fine-tune
    sampled = finetune_job(
        config,
        stage0,
        first.fraction,
        first.seed,
        first.w_contrastive,
        first.w_distill,
        lr_text=config.finetune.lr_text,
        lr_motion=config.finetune.lr_motion,
    )
    assert sampled.key == first.key and sampled.name.endswith("tuned s0")
    other = load_config(DEFAULT, [f"workdir={config.workdir}", "finetune.epochs=4"])
    assert finetune_jobs(other, stage0)[0].key != first.key
    # with epochs, the step count is derived: a steps value of its own changes nothing
    ignored = load_config(DEFAULT, [f"workdir={config.workdir}", "finetune.steps=17"])
    assert finetune_jobs(ignored, stage0)[0].key == first.key


def test_evaluations_cover_every_encoder_and_condition_whatever_the_checkpoint(tmp_path, stage0):
    config = load_config(DEFAULT, [f"workdir={tmp_path}", "evaluation.generator=both"])
    encoders = [baseline_encoder(config), *finetune_jobs(config, stage0)]
    jobs = evaluation_jobs(config, stage0, encoders)
    assert config.evaluation.arms == ("frozen", "adapted")
    # both arms for every fine-tuned encoder; the original encoder only with the frozen one,
    # once per seed (its generation noise)
    tuned = len(encoders) - 1
    assert len(jobs) == (2 * tuned + len(config.grid.seeds)) * len(conditions(config))
    base = [job for job in jobs if job.fraction == 0 and job.recipe == "none"]
    assert sorted(job.seed for job in base) == list(config.grid.seeds)
    assert len({job.generation_seed(config) for job in base}) == len(base)
    adapting = [job for job in jobs if job.adapts]
    assert len(adapting) == len(encoders) - 1 and all(job.recipe == "none" for job in adapting)
    # the frozen arm's keys do not depend on which arms run or how the adapted one trains
    frozen_only = load_config(DEFAULT, [f"workdir={config.workdir}", "evaluation.generator=frozen"])
    alone = evaluation_jobs(frozen_only, stage0, encoders)
    assert [job.key for job in alone] == [job.key for job in jobs if job.arm == "frozen"]
    longer = load_config(
        DEFAULT,
        [f"workdir={config.workdir}", "evaluation.generator=both", "evaluation.adapt_steps=7"],
    )
    moved = {job.key for job in evaluation_jobs(longer, stage0, encoders)}
    assert {job.key for job in jobs if job.arm == "frozen"} < moved
    assert not moved & {job.key for job in jobs if job.arm == "adapted"}
    jobs = alone
    assert conditions(config)[0] == ("none", 0)
    assert ("greedy", max(config.attacks.budgets)) in conditions(config)
    assert len({job.key for job in jobs}) == len(jobs)
    assert {job.encoder_key for job in jobs} == {encoder.key for encoder in encoders}
    assert all(job.checkpoint is None for job in jobs)  # set when the fine-tune is recorded
    # the scoring models are part of every evaluation's key
    moved = Stage0(**{**stage0.__dict__, "generator_path": Path("generator-other.pt")})
    assert evaluation_jobs(config, moved, encoders)[0].key != jobs[0].key


def test_a_search_job_names_its_fractions_group(config, stage0):
    job = search_job(config, stage0, config.grid.fractions[0])
    assert job.group.startswith("so-") and job.key is None
    assert job_from_dict({**job.to_dict(), "w_distill": 0.4}).w_distill == 0.4


def test_sweep_key_ignores_where_and_how_it_runs_but_not_what_it_computes(tmp_path):
    base = load_config(DEFAULT, [f"workdir={tmp_path}"])
    moved = load_config(DEFAULT, [f"workdir={tmp_path / 'b'}", "ray.finetune_slots=3"])
    assert sweep_key(base) == sweep_key(moved)
    assert sweep_key(base) != sweep_key(load_config(DEFAULT, ["grid.seeds=[0,1]"]))
    assert sweep_key(base) != sweep_key(load_config(DEFAULT, ["grid.subset_seeds=[0,1]"]))
    assert digest({"a": 1, "b": [2, 3]}) == digest({"b": [2, 3], "a": 1})


def test_records_round_trip_and_the_store_reads_what_earlier_versions_wrote(tmp_path):
    store = ResultStore(tmp_path)
    for old in (OLD_EVALUATION, OLD_FINETUNE):
        (tmp_path / f"{old['key']}.json").write_text(json.dumps(old))
    evaluation, finetune = store.get(OLD_EVALUATION["key"]), store.get(OLD_FINETUNE["key"])
    assert isinstance(evaluation.job, EvaluationJob) and isinstance(finetune.job, FinetuneJob)
    assert evaluation.job.drift == pytest.approx(0.984449028968811)
    assert evaluation.delta_logged and finetune.checkpoint.endswith("checkpoint_000000")
    assert TrialRecord.from_dict(evaluation.to_dict()) == evaluation
    assert TrialRecord.from_dict(finetune.to_dict()).to_dict() == OLD_FINETUNE
    updated = store.update(finetune.key, delta_logged=True)
    assert store.get(finetune.key) == updated and updated.delta_logged
    assert [r.key for r in store.find("ev-")] == [OLD_EVALUATION["key"]]
    (tmp_path / "ev-broken.json").write_text("{")
    with pytest.raises(ValueError, match="ev-broken.json: unreadable trial record"):
        store.get("ev-broken")


def evaluation(encoder: str, seed, recipe: str, budget: int, fids, fraction=0.5):
    """An evaluation with FID `fids` in each generation repeat."""
    metrics = {"fid": float(np.mean(fids)), "r_precision_top3": 0.6, "repeats": len(fids)}
    metrics.update({f"fid_r{i}": value for i, value in enumerate(fids)})
    return Evaluation(
        key=f"ev-{encoder}-{seed}-{recipe}-{budget}",
        encoder_key=encoder,
        fraction=fraction,
        w_distill=None if fraction == 0 else 1.0,
        seed=seed,
        recipe=recipe,
        budget=budget,
        n_pairs=int(100 * fraction),
        metrics=metrics,
        subset_seed=None if fraction == 0 else 0,
    )


def test_the_table_pairs_each_attack_with_its_encoders_clean_score():
    evaluations = [
        # the original encoder under two generation seeds
        evaluation("base", 0, "none", 0, [30.0, 32.0], fraction=0.0),
        evaluation("base", 0, "greedy", 1, [40.0, 41.0], fraction=0.0),
        evaluation("base", 1, "none", 0, [29.0, 31.0], fraction=0.0),
        evaluation("base", 1, "greedy", 1, [38.0, 40.0], fraction=0.0),
        evaluation("ft-a", 0, "none", 0, [31.0, 33.0]),
        evaluation("ft-a", 0, "greedy", 1, [35.0, 37.0]),
        evaluation("ft-b", 1, "none", 0, [33.0, 30.0]),
        evaluation("ft-b", 1, "greedy", 1, [39.0, 36.0]),
    ]
    gaps = robustness_gaps(evaluations)
    # paired repeat by repeat, within a seed unit: never the other seed's clean score
    assert gaps["ev-ft-a-0-greedy-1"].per_repeat == (4.0, 4.0)
    assert gaps["ev-base-0-greedy-1"].per_repeat == (10.0, 9.0)
    assert gaps["ev-base-1-greedy-1"].value == pytest.approx(9.0)
    rows = summary_rows(evaluations, gaps)
    (tuned,) = [r for r in rows if r["fraction"] == 0.5 and r["recipe"] == "greedy"]
    assert tuned["seeds"] == 2 and tuned["delta_fid"] == pytest.approx(5.0)
    # the interval is Student-t over the two units' gaps (4 and 6), recomputable from the row
    assert tuned["delta_fid_values"] == [4.0, 6.0] and tuned["spread"] == "units"
    assert tuned["delta_fid_ci95"] == pytest.approx(12.706 * 1.0, rel=1e-3)
    (original,) = [r for r in rows if r["fraction"] == 0 and r["recipe"] == "greedy"]
    assert original["seeds"] == 2 and original["delta_fid"] == pytest.approx(9.25)
    # one unit alone: the interval spans its repeats, and says so
    alone = summary_rows(evaluations[4:6], robustness_gaps(evaluations[4:6]))
    assert alone[1]["spread"] == "repeats" and alone[1]["fid_ci95"] == pytest.approx(12.706, rel=1e-4)
    table = format_table(rows)
    assert "0 (original)" in table and "+9.250" in table and "greedy b1" in table
    record = TrialRecord.from_dict(OLD_EVALUATION)
    assert as_evaluation(record).recipe == "wordnet-synonym"


# Modules that are documented as working without Ray; each must import in a process where
# `import ray` fails.
RAY_FREE = (
    "sweeps.config",
    "sweeps.data",
    "sweeps.keys",
    "sweeps.records",
    "sweeps.plan",
    "sweeps.jobs",
    "sweeps.results",
    "sweeps.log",
    "dashboards.tables",
)


def test_the_data_keys_and_planning_layer_imports_without_ray():
    code = (
        "import sys; sys.modules['ray'] = None\n"  # `import ray` now raises ImportError
        + "".join(f"import {name}\n" for name in RAY_FREE)
        + "import sweeps.data as d; print(d.assigned_device())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "cpu"


def package_imports(package: str) -> set[str]:
    """The first-party packages that `package`'s modules import, at the top or inside
    functions."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            found |= {name.split(".")[0] for name in names}
    return found & {"moclip", "sweeps", "dashboards", "cluster"} - {package}


def test_no_import_cycle_between_packages():
    imports = {package: package_imports(package) for package in ("moclip", "sweeps", "dashboards")}
    assert imports["moclip"] == set(), "the model imports nothing of the orchestration"
    assert "sweeps" not in imports["dashboards"], "the sweep calls the dashboards, not back"
    assert imports["dashboards"] <= {"moclip"}


def test_the_experiment_opens_in_mlflows_model_training_view(tmp_path):
    from mlflow.tracking import MlflowClient

    from sweeps.tracking import Tracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "study", tmp_path / "artifacts")
    client = MlflowClient(uri)
    tags = client.get_experiment(tracker.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    # an experiment an older version made without the tag gets it
    old = client.create_experiment("older", (tmp_path / "old").as_uri())
    Tracker(uri, "older")
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_every_fraction_makes_the_same_passes_over_its_subset(config, stage0):
    """The fine-tune's length is in epochs: a fraction ten times larger trains ten times the
    steps (not the same steps on a smaller set, which confounded set size with passes)."""
    from sweeps.plan import finetune_config

    steps = {}
    for job in finetune_jobs(config, stage0):
        effective = finetune_config(config, job)
        per_pass = job.n_pairs // config.finetune.batch_size
        assert effective.steps == round(config.finetune.epochs * per_pass), job.name
        steps[job.fraction] = effective.steps
    assert steps[1.0] > 9 * steps[0.1]
