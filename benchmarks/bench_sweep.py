"""What Ray and MLflow cost and buy: the sweep's fine-tune + evaluation trials run through
`sweeps/scale_vs_robustness.py` against the same work as a plain sequential Python loop, and the
stage 0 of a second sweep against the first's.

    python benchmarks/bench_sweep.py [--workdir moclip_runs/bench] [--steps 24]
        [--sequential-threads 1 2] [--fractions 0.25 1.0] [--seeds 0 1]

1. Stage 0 cold: the corpus, the evaluator and the generator built from nothing (what a first
   sweep pays), in this process.
2. A plain loop over N fine-tunes (`--fractions` x `--seeds`; by default 2 x 2, the default
   config's sizes), each followed by its evaluations (clean and char-swap at budget 1),
   calling the same functions the Ray trials call (`sweeps.jobs`), with torch on 1 thread
   (what each Ray trial gets) and optionally on 2.
3. The same N trials through the sweep (local Ray on every core, MLflow SQLite store), in a
   subprocess with the stage-0 cache warm: speed-up = loop seconds / the sweep's stages 1 + 2
   seconds (one Tuner), and its setup + stage 0 seconds against step 1 (a second sweep's
   stage 0); and where the cores went meanwhile: CPU seconds of the driver, the trial
   processes and Ray's own services, read from the sweep's process tree.
4. One trial (fraction 1.0, seed 0, clean only) through the sweep against the same trial
   called directly: the overhead of Ray + MLflow per trial, and for the whole process; and
   against the same trial in a fresh Python process, to tell a process's own start and
   imports (torch, open_clip, transformers), which the sweep pays once per slot, from the rest.

Beside step 2, the loop's trials dealt to one plain process per core at once (no Ray): the
speed-up the machine itself allows, which is the sweep's real ceiling (2.0 only where two
processes do not slow each other).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
import torch
from common import describe_device

from sweeps.config import load_config

ROOT = Path(__file__).resolve().parents[1]
BASE = [
    "grid.w_distill=[1.0]",
    "grid.baseline=false",
    "attacks.recipes=[char-swap]",
    "attacks.budgets=[1]",
    "attacks.greedy=false",
    "tracking.experiment=bench-sweep",
]
SINGLE = ["grid.fractions=[1.0]", "grid.seeds=[0]", "attacks.recipes=[]"]


def overrides(workdir: Path, steps: int, extra: list[str]) -> list[str]:
    return [*BASE, f"workdir={workdir}", "finetune.epochs=0", f"finetune.steps={steps}", *extra]


def listed(values: list) -> str:
    """A list as a config override's value: [0.25,1.0]."""
    return "[" + ",".join(str(v) for v in values) + "]"


def cold_stage0(config) -> tuple[float, object]:
    """Seconds to build the corpus, the prompt sets, the evaluator and the generator."""
    from sweeps.data import data_root
    from sweeps.execution import start_ray
    from sweeps.stage0 import run_stage0

    started = time.monotonic()
    data_root(config)
    start_ray(config)
    stage0 = run_stage0(config)
    stage0.wait_for_models()
    return time.monotonic() - started, stage0


def direct_trial(config, root: str, job, conditions, scorer, folder: Path) -> float:
    """Fine-tune, score retrieval, save and reload the checkpoint, then generate and score
    under every condition: what one fine-tune trial and its evaluation trials do, without Ray."""
    from moclip.model import load_checkpoint, save_checkpoint
    from moclip.text_encoders import TextEmbedder
    from sweeps.jobs import prepare_finetune

    started = time.monotonic()
    cpu = torch.device("cpu")
    run = prepare_finetune(config, job, root)
    run.fit(cpu)
    run.test_scores(run.model, cpu)
    path = folder / f"{job.key}.pt"
    save_checkpoint(path, run.model, run.meta(run.config.steps))
    model, tokenizer, _, _ = load_checkpoint(path, cpu)
    embedder = TextEmbedder(model.text, tokenizer)
    for recipe, budget in conditions:
        scorer.score(embedder, recipe, budget)
    return time.monotonic() - started


def loop_share(config, root: str, payload: dict, jobs: list, folder: Path) -> list[float]:
    """One process's share of the plain loop: its jobs one after another on 1 torch thread."""
    from sweeps.jobs import Scorer
    from sweeps.plan import conditions

    torch.set_num_threads(1)
    scorer = Scorer(payload, torch.device("cpu"))
    return [direct_trial(config, root, job, conditions(config), scorer, folder) for job in jobs]


