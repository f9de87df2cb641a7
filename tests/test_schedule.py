"""The order in which stages 1 and 2 hand their trials to Tune (sweeps/schedule.py)."""

from __future__ import annotations

from ray.tune.search import Searcher

from sweeps.records import EvaluationJob, FinetuneJob
from sweeps.schedule import FinetunesThenEvaluations


def jobs(encoder: str, count: int) -> list[EvaluationJob]:
    return [
        EvaluationJob(
            key=f"ev-{encoder}-{i}",
            name=f"eval {encoder} {i}",
            encoder_key=encoder,
            fraction=0.5,
            seed=0,
            w_contrastive=1.0,
            w_distill=1.0,
            n_pairs=10,
            recipe="none",
            budget=0,
        )
        for i in range(count)
    ]


def make(models: dict, recorded: dict, waited: list, max_finetunes: int = 2):
    finetunes = [
        FinetuneJob(key, key, 0.5, 0, 1.0, 1.0, n_pairs=10) for key in ("ft-a", "ft-b", "ft-c")
    ]
    evaluations = {"base": jobs("base", 2), **{ft.key: jobs(ft.key, 2) for ft in finetunes}}

    def wait() -> None:
        waited.append(True)
        models["ready"] = True

    return FinetunesThenEvaluations(
        finetunes,
        evaluations,
        encoder=recorded.get,
        models_ready=lambda: models["ready"],
        wait_for_models=wait,
        max_finetunes=max_finetunes,
    )


def test_fine_tunes_fill_their_slots_first_then_each_encoders_evaluations_follow_it():
    models, waited = {"ready": False}, []
    recorded = {"base": {"checkpoint": None, "drift": 1.0}}
    searcher = make(models, recorded, waited)
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert [first["job"]["key"], second["job"]["key"]] == ["ft-a", "ft-b"]
    assert {first["kind"], second["kind"]} == {"finetune"}
    # both slots hold fine-tunes: nothing else, not even the baseline's ready evaluations
    models["ready"] = True
    assert searcher.suggest("t3") is None

    recorded["ft-a"] = {"checkpoint": "/ckpt/a", "drift": 0.9}
    searcher.on_trial_complete("t1", result={})
    assert searcher.suggest("t3")["job"]["key"] == "ft-c"  # the last fine-tune before any eval
    assert searcher.suggest("t4") is None  # two fine-tunes run again
    recorded["ft-b"] = {"checkpoint": "/ckpt/b", "drift": 0.8}
    searcher.on_trial_complete("t2", result={})
    released = [searcher.suggest(f"e{i}") for i in range(6)]
    assert all(config["kind"] == "evaluation" for config in released)
    keys = [config["job"]["key"] for config in released]
    assert sorted(keys) == sorted(
        [f"ev-{encoder}-{i}" for encoder in ("base", "ft-a", "ft-b") for i in range(2)]
    )
    by_key = {config["job"]["key"]: config["job"] for config in released}
    assert by_key["ev-ft-a-0"]["checkpoint"] == "/ckpt/a" and by_key["ev-ft-a-0"]["drift"] == 0.9
    assert by_key["ev-base-1"]["checkpoint"] is None
    # ft-c still runs: its evaluations wait, so the search is not over
    assert searcher.suggest("e6") is None
    recorded["ft-c"] = {"checkpoint": "/ckpt/c", "drift": 0.7}
    searcher.on_trial_complete("t3", result={})
    last = [searcher.suggest("e7")["job"]["key"], searcher.suggest("e8")["job"]["key"]]
    assert sorted(last) == ["ev-ft-c-0", "ev-ft-c-1"]
    assert searcher.suggest("e9") == Searcher.FINISHED
    assert waited == [] and searcher.dropped == []


