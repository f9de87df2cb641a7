"""The main job end to end on the smoke config: real local Ray (Train + Tune), a real MLflow
SQLite store; then the same command again, which must reuse everything."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from mlflow.tracking import MlflowClient

from cluster.tracking_stack import free_port, start_mlflow, stop
from sweeps.config import load_config

# real Ray, MLflow or several processes: left out of the fast lane (dev.py test --fast)
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"


# Credentials planted in the sweep's environment: none may reach its output, MLflow, the
# workdir's files (artifacts, checkpoints, trial records) or Ray's logs.
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDKEYID0000",
    "AWS_SECRET_ACCESS_KEY": "planted/secret+AWS+key+0123456789abcdef",
    "MLFLOW_TRACKING_PASSWORD": "planted-mlflow-password-42",
}
RAY_LOGS = Path("/tmp/ray/session_latest/logs")


def files_containing(folder: Path, needles: list[bytes]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n.decode()}" for n in needles if n in data]
    return hits


def run_job(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)


def smoke_runs(workdir: Path) -> tuple[MlflowClient, list, dict[str, list]]:
    """(client, every run of the smoke experiment, runs by their 'kind' tag)."""
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("smoke")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    kinds: dict[str, list] = {}
    for run in runs:
        kinds.setdefault(run.data.tags.get("kind", ""), []).append(run)
    return client, runs, kinds


def run_killing(tmp_path: Path, args: tuple, env: dict, victim) -> tuple[int, str]:
    """Run the sweep; SIGKILL the process `victim()` names (a pid) once it names one. (exit
    code, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    with (tmp_path / "sweep.log").open("w+") as log:
        sweep = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
        deadline = time.monotonic() + 300
        killed = None
        while killed is None and sweep.poll() is None and time.monotonic() < deadline:
            killed = victim()
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.1)
        sweep.wait(timeout=600)
        log.seek(0)
        output = log.read()
    assert killed is not None, "nothing to kill:\n" + output[-3000:]
    return sweep.returncode, output


def run_killing_a_train_worker(tmp_path: Path, args: tuple, env: dict) -> tuple[int, str]:
    """Run the sweep; once both fine-tunes have a registered Ray Train checkpoint, SIGKILL one
    Ray Train worker process. (exit code, output)."""

    def victim() -> int | None:
        # the snapshot is written once Ray Train has registered a checkpoint of the run
        if len(list((tmp_path / "ray").glob("ft-*/checkpoint_manager_snapshot.json"))) < 2:
            return None
        return next(
            (
                proc.pid
                for proc in psutil.process_iter(["cmdline"])
                if "RayTrainWorker" in " ".join(proc.info["cmdline"] or [])
            ),
            None,
        )

    return run_killing(tmp_path, args, env, victim)


def run_killing_a_local_trial(tmp_path: Path, args: tuple, last_step: int) -> tuple[int, str]:
    """Run the sweep in local mode; SIGKILL the trial process of a fine-tune that Tune holds a
    checkpoint of and that is at most at step `last_step` (far from its end: a finished
    fine-tune's process goes on to other trials). (exit code, output)."""

    def victim() -> int | None:
        for path in (tmp_path / "ray").glob("stages-*/ft-*/result.json"):
            try:
                rows = [json.loads(line) for line in path.read_text().splitlines()]
            except json.JSONDecodeError:  # a line being written
                continue
            # Tune writes a result's line before it registers the result's checkpoint, and
            # takes the next result only after that: two lines mean the first one is registered
            if len(rows) >= 2 and rows[-1]["step"] <= last_step and "n_pairs" not in rows[-1]:
                return rows[-1]["pid"]
        return None

    return run_killing(tmp_path, args, {}, victim)