def parallel_loop(config, stage0, processes: int, folder: Path) -> float:
    """Wall seconds of the plain loop's trials dealt round-robin to `processes` fresh plain
    Python processes at once, without Ray (their start and imports included): what the cores
    give when nothing else runs, or, for one trial, what a process of its own costs."""
    from sweeps.plan import finetune_jobs

    jobs = finetune_jobs(config, stage0)
    payload = stage0.payload(config)
    started = time.monotonic()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        shares = [
            pool.submit(loop_share, config, stage0.root, payload, jobs[i::processes], folder)
            for i in range(processes)
        ]
        for share in shares:
            share.result()
    return time.monotonic() - started


def sequential(config, stage0, threads: int, folder: Path) -> list[float]:
    """Seconds of each trial of the grid, one after another on `threads` torch threads."""
    from sweeps.jobs import Scorer
    from sweeps.plan import conditions, finetune_jobs

    torch.set_num_threads(threads)
    scorer = Scorer(stage0.payload(config), torch.device("cpu"))
    seconds = []
    for job in finetune_jobs(config, stage0):
        seconds.append(direct_trial(config, stage0.root, job, conditions(config), scorer, folder))
        print(f"  loop ({threads} thread(s)) {job.name}: {seconds[-1]:.1f} s", flush=True)
    return seconds


def sweep(
    shared: Path, name: str, args: list[str], watch: bool = False
) -> tuple[float, dict[str, float], dict]:
    """Run the sweep in a subprocess in a fresh workdir that shares `shared`'s corpus and
    stage-0 cache; (process wall seconds, the sweep's own seconds per stage, with `watch` its
    processes' CPU seconds by kind, else {})."""
    workdir = shared.parent / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for part in ("data", "cache"):
        (workdir / part).symlink_to((shared / part).resolve())
    command = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py"), *args]
    command = [arg.replace(str(shared), str(workdir)) for arg in command]
    started = time.monotonic()
    log = workdir / "sweep.log"
    with log.open("w") as out:
        sweep_process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        cpu = cpu_by_kind(sweep_process) if watch else {}
        sweep_process.wait()
    wall = time.monotonic() - started
    if sweep_process.returncode != 0:
        raise SystemExit(f"the sweep {name} failed (exit {sweep_process.returncode}); see {log}")
    (state,) = (workdir / "sweeps").glob("*/state.json")
    return wall, json.loads(state.read_text())["seconds"], cpu


def process_kind(process: psutil.Process, driver: int) -> str | None:
    """What a process of the sweep's tree is: the driver, a Ray worker by its title
    (ray::ImplicitFunc is a Tune trial's process), or a Ray service by its program; None
    while it has no command line (starting or exiting)."""
    if process.pid == driver:
        return "driver (Tune, MLflow records)"
    words = process.cmdline()
    if not words:
        return None
    if words[0].startswith("ray::"):  # ray::ImplicitFunc.train while in a method
        return words[0].split()[0].split(".")[0]
    programs = [Path(word).name for word in words if not word.startswith("-")]
    return next((p for p in programs if p.endswith(".py")), programs[0])


