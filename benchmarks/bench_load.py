"""Load: 200 evaluation trials on this machine's CPUs, with peak memory.

    python benchmarks/bench_load.py [--workdir moclip_runs/bench/load]

The smoke config with 3 fractions (4 encoders with the original one) and every transfer
recipe at budgets 1-7 (49 attack conditions and the clean one): 4 x 50 = 200 evaluation
trials, each handed to Ray Tune as soon as its encoder is fine-tuned. The sweep runs in a
subprocess; a sampler reads the resident memory of it and every process under it (Ray's GCS,
raylet, workers) every 0.5 s. Resident sizes count shared pages once per process, so the sum
over-counts; the machine's used memory above its level before the start is the other bound.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RECIPES = "[char-swap,char-delete,char-insert,qwerty,homoglyph,wordnet-synonym,composite]"
OVERRIDES = [
    "grid.fractions=[0.25,0.5,1.0]",
    f"attacks.recipes={RECIPES}",
    "attacks.budgets=[1,2,3,4,5,6,7]",
    "tracking.experiment=bench-load",
]
MIB = 2**20


class MemorySampler(threading.Thread):
    """Peak summed RSS of a process tree, peak process count and peak machine memory in use."""

    def __init__(self, root_pid: int, every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(root_pid), every_s
        self.baseline = psutil.virtual_memory().used
        self.peak_rss = self.peak_used = self.peak_processes = 0
        self.stopped = threading.Event()

    def sample(self) -> None:
        try:
            tree = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        rss = 0
        for process in tree:
            try:
                rss += process.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        self.peak_rss = max(self.peak_rss, rss)
        self.peak_processes = max(self.peak_processes, len(tree))
        self.peak_used = max(self.peak_used, psutil.virtual_memory().used - self.baseline)

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.sample()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "moclip_runs" / "bench" / "load")
    args = parser.parse_args()
    workdir = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    smoke = ROOT / "sweeps" / "configs" / "smoke.yaml"
    command = [
        sys.executable,
        str(ROOT / "sweeps" / "scale_vs_robustness.py"),
        "--config",
        str(smoke),
        f"workdir={workdir}",
        *OVERRIDES,
    ]
    print(f"machine: {psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB")
    print(f"command: {' '.join(command[1:])}", flush=True)
    workdir.mkdir(parents=True)
    log = workdir / "sweep.log"
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        sampler = MemorySampler(process.pid)
        sampler.start()
        code = process.wait()
        sampler.stopped.set()
    wall = time.monotonic() - started
    lines = log.read_text().splitlines()
    planned = next(
        (line for line in lines if line.startswith("[stage 2] ") and "evaluations" in line), ""
    )
    finished = len(list((workdir / "results").glob("ev-*.json")))
    seconds = {}
    for state in (workdir / "sweeps").glob("*/state.json"):
        seconds = json.loads(state.read_text()).get("seconds", {})
    print(f"\nexit {code}; {planned}")
    print("| measure | value |\n|---|---:|")
    print(f"| evaluation trials finished | {finished} |")
    print(f"| failed trials | {sum('FAILED' in line for line in lines)} |")
    print(f"| wall, whole sweep | {wall:.0f} s |")
    # one Tuner runs the fine-tunes and then the evaluations as their encoders are recorded
    span = seconds.get("stages 1+2")
    print(f"| stages 1 + 2 (3 fine-tunes, then the evaluations) | {span or float('nan'):.0f} s |")
    if span:
        print(f"| evaluation trials per minute of stages 1 + 2 | {60 * finished / span:.1f} |")
    print(f"| peak RSS, sweep + Ray processes (summed) | {sampler.peak_rss / MIB:.0f} MiB |")
    print(f"| peak machine memory in use above idle | {sampler.peak_used / MIB:.0f} MiB |")
    print(f"| peak processes in the sweep's tree | {sampler.peak_processes} |")
    if code != 0:
        print(f"the sweep failed; see {log}")
        sys.exit(1)


if __name__ == "__main__":
    main()
