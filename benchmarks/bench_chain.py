"""What the process chain of one fine-tune trial costs: the sweep's stage-1 trainable with one
Ray Train worker (a Tune trial driving a Ray Train V2 TorchTrainer: controller, worker group
with its synchronisation actor, placement-group cleaner, worker) against the same trainable in
Ray Train's local mode (`ray.num_workers: 0`: the fine-tune runs in its Tune trial's process).
Trial processes are not reused in either, so each fine-tune pays its whole chain.

    python benchmarks/bench_chain.py [--workdir moclip_runs/bench/chain] [--seeds 0 1]

The smoke config's fine-tunes (tiny tower, 4 steps of 16 pairs: well under a second of
training), 2 fractions x the given seeds, as many at once as the CPUs allow, one Ray instance
for both. Prints the wall time of each Tuner and the time one fine-tune holds a slot.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeps.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "moclip_runs" / "bench" / "chain")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    import ray
    import ray.tune

    from sweeps.data import data_root
    from sweeps.execution import Tally, make_progress_callback, run_trials, start_ray
    from sweeps.plan import finetune_jobs
    from sweeps.stage0 import run_stage0
    from sweeps.trials import finetune_trial

    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    seeds = ",".join(map(str, args.seeds))
    smoke = ROOT / "sweeps" / "configs" / "smoke.yaml"
    base = [f"workdir={workdir}", f"grid.seeds=[{seeds}]", "grid.baseline=false"]
    config = load_config(smoke, [*base, "ray.num_workers=1"])
    local = load_config(smoke, [*base, "ray.num_workers=0"])
    data_root(config)
    start_ray(config)
    stage0 = run_stage0(config)
    jobs = finetune_jobs(config, stage0)
    slots = max(1, int(ray.cluster_resources()["CPU"] // config.ray.cpus_per_worker))
    print(
        f"machine: {psutil.cpu_count()} cores; {len(jobs)} smoke fine-tunes "
        f"({config.finetune.epochs:g} epochs in batches of {config.finetune.batch_size}), "
        f"{slots} at once",
        flush=True,
    )
    settings = [
        ("Tune trial + Ray Train V2 worker", "chain", config),
        ("Tune trial in local mode", "local", local),
    ]
    rows = []
    for label, name, study in settings:
        trainable = ray.tune.with_parameters(
            finetune_trial,
            study=study.to_dict(),
            root=stage0.root,
            run_name=name,
            storage=str(workdir / "ray"),
        )
        seconds: list[float] = []

        def record(job, result, checkpoint, seconds=seconds) -> str:
            seconds.append(result.get("train_seconds", float("nan")))
            return f"fit {seconds[-1]:.1f} s"

        started = time.monotonic()
        run_trials(
            name,
            trainable,
            {"job": ray.tune.grid_search([job.to_dict() for job in jobs])},
            study.ray.finetune_trial_resources(),
            str(workdir / "ray"),
            make_progress_callback({"finetune": Tally(label, len(jobs), record)}),
            lambda trial: trial.config["job"]["key"],
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