def cpu_by_kind(process: subprocess.Popen, every_s: float = 0.5) -> dict[str, tuple[int, float]]:
    """Until `process` exits: kind -> (processes, CPU seconds: user + system) of it and every
    process below it, each read at most `every_s` before it ended, under its last title. The
    reading costs this process about 0.5 % of one core."""
    root = psutil.Process(process.pid)
    seen: dict[int, tuple[str, float]] = {}
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in tree:
            try:
                # a Ray worker's title changes as it takes on work: keep its last
                with member.oneshot():
                    times = member.cpu_times()
                    kind = process_kind(member, process.pid)
                kind = kind or seen.get(member.pid, (member.name(),))[0]
                seen[member.pid] = (kind, times.user + times.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass
        time.sleep(every_s)
    process.wait()
    kinds: dict[str, tuple[int, float]] = {}
    for kind, seconds in seen.values():
        count, total = kinds.get(kind, (0, 0.0))
        kinds[kind] = (count + 1, total + seconds)
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "moclip_runs" / "bench" / "shared")
    parser.add_argument("--steps", type=int, default=24, help="fine-tuning steps per trial")
    parser.add_argument("--sequential-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    sizes = [f"grid.fractions={listed(args.fractions)}", f"grid.seeds={listed(args.seeds)}"]
    grid = overrides(workdir, args.steps, sizes)
    config = load_config(ROOT / "sweeps" / "configs" / "default.yaml", grid)
    print(f"machine: {os.cpu_count()} cores, {describe_device(torch.device('cpu'))}")
    print(f"config: default.yaml with {' '.join(grid)}", flush=True)

    print("\n1. stage 0 from nothing", flush=True)
    stage0_cold, stage0 = cold_stage0(config)
    import ray

    ray.shutdown()
    print(f"  {stage0_cold:.1f} s", flush=True)

    print("\n2. plain sequential loop", flush=True)
    checkpoints = workdir / "direct"
    checkpoints.mkdir()
    loops = {t: sequential(config, stage0, t, checkpoints) for t in args.sequential_threads}
    print(f"  the same trials in {os.cpu_count()} plain processes at once", flush=True)
    ceiling = parallel_loop(config, stage0, os.cpu_count() or 1, checkpoints)
    print(f"  {ceiling:.1f} s", flush=True)
    torch.set_num_threads(1)
    single_config = load_config(
        ROOT / "sweeps" / "configs" / "default.yaml", overrides(workdir, args.steps, SINGLE)
    )
    from sweeps.jobs import Scorer
    from sweeps.plan import conditions, finetune_jobs

    single_job = finetune_jobs(single_config, stage0)[0]
    scorer = Scorer(stage0.payload(single_config), torch.device("cpu"))
    direct_single = direct_trial(
        single_config, stage0.root, single_job, conditions(single_config), scorer, checkpoints
    )
    print(f"  one trial, clean only, called directly: {direct_single:.1f} s", flush=True)
    fresh_single = parallel_loop(single_config, stage0, 1, checkpoints)
    print(f"  the same in a fresh Python process: {fresh_single:.1f} s", flush=True)

    print("\n3. the same trials through the sweep", flush=True)
    grid_wall, grid_stages, grid_cpu = sweep(workdir, "sweep-grid", grid, watch=True)
    print(f"  {grid_wall:.1f} s; {json.dumps(grid_stages)}", flush=True)
    print("\n4. one trial through the sweep", flush=True)
    one_wall, one_stages, _ = sweep(workdir, "sweep-one", overrides(workdir, args.steps, SINGLE))
    print(f"  {one_wall:.1f} s; {json.dumps(one_stages)}", flush=True)

    trials = grid_stages["stages 1+2"] + grid_stages["model wait"]
    second_stage0 = grid_stages["setup"] + grid_stages["stage 0"] + grid_stages["model wait"]
    one_trial = one_stages["stages 1+2"] + one_stages["model wait"]
    n = len(finetune_jobs(config, stage0))
    print(f"\n{n} fine-tunes x {len(conditions(config))} conditions, {args.steps} steps each")
    print("\n| measure | seconds | ratio |\n|---|---:|---:|")
    for threads, seconds in loops.items():
        total = sum(seconds)
        print(
            f"| loop, {threads} thread(s), {n} trials | {total:.1f} | speed-up of the sweep "
            f"{total / trials:.2f}x (goal >= 1.7x) |"
        )
    print(
        f"| the loop's trials in {os.cpu_count()} plain processes at once, {n} trials | "
        f"{ceiling:.1f} | what the cores give without Ray: {sum(loops[min(loops)]) / ceiling:.2f}x |"
    )
    print(f"| sweep, stages 1 + 2, {n} trials | {trials:.1f} | |")
    print(f"| sweep, whole process, {n} trials | {grid_wall:.1f} | |")
    print(f"| one trial called directly | {direct_single:.1f} | |")
    print(
        f"| one trial through the sweep, stages 1 + 2 | {one_trial:.1f} | overhead "
        f"{100 * (one_trial / direct_single - 1):+.1f} % (goal <= 10 %) |"
    )
    print(
        f"| one trial through the sweep, whole process | {one_wall:.1f} | overhead "
        f"{100 * (one_wall / direct_single - 1):+.1f} % |"
    )
    print(
        f"| one trial called directly in a fresh Python process (its start and imports) | "
        f"{fresh_single:.1f} | the sweep's stages 1 + 2 against it: "
        f"{100 * (one_trial / fresh_single - 1):+.1f} % |"
    )
    print(f"| stage 0, first sweep (cold) | {stage0_cold:.1f} | |")
    print(
        f"| stage 0, second sweep (setup + stage 0 + model wait) | {second_stage0:.1f} | "
        f"{100 * second_stage0 / stage0_cold:.1f} % of the first (goal <= 5 %) |"
    )
    cores = os.cpu_count() or 1
    print(
        f"\nWhere the cores went in the sweep of {n} trials ({cores} cores x {grid_wall:.1f} s "
        f"= {cores * grid_wall:.0f} CPU seconds)"
    )
    print("\n| process | count | CPU seconds | share of the cores |\n|---|---:|---:|---:|")
    for kind, (count, seconds) in sorted(grid_cpu.items(), key=lambda item: -item[1][1]):
        print(f"| {kind} | {count} | {seconds:.1f} | {100 * seconds / (cores * grid_wall):.1f} % |")
    idle = cores * grid_wall - sum(seconds for _, seconds in grid_cpu.values())
    print(f"| (idle) | | {idle:.1f} | {100 * idle / (cores * grid_wall):.1f} % |")


if __name__ == "__main__":
    main()
