"""The main job end to end on the smoke config: real local Ray (Train + Tune), a real MLflow
SQLite store; then the same command again, which must reuse everything."""

import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"


def run_job(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_smoke_sweep_logs_every_trial_once_and_reuses_them(tmp_path):
    args = ("--config", str(SMOKE), f"workdir={tmp_path}")
    first = run_job(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[stage 1] 2 fine-tunes: 0 finished earlier, 2 to run" in first.stdout
    assert "[stage 2] 6 evaluations" in first.stdout
    assert "0 (original)" in first.stdout and "char-swap b1" in first.stdout

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("kind") == "sweep"]
    finetunes = [r for r in runs if r.data.tags.get("kind") == "finetune"]
    evaluations = [r for r in runs if r.data.tags.get("kind") == "evaluation"]
    assert (len(parents), len(finetunes), len(evaluations)) == (1, 3, 6)
    parent = parents[0]
    assert parent.data.tags["code_version"] != "" and "data_fingerprint" in parent.data.tags
    assert parent.data.params["grid.fractions"] == "[0.5, 1.0]"
    for run in evaluations:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.metrics["fid"] > 0 and "r_precision_top3" in run.data.metrics
        history = client.get_metric_history(run.info.run_id, "fid")
        assert history[0].step == int(run.data.params["n_pairs"])
        if run.data.params["recipe"] != "none":
            assert "delta_fid" in run.data.metrics
            assert client.list_artifacts(run.info.run_id, "perturbed_prompts")
    trained = [r for r in finetunes if r.data.params["fraction"] != "0.0"]
    assert all(client.list_artifacts(r.info.run_id, "checkpoint") for r in trained)
    assert client.list_artifacts(parent.info.run_id, "results")
    assert (tmp_path / "sweeps").is_dir()

    second = run_job(*args)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 finished earlier, 0 to run" in second.stdout
    assert "6 finished earlier, 0 to run" in second.stdout
    again = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(again) == len(runs)


def test_main_job_rejects_a_bad_key_in_one_line(tmp_path):
    result = run_job(f"workdir={tmp_path}", "grid.fractons=[0.5]")
    assert result.returncode == 2
    assert "unknown key grid.fractons" in result.stderr.strip().splitlines()[-1]
