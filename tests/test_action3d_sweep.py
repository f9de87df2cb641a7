"""An MSR Action3D sweep end to end on the real recordings: real local Ray, a real MLflow
SQLite store, the action recogniser scoring every condition, and the loader's repairs on the
parent run."""

import json

import pytest
from mlflow.tracking import MlflowClient

from sweeps.config import load_config
from sweeps.keys import sweep_key
from tests.test_main_job import ROOT, run_job

# real Ray, MLflow or several processes: left out of the fast lane (dev.py test --fast)
pytestmark = pytest.mark.heavy

CONFIG = ROOT / "sweeps" / "configs" / "action3d_cpu.yaml"
TINY = [
    "encoder.kind=tiny",
    "encoder.width=32",
    "encoder.layers=1",
    "encoder.heads=2",
    "grid.fractions=[0.5,1.0]",
    "grid.seeds=[0]",
    "finetune.epochs=0",
    "finetune.steps=2",
    "evaluation.generator_steps=20",
    "evaluation.recognizer.steps=30",
    "evaluation.repeats=2",
    "evaluation.mm_prompts=4",
    "attacks.recipes=[char-swap]",
    "attacks.budgets=[1]",
    "attacks.greedy=false",
    "attacks.transfer_greedy=false",
    "attacks.prompts=64",
]


def test_an_action3d_sweep_is_scored_by_the_recogniser(msr_action3d, tmp_path):
    overrides = [f"data.root={msr_action3d}", f"workdir={tmp_path}", *TINY]
    done = run_job("--config", str(CONFIG), *overrides)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "[stage 0] test repairs: dropped 9 as gap_too_long (a13_s02_e02" in out
    assert "[stage 0] action recogniser on the real test subjects: accuracy top-1" in out
    assert "FID, ΔFID, KID and recognition accuracy" in out
    table = out.split("over generation repeats):")[1]
    assert "accuracy top-1" in table and "accuracy drop" in table and "R-prec" not in table

    folder = tmp_path / "sweeps" / sweep_key(load_config(CONFIG, overrides))
    rows = json.loads((folder / "rows.json").read_text())
    assert len(rows) == 6  # the original encoder and 2 fractions, clean and char-swap
    attacked = [r for r in rows if r["recipe"] == "char-swap"]
    assert all("accuracy_drop" in r and "delta_fid" in r for r in attacked)
    assert all(0.0 <= r["accuracy_top1"] <= 1.0 and "r_precision_top3" not in r for r in rows)
    assert (folder / "report" / "accuracy_top1_vs_pairs.png").is_file()
    assert (folder / "report" / "accuracy_drop_vs_pairs.png").is_file()

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("action3d-cpu")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    tags = parent.data.tags
    assert tags["data.repairs.test.dropped_gap_too_long"] == "9"
    assert tags["data.repairs.train.filled"] == "1"
    assert parent.data.metrics["recognizer_accuracy_top1"] > 0.5  # chance 0.05
    assert parent.data.metrics["recognizer_fid_train_vs_test"] > 0
    stage0 = [a.path for a in client.list_artifacts(parent.info.run_id, "stage0")]
    assert "stage0/data_repairs.json" in stage0
    assert any(p.startswith("stage0/recognizer-") for p in stage0)
    evaluations = [r for r in runs if r.data.tags.get("kind") == "evaluation"]
    assert len(evaluations) == 6
    for run in evaluations:
        metrics = run.data.metrics
        assert {"fid", "accuracy_top1", "accuracy_top3", "diversity", "multimodality"} <= set(
            metrics
        )
        assert "r_precision_top3" not in metrics
    drops = [r for r in evaluations if r.data.params["recipe"] == "char-swap"]
    assert all("accuracy_drop" in r.data.metrics for r in drops)