def test_a_failed_fine_tunes_evaluations_are_dropped_and_the_models_awaited_only_when_idle():
    models, waited = {"ready": False}, []
    recorded = {"base": {"checkpoint": None, "drift": 1.0}}
    searcher = make(models, recorded, waited, max_finetunes=3)
    for trial in ("t1", "t2", "t3"):
        assert searcher.suggest(trial)["kind"] == "finetune"
    recorded["ft-a"] = {"checkpoint": "/ckpt/a", "drift": 0.9}
    searcher.on_trial_complete("t1", result={})
    # the models still train and fine-tunes still run: no waiting, nothing to hand out
    assert searcher.suggest("x") is None and waited == []
    searcher.on_trial_complete("t2", error=True)  # failed: no record
    searcher.on_trial_complete("t3", error=True)
    # nothing runs: the searcher waits for the models, then releases what it can
    released = [searcher.suggest(f"e{i}") for i in range(4)]
    assert waited == [True]
    assert sorted(c["job"]["key"] for c in released) == [
        "ev-base-0",
        "ev-base-1",
        "ev-ft-a-0",
        "ev-ft-a-1",
    ]
    assert sorted(searcher.dropped) == [
        "eval ft-b 0",
        "eval ft-b 1",
        "eval ft-c 0",
        "eval ft-c 1",
    ]
    assert searcher.suggest("e5") == Searcher.FINISHED


def test_an_encoders_adapted_arm_waits_for_the_evaluation_that_adapts_its_generator():
    """The adapted arm's clean evaluation (which adapts the generator) goes out with the frozen
    arm; the encoder's other adapted evaluations follow once it is recorded, each given the
    adapted generator; an encoder whose adaptation failed has them dropped; one whose
    generator was adapted in an earlier sweep releases them at once."""
    import dataclasses

    def arm_jobs(encoder: str) -> list[EvaluationJob]:
        frozen = [dataclasses.replace(j, recipe=r, budget=b) for j, (r, b) in
                  zip(jobs(encoder, 2), [("none", 0), ("char-swap", 1)])]
        adapted = [
            dataclasses.replace(j, key=j.key + "-ad", arm="adapted") for j in frozen
        ]
        return frozen + adapted

    finetunes = [FinetuneJob(key, key, 0.5, 0, 1.0, 1.0, n_pairs=10) for key in ("a", "b", "c")]
    generators = {"c": "/ray/earlier/generator"}  # adapted in an earlier sweep
    evaluations = {ft.key: arm_jobs(ft.key) for ft in finetunes}
    # c's adapting evaluation finished in that sweep: only its other adapted one waits
    evaluations["c"] = [job for job in evaluations["c"] if job.key != "ev-c-0-ad"]
    searcher = FinetunesThenEvaluations(
        finetunes,
        evaluations,
        encoder=lambda key: {"checkpoint": f"/ckpt/{key}", "drift": 0.9},
        models_ready=lambda: True,
        wait_for_models=lambda: None,
        max_finetunes=3,
        adapted=generators.get,
    )
    for i, ft in enumerate(finetunes):
        assert searcher.suggest(f"f{i}")["job"]["key"] == ft.key
    for i in range(3):
        searcher.on_trial_complete(f"f{i}", result={})
    out = {}
    while (config := searcher.suggest(f"e{len(out)}")) is not None:
        out[config["job"]["key"]] = (f"e{len(out)}", config["job"])
    held = {"ev-a-1-ad", "ev-b-1-ad"}
    assert set(out) == {f"ev-{e}-{i}" for e in "abc" for i in (0, 1)} | {
        "ev-a-0-ad", "ev-b-0-ad", "ev-c-1-ad"
    }
    assert out["ev-c-1-ad"][1]["generator"] == "/ray/earlier/generator"
    assert out["ev-a-0-ad"][1]["generator"] is None  # it adapts the generator itself
    assert not held & set(out) and searcher.suggest("x") is None  # waiting, not finished
    generators["a"] = "/ray/a/generator"  # a's adaptation recorded; b's failed
    searcher.on_trial_complete(out["ev-a-0-ad"][0], result={})
    searcher.on_trial_complete(out["ev-b-0-ad"][0], result={})
    released = searcher.suggest("y")
    assert released["job"]["key"] == "ev-a-1-ad"
    assert released["job"]["generator"] == "/ray/a/generator"
    assert searcher.dropped == ["eval b 1"]
    assert searcher.suggest("z") == Searcher.FINISHED
