"""Can a Tune trial's process start be paid before the sweep's clock starts? Ray starts idle
workers when a driver connects and, with `RAY_preload_python_modules`, imports modules in
them; this checks whether Tune's trials run in those workers.

    python benchmarks/bench_prestart.py [--settle 20] [--preload torch,open_clip,ray.train.torch]

Runs a small local Ray twice, without and with the preload: waits `--settle` seconds for the
idle workers, starts a plain actor and one with the runtime environment Tune gives its trials
(the controls), then runs a Tuner of 2 trials that each import what a sweep trial imports
(open_clip and `sweeps.trials`). Prints which of them ran in an idle worker, whether the
trials found their imports done, and the Tuner's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what Ray 2.60's Tune registers every trainable with (`ray.tune.execution.class_cache`) when
# the driver's environment holds none of the variables it copies (AWS keys and the like)
TUNE_RUNTIME_ENV = {"env_vars": {"PL_DISABLE_FORK": "1"}}


def trial(config: dict) -> None:
    """A Tune trial that imports what a sweep trial imports and reports how long that took."""
    import ray.tune

    preloaded = "open_clip" in sys.modules
    sys.path.insert(0, str(ROOT))
    started = time.perf_counter()
    import open_clip  # noqa: F401

    import sweeps.trials  # noqa: F401

    imports_s = time.perf_counter() - started
    ray.tune.report({"pid": os.getpid(), "preloaded": preloaded, "imports_s": imports_s})


def idle_workers() -> set[int]:
    """The process ids of Ray's idle workers on this machine."""
    import psutil

    # a worker retitles itself; its command line is the title padded with empty strings
    processes = psutil.process_iter(["cmdline"])
    return {p.pid for p in processes if (p.info["cmdline"] or [])[:1] == ["ray::IDLE"]}


def one_run(settle: float) -> dict:
    """In a child process: the measurements of one local Ray."""
    import ray
    import ray.tune

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    time.sleep(settle)

    @ray.remote(num_cpus=1)
    class Probe:
        def pid(self) -> int:
            return os.getpid()

    # the controls: a plain actor, then one with the runtime environment Tune gives its
    # trials (`ray.tune.execution.class_cache`); Tune's trials may take the idle workers left
    in_idle = {}
    for name, options in (("plain", {}), ("tune_env", {"runtime_env": TUNE_RUNTIME_ENV})):
        idle = idle_workers()
        probe = Probe.options(**options).remote()
        in_idle[name] = ray.get(probe.pid.remote()) in idle
        ray.kill(probe)
    idle = idle_workers()
    with tempfile.TemporaryDirectory() as storage:
        started = time.perf_counter()
        results = ray.tune.Tuner(
            trial,
            tune_config=ray.tune.TuneConfig(num_samples=2),
            run_config=ray.tune.RunConfig(storage_path=storage, verbose=0),
        ).fit()
        fit_s = time.perf_counter() - started
    trials = [r.metrics for r in results]
    ray.shutdown()
    return {
        "idle_left_for_tune": len(idle),
        "fit_s": fit_s,
        "trials": [
            {"in_idle": t["pid"] in idle, "preloaded": t["preloaded"], "imports_s": t["imports_s"]}
            for t in trials
        ],
        "actors_in_idle": in_idle,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settle", type=float, default=20.0, help="seconds for idle workers")
    parser.add_argument("--preload", default="torch,open_clip,ray.train.torch")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args.settle)))
        return

    from importlib.metadata import version

    print(
        f"python {sys.version.split()[0]}, ray {version('ray')}, {os.cpu_count()} CPUs; "
        f"settle {args.settle:.0f} s"
    )
    # read every module from disk once first, so that neither run pays a cold file cache
    warm = "import open_clip, ray.tune, sweeps.trials"
    subprocess.run([sys.executable, "-c", warm], cwd=ROOT, check=True)
    for preload in ("", args.preload):
        env = {k: v for k, v in os.environ.items() if k != "RAY_preload_python_modules"}
        if preload:
            env["RAY_preload_python_modules"] = preload
        child = subprocess.run(
            [sys.executable, __file__, "--child", "--settle", str(args.settle)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            sys.exit(f"the run with preload {preload or 'none'!r} failed:\n{child.stderr[-3000:]}")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        trials, actors = row["trials"], row["actors_in_idle"]
        yes = {True: "yes", False: "no"}
        print(f"\npreload: {preload or 'none'}")
        print(f"  a plain actor ran in an idle worker: {yes[actors['plain']]}")
        print(
            f"  an actor with Tune's runtime env {TUNE_RUNTIME_ENV} ran in an idle worker: "
            f"{yes[actors['tune_env']]}"
        )
        print(
            f"  Tune trials in an idle worker: {sum(t['in_idle'] for t in trials)} of "
            f"{len(trials)} (idle workers left beside them: {row['idle_left_for_tune']})"
        )
        print(
            f"  Tune trials that found open_clip imported: {sum(t['preloaded'] for t in trials)}"
            f" of {len(trials)}; the trials' own imports: "
            + " / ".join(f"{t['imports_s']:.1f} s" for t in trials)
        )
        print(f"  Tuner.fit of the 2 trials at once: {row['fit_s']:.1f} s")


if __name__ == "__main__":
    main()
