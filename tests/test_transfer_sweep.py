"""The transfer protocol end to end: a small synthetic corpus fine-tuned on and generated
from, the real MSR Action3D folder scored on (real local Ray, a real MLflow SQLite store), and
the runs tagged apart from an in-domain study's."""

import json

import pytest
from mlflow.tracking import MlflowClient

from sweeps.config import CONFIG_DIR, load_config
from sweeps.keys import sweep_key
from tests.test_main_job import ROOT, run_job

SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"


@pytest.mark.heavy
def test_a_transfer_sweep_scores_corpus_generations_on_action3d(msr_action3d, tmp_path):
    overrides = [
        f"workdir={tmp_path}",
        "data.eval_kind=action3d",
        f"data.eval_root={msr_action3d}",
        "evaluation.recognizer.steps=30",
        "evaluation.repeats=2",
        "attacks.prompts=0",  # every Action3D test recording
        "tracking.experiment=transfer-smoke",
    ]
    done = run_job("--config", str(SMOKE), *overrides)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "[stage 0] transfer protocol: fine-tuned and generating on" in out
    assert "[stage 0] action3d/test repairs: dropped 9 as gap_too_long" in out
    # the prompts are Action3D's actions (its test recordings'), not the corpus's captions
    assert "[stage 0] prompts char-swap budget 1: " in out and "/261 changed" in out
    assert "[stage 0] action recogniser on the real test subjects: accuracy top-1" in out
    table = out.split("over generation repeats):")[1]
    assert "accuracy top-1" in table and "accuracy drop" in table and "R-prec" not in table

    folder = tmp_path / "sweeps" / sweep_key(load_config(SMOKE, overrides))
    rows = json.loads((folder / "rows.json").read_text())
    assert len(rows) == 6  # the original encoder and 2 fractions, clean and char-swap
    assert all("accuracy_drop" in r and "delta_fid" in r for r in rows if r["recipe"] != "none")
    summary = (folder / "report" / "summary.md").read_text()
    assert "Transfer: MoCLIP fine-tuned and the generator trained on the synthetic corpus" in summary

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("transfer-smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 1 + 2 + 6 + 1  # the sweep, 2 fine-tunes, 6 evaluations, the baseline
    for run in runs:  # every run says how it was measured: the UI filters on it
        tags = run.data.tags
        assert (tags["protocol"], tags["scored_on"], tags["trained_on"]) == (
            "transfer", "action3d", "synthetic"
        ), run.info.run_name
    parent = next(r for r in runs if r.data.tags.get("kind") == "sweep")
    assert parent.data.metrics["recognizer_num_test_motions"] == 261
    assert len(parent.data.tags["action3d/test_fingerprint"]) == 64  # what it was scored on
    assert parent.data.metrics["recognizer_accuracy_top1"] > 0.5  # chance 0.05
    evaluations = [r for r in runs if r.data.tags.get("kind") == "evaluation"]
    for run in evaluations:
        metrics = run.data.metrics
        wanted = {"fid", "kid", "accuracy_top1", "diversity", "multimodality", "fid_r1"}
        assert wanted <= set(metrics) and "r_precision_top3" not in metrics, metrics
        if run.data.params["recipe"] == "none":  # the floor: Action3D's real motions
            assert metrics["floor_fid"] > 0
    # the fine-tunes trained and chose their checkpoints on the corpus, never on Action3D
    finetunes = [r for r in runs if r.data.tags.get("kind") == "finetune" and "n_pairs" in r.data.metrics]
    assert finetunes and all(r.data.metrics["n_pairs"] in (288, 576) for r in finetunes)


def test_transfer_configs_load_and_say_where_they_score():
    for name in ("transfer_cpu", "transfer_humanml3d"):
        config = load_config(CONFIG_DIR / f"{name}.yaml")
        assert config.data.eval_kind == "action3d" and config.data.eval_root
    cpu = load_config(CONFIG_DIR / "transfer_cpu.yaml")
    assert cpu.data.kind == "synthetic" and cpu.encoder.kind == "hf"
    train_motions = round(cpu.data.num_motions * 0.8)  # the synthetic corpus's training share
    assert train_motions * max(cpu.grid.fractions) >= 10_000
    gpu = load_config(CONFIG_DIR / "transfer_humanml3d.yaml")
    assert gpu.data.kind == "humanml3d" and gpu.encoder.model == "ViT-B-32"


def test_the_protocol_keeps_in_domain_keys_and_changes_transfer_ones():
    plain = load_config(SMOKE)
    moved = load_config(SMOKE, ["data.eval_kind=action3d", "data.eval_root=/a"])
    elsewhere = load_config(SMOKE, ["data.eval_kind=action3d", "data.eval_root=/b"])
    assert sweep_key(plain) != sweep_key(moved)
    # where the recordings lie is not what they hold (their fingerprints key the scores)
    assert sweep_key(moved) == sweep_key(elsewhere)