def uninterrupted_finetune(config, record: dict) -> dict[str, float]:
    """The final loss, the validation's chosen step and the test scores of the record's
    fine-tune, run in one go in this process."""
    from sweeps.data import data_root
    from sweeps.jobs import prepare_finetune
    from sweeps.records import FinetuneJob

    torch.set_num_threads(1)  # as the Ray worker
    run = prepare_finetune(config, FinetuneJob.from_dict(record["job"]), data_root(config))
    history = run.fit("cpu")  # validating as the worker does
    chosen = run.select()
    scores = run.test_scores(run.model, torch.device("cpu"))
    return {"loss": history[-1]["loss"], **chosen, **scores}


def test_smoke_sweep_survives_a_killed_worker_logs_every_trial_once_and_reuses_them(tmp_path):
    # long enough fine-tunes, with checkpoints, for a worker to die mid-way
    steps = ("finetune.epochs=0", "finetune.steps=16", "ray.checkpoint_every=4")
    # both generator arms: the frozen one and the one adapted to each fine-tuned encoder
    args = ("--config", str(SMOKE), f"workdir={tmp_path}", *steps, "evaluation.generator=both")
    code, output = run_killing_a_train_worker(tmp_path, args, PLANTED)
    assert code == 0, output[-3000:]
    # the killed worker's fine-tune restarted from its last checkpoint and gives the numbers of
    # an uninterrupted run
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("ft-*.json")]
    (resumed,) = [r for r in records if r["metrics"]["resumed_at_step"] > 0]
    assert "resumed from its step-" in output
    expected = uninterrupted_finetune(load_config(SMOKE, [f"workdir={tmp_path}", *steps]), resumed)
    for name, value in expected.items():
        assert resumed["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert "[stage 1] 2 fine-tunes: 0 finished earlier, 2 to run" in output
    assert "[stage 2] 10 evaluations" in output  # 3 encoders x 2 frozen, 2 x 2 adapted
    assert "0 (original)" in output and "char-swap b1" in output

    client, runs, kinds = smoke_runs(tmp_path)
    parents, finetunes, evaluations = kinds["sweep"], kinds["finetune"], kinds["evaluation"]
    assert (len(parents), len(finetunes), len(evaluations)) == (1, 3, 10)
    parent = parents[0]
    assert parent.data.tags["code_version"] != "" and "data_fingerprint" in parent.data.tags
    # the vector kernels torch used decide the last digits on a CPU
    assert parent.data.tags["platform.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert parent.data.params["grid.fractions"] == "[0.5, 1.0]"
    for run in evaluations:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.metrics["fid"] > 0 and "r_precision_top3" in run.data.metrics
        assert run.data.metrics["multimodality"] >= 0 and "fid_ci95" in run.data.metrics
        history = client.get_metric_history(run.info.run_id, "fid")
        assert history[0].step == int(run.data.params["n_pairs"])
        assert "kid" in run.data.metrics and "fid_r0" in run.data.metrics  # per repeat
        if run.data.params["recipe"] != "none":
            assert "delta_fid" in run.data.metrics
            assert client.list_artifacts(run.info.run_id, "perturbed_prompts")
        else:  # the real-versus-real floor at the same number of motions (32 prompts)
            assert run.data.metrics["floor_motions"] == 32 and run.data.metrics["floor_fid"] > 0
    # each fine-tuned encoder's adapted generator: trained once by its clean adapted
    # evaluation, stored in that trial's checkpoint, read by its attacked one
    stored = {
        json.loads(p.read_text())["job"]["encoder_key"]: json.loads(p.read_text())
        for p in (tmp_path / "results").glob("ev-*.json")
        if json.loads(p.read_text())["job"].get("arm") == "adapted"
        and json.loads(p.read_text())["job"]["recipe"] == "none"
    }
    assert len(stored) == 2
    for record in stored.values():
        assert (Path(record["checkpoint"]) / "generator.pt").is_file()
    attacked = [
        json.loads(p.read_text())["job"] for p in (tmp_path / "results").glob("ev-*.json")
    ]
    attacked = [job for job in attacked if job.get("arm") == "adapted" and job["recipe"] != "none"]
    assert sorted(job["generator"] for job in attacked) == sorted(
        record["checkpoint"] for record in stored.values()
    )
    clean = {
        (run.data.params["encoder_key"], run.data.params["generator"]): run.data.metrics["fid"]
        for run in evaluations
        if run.data.params["recipe"] == "none"
    }
    for key in stored:  # the adapted generator makes other motions than the frozen one
        assert clean[(key, "adapted")] != clean[(key, "frozen")]
    trained = [r for r in finetunes if r.data.params["fraction"] != "0.0"]
    assert all(client.list_artifacts(r.info.run_id, "checkpoint") for r in trained)
    assert client.list_artifacts(parent.info.run_id, "results")
    assert (tmp_path / "sweeps").is_dir()
    # the report's audit: clean -> perturbed pairs read back from an evaluation's artifact
    (audit,) = json.loads(next((tmp_path / "sweeps").glob("*/report/audit.json")).read_text())
    assert audit["condition"] == "char-swap b1" and audit["samples"]
    for clean, perturbed in audit["samples"]:  # char-swap at budget 1: one word, one swap
        assert clean != perturbed and len(clean.split()) == len(perturbed.split())
        changed = [(a, b) for a, b in zip(clean.split(), perturbed.split()) if a != b]
        assert len(changed) == 1 and sorted(changed[0][0]) == sorted(changed[0][1])

    secrets = [PLANTED[k] for k in ("AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD")]
    assert not any(secret in output for secret in secrets)
    for run in runs:
        values = [*run.data.params.values(), *run.data.tags.values()]
        assert not any(secret in value for secret in secrets for value in values)
    needles = [secret.encode() for secret in secrets]
    assert files_containing(tmp_path, needles) == []  # store, artifacts, checkpoints, records
    assert files_containing(RAY_LOGS, needles) == []

    # sampling in other batches changes how, not what: the trained generator and every
    # record are reused
    second = run_job(*args, "generator.sample_batch=3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "[stage 0] reusing generator" in second.stdout
    assert "2 finished earlier, 0 to run" in second.stdout
    assert "10 finished earlier, 0 to run" in second.stdout  # adapted generators too
    assert len(smoke_runs(tmp_path)[1]) == len(runs)


def test_local_mode_fine_tune_killed_mid_way_resumes_from_its_checkpoint(tmp_path):
    # Ray Train's local mode: the fine-tune runs in its Tune trial's process, and Tune (not Ray
    # Train) restarts it from its last reported checkpoint
    steps = ("finetune.epochs=0", "finetune.steps=48", "ray.checkpoint_every=4", "ray.num_workers=0")
    args = ("--config", str(SMOKE), f"workdir={tmp_path}", *steps)
    code, output = run_killing_a_local_trial(tmp_path, args, last_step=24)
    assert code == 0, output[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("ft-*.json")]
    (resumed,) = [r for r in records if r["metrics"]["resumed_at_step"] > 0]
    assert resumed["metrics"]["resumed_at_step"] % 4 == 0
    assert "resumed from its step-" in output
    expected = uninterrupted_finetune(load_config(SMOKE, [f"workdir={tmp_path}", *steps]), resumed)
    for name, value in expected.items():
        assert resumed["metrics"][name] == pytest.approx(value, rel=1e-4, abs=1e-5), name
    assert "[stage 2] 6/6 " in output


def test_a_fine_tune_restarted_after_its_final_checkpoint_keeps_its_loss_and_scores(tmp_path):
    """A local-mode fine-tune whose process fails after its final report: Tune restarts it
    from its final checkpoint, where no step is left to train, and its result still has the
    final loss (kept beside the checkpoint) and the same test scores as one uninterrupted run."""
    import ray
    import ray.tune

    from sweeps.data import data_root
    from sweeps.records import FinetuneJob
    from sweeps.trials import finetune_worker

    config = load_config(SMOKE, [f"workdir={tmp_path}", "ray.num_workers=0"])
    job = FinetuneJob("ft-final", "finetune f1", 1.0, 0, 1.0, 1.0, n_pairs=0).to_dict()
    loop_config = {"study": config.to_dict(), "job": job, "root": data_root(config)}
    failed_once = tmp_path / "failed-once"

    def fails_after_its_final_report(_: dict) -> None:
        finetune_worker({**loop_config, "fingerprints": None, "scoring": None})
        if not failed_once.exists():
            failed_once.touch()
            raise RuntimeError("the trial's process fails after its final report")

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        tuner = ray.tune.Tuner(
            fails_after_its_final_report,
            run_config=ray.tune.RunConfig(
                storage_path=str(tmp_path / "ray"),
                failure_config=ray.tune.FailureConfig(max_failures=1),
                verbose=0,
            ),
        )
        (result,) = tuner.fit()
    finally:
        ray.shutdown()
    assert failed_once.exists() and result.error is None
    # nothing left to train: restarted at its last step (the epoch's steps on the subset)
    assert result.metrics["resumed_at_step"] == result.metrics["step"] > 0
    expected = uninterrupted_finetune(config, {"job": job})
    for name, value in expected.items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-4, abs=1e-5), name


def test_main_job_rejects_a_bad_key_in_one_line(tmp_path):
    result = run_job(f"workdir={tmp_path}", "grid.fractons=[0.5]")
    assert result.returncode == 2
    assert "unknown key grid.fractons" in result.stderr.strip().splitlines()[-1]


def test_optuna_mode_tunes_a_fraction_and_evaluates_its_best(tmp_path):
    # one fraction: the search runs fraction by fraction, each the same way; in local mode
    # (the default config's), where a trial's process takes on the next trial
    args = (
        "--config",
        str(SMOKE),
        f"workdir={tmp_path}",
        "--search",
        "optuna",
        "grid.fractions=[1.0]",
        "data.num_motions=640",  # 32 validation motions: what the search scores
        "search.trials=3",
        "search.w_distill=[0.0, 2.0]",
        "finetune.epochs=0",
        "finetune.steps=4",
        # ASHA's rung at step 2 has no checkpoint; the checkpoint at step 3 is no rung
        "search.grace_steps=2",
        "ray.checkpoint_every=3",
        "ray.num_workers=0",
    )
    first = run_job(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert re.search(r"\[search\] fraction 1 \(\d+ pairs\): 3 Optuna trials, 0 finished earlier",
                     first.stdout)
    # 3 trials in 2 slots: a process took on a second trial
    results = [
        [json.loads(line) for line in path.read_text().splitlines()]
        for path in (tmp_path / "ray").glob("search-*/*/result.json")
    ]
    pids = [rows[-1]["pid"] for rows in results]
    assert len(pids) == 3 and len(set(pids)) < 3
    # every trial scored its model at the rung (step 2) without writing a checkpoint there,
    # then at its checkpoint (step 3) and at its end, where it was not stopped
    for rows in results:
        steps = [row["step"] for row in rows]
        assert steps in ([2], [2, 3, 4]), steps
        assert all(row["objective"] > 0 for row in rows)
        saved = [row["step"] for row in rows if row.get("checkpoint_dir_name")]
        assert saved == steps[1:]
    # the search never read the test split: stage 1 trains the chosen values to score them
    assert "[stage 1] 1 fine-tunes: 0 finished earlier, 1 to run" in first.stdout

    _, _, kinds = smoke_runs(tmp_path)
    trials, finetunes, evaluations = kinds["search"], kinds["finetune"], kinds["evaluation"]
    assert len(trials) == 3
    assert len(evaluations) == 4  # (original + the tuned encoder) x (clean, char-swap b1)
    for run in trials:
        assert run.data.tags["fraction"] == "1"
        assert 0.0 <= float(run.data.params["w_distill"]) <= 2.0
        assert 1e-6 <= float(run.data.params["lr_text"]) <= 1e-4
        assert run.data.metrics["steps_trained"] in (2.0, 4.0)
        assert run.data.metrics["objective"] > 0
    complete = [r for r in trials if r.data.tags["outcome"] == "complete"]
    best = min(complete, key=lambda r: r.data.metrics["objective"])
    # only the best values are fine-tuned again and evaluated
    finetuned = {r.data.params["w_distill"] for r in finetunes if r.data.params["fraction"] != "0.0"}
    assert finetuned == {best.data.params["w_distill"]}
    evaluated = [r for r in evaluations if r.data.tags["fraction"] == "1"]
    assert len(evaluated) == 2  # clean, char-swap b1
    assert {r.data.params["w_distill"] for r in evaluated} == {best.data.params["w_distill"]}
    assert "search/best_objective" in kinds["sweep"][0].data.metrics


def run_until(args: tuple, prefix: str, stop) -> tuple[int, str]:
    """Run the sweep; at its first output line starting with `prefix` send it the signal
    `stop`, or call `stop(process)`, and let it go on. (exit code, output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    process = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith(prefix):
                if isinstance(stop, int):
                    process.send_signal(stop)
                else:
                    stop(process)
                break
        output = "".join(lines) + process.communicate(timeout=600)[0]
    finally:
        process.kill()
    return process.returncode, output


def finished_finetunes(workdir: Path) -> dict[str, int]:
    """Trial record file name -> modification time, of the fine-tunes recorded so far; every
    record there must be whole."""
    records = {}
    for path in (workdir / "results").glob("*.json"):
        json.loads(path.read_text())
        if path.name.startswith("ft-"):
            records[path.name] = path.stat().st_mtime_ns
    return records


def test_sweep_survives_interrupts_and_an_mlflow_outage(tmp_path):
    """Against a real `mlflow server`: SIGINT mid stage 1, then SIGKILL of the resumed run, then
    a resume that finishes although the server goes away for 30 s in its stage 2 (MLflow's
    client retries with backoff: 7 tries over about two minutes by default)."""
    port = free_port()
    server_args = (
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        str(tmp_path / "artifacts"),
        None,
        "127.0.0.1",
        port,
        tmp_path,
    )
    server = start_mlflow(*server_args)
    try:
        uri = f"http://127.0.0.1:{port}"
        # fine-tunes in local mode (ray.num_workers=0): the test is about the sweep's records,
        # and this mode starts one process per fine-tune instead of five
        args = ("--config", str(SMOKE), f"workdir={tmp_path}", "grid.seeds=[0,1]")
        args += ("ray.num_workers=0", "--tracking-uri", uri)
        code, output = run_until(args, "[stage 1] 1/4 ", signal.SIGINT)
        assert code == 130, output[-3000:]
        assert "Run the same command with --resume" in output
        interrupted = finished_finetunes(tmp_path)
        assert 1 <= len(interrupted) < 4

        # killed outright: nothing runs its cleanup; every record it leaves is whole
        code, output = run_until((*args, "--resume"), "[stage 1] 1/", signal.SIGKILL)
        assert code == -signal.SIGKILL, output[-3000:]
        assert f"4 fine-tunes: {len(interrupted)} finished earlier" in output
        killed = finished_finetunes(tmp_path)
        assert len(interrupted) < len(killed) <= 4

        def outage(process: subprocess.Popen) -> None:
            nonlocal server
            stop(server)
            time.sleep(30)
            server = start_mlflow(*server_args)

        code, output = run_until((*args, "--resume"), "[stage 2] 1/", outage)
    finally:
        stop(server)
    assert code == 0, output[-3000:]
    assert "recording it failed" not in output
    assert "[sweep] resuming" in output
    assert f"4 fine-tunes: {len(killed)} finished earlier, {4 - len(killed)} to run" in output
    # finished trials were read, not rewritten
    assert {k: v for k, v in finished_finetunes(tmp_path).items() if k in killed} == killed
    _, runs, kinds = smoke_runs(tmp_path)
    keys = [r.data.tags.get("trial_key") for r in runs if "trial_key" in r.data.tags]
    # the original encoder, 4 fine-tunes, and 2 conditions for each of 4 fine-tuned encoders
    # and for the original encoder under each of the 2 seeds' generation noise
    assert len(keys) == len(set(keys)) == 1 + 4 + (4 + 2) * 2
    assert len(kinds["sweep"]) == 1
    assert all(run.info.status == "FINISHED" for run in runs)
