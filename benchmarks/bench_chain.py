"""What the process chain of one fine-tune trial costs: the sweep's stage-1 trainable (a Tune
trial driving a Ray Train V2 TorchTrainer: controller, worker group with its synchronisation
actor, placement-group cleaner, worker) against a Tune trial that runs the same fine-tune in its
own process (what Ray Train's local mode, `ScalingConfig(num_workers=0)`, would do).

    python benchmarks/bench_chain.py [--workdir moclip_runs/bench/chain] [--seeds 0 1]

The smoke config's fine-tunes (tiny tower, 4 steps of 16 pairs: well under a second of
training), 2 fractions x the given seeds, as many at once as the CPUs allow, one Ray instance
for both. Prints the wall time of each Tuner and the time one fine-tune holds a slot.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeps.config import load_config  # noqa: E402


def in_process_finetune(trial_config: dict, study: dict, root: str) -> None:
    """A Tune trial that fine-tunes in its own process and reports the final checkpoint."""
    import ray.tune

    from moclip.model import save_checkpoint
    from sweeps.config import config_from_dict
    from sweeps.jobs import prepare_finetune

    config = config_from_dict(study)
    torch.set_num_threads(max(1, int(config.ray.cpus_per_worker)))
    run = prepare_finetune(config, trial_config["job"], root)
    started = time.monotonic()
    history = run.fit(torch.device("cpu"))
    metrics = {"train_seconds": round(time.monotonic() - started, 1), "loss": history[-1]["loss"]}
    metrics.update(run.test_scores(run.model, torch.device("cpu")))
    with tempfile.TemporaryDirectory() as folder:
        save_checkpoint(Path(folder) / "moclip.pt", run.model, run.meta(run.config.steps))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(folder))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "moclip_runs" / "bench" / "chain")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    import ray
    import ray.tune

    from sweeps.plan import finetune_jobs
    from sweeps.scale_vs_robustness import make_progress_callback, run_trials, start_ray
    from sweeps.stage0 import data_root, run_stage0
    from sweeps.trials import finetune_trial

    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    seeds = ",".join(map(str, args.seeds))
    config = load_config(
        ROOT / "sweeps" / "configs" / "smoke.yaml",
        [f"workdir={workdir}", f"grid.seeds=[{seeds}]", "grid.baseline=false"],
    )
    data_root(config)
    start_ray(config)
    stage0 = run_stage0(config)
    jobs = finetune_jobs(config, stage0)
    slots = max(1, int(ray.cluster_resources()["CPU"] // config.ray.cpus_per_worker))
    print(
        f"machine: {psutil.cpu_count()} cores; {len(jobs)} smoke fine-tunes "
        f"({config.finetune.steps} steps of {config.finetune.batch_size}), {slots} at once",
        flush=True,
    )
    chain = ray.tune.with_parameters(
        finetune_trial,
        study=config.to_dict(),
        root=stage0.root,
        run_name="chain",
        storage=str(workdir / "ray"),
    )
    direct = ray.tune.with_parameters(in_process_finetune, study=config.to_dict(), root=stage0.root)
    settings = [
        ("Tune trial + Ray Train V2 (the sweep)", "chain", chain, {"CPU": 0, "memory": 1}),
        (
            "Tune trial fine-tuning in its own process",
            "direct",
            direct,
            {"CPU": config.ray.cpus_per_worker},
        ),
    ]
    rows = []
    for label, name, trainable, resources in settings:
        seconds: list[float] = []

        def record(job, result, checkpoint, seconds=seconds) -> str:
            seconds.append(result.get("train_seconds", float("nan")))
            return f"fit {seconds[-1]:.1f} s"

        started = time.monotonic()
        run_trials(
            label,
            trainable,
            jobs,
            resources,
            str(workdir / "ray"),
            name,
            make_progress_callback(label, len(jobs), record),
            max_concurrent=slots,
            reuse_actors=False,
        )
        wall = time.monotonic() - started
        if len(seconds) < len(jobs):
            sys.exit(f"{label}: only {len(seconds)} of {len(jobs)} trials finished")
        rows.append((label, wall, sum(seconds) / len(seconds)))
    ray.shutdown()
    print("\nhow each fine-tune runs                     wall s  s per trial slot  vs first  fit s")
    for label, wall, fit_s in rows:
        per_slot = wall * slots / len(jobs)
        print(f"{label:<42} {wall:6.1f}  {per_slot:16.1f}  {rows[0][1] / wall:7.2f}x  {fit_s:5.1f}")
    print(
        "(s per trial slot: wall x slots / trials, the time one fine-tune holds a slot; "
        "fit s: inside the training loop)"
    )


if __name__ == "__main__":
    main()
