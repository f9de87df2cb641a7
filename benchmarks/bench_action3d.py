"""Where the time of an MSR Action3D study goes (in domain, or by transfer with
`--config sweeps/configs/transfer_cpu.yaml`), stage by stage: the sweep's own clock (setup,
Ray start, stage 0, stages 1+2, report), stage 0's two trainings (recogniser, generator), and
the fine-tunes' and evaluations' seconds by kind (sum, mean, max over trials).

    python benchmarks/bench_action3d.py --data ../shared/data/msr_action3d
        [--config sweeps/configs/action3d_cpu.yaml] [--workdir DIR] [--reuse] [overrides ...]

Runs the sweep on a fresh workdir (a temporary folder unless --workdir) and prints the figures;
with --reuse it reads a finished sweep's workdir instead of running it again.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeps.config import load_config
from sweeps.keys import sweep_key


def run_sweep(config_path: Path, overrides: list[str]) -> float:
    """Wall seconds of one sweep, run as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "sweeps" / "scale_vs_robustness.py")]
    command += ["--config", str(config_path), *overrides]
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the sweep failed (exit {done.returncode}):\n{done.stdout[-3000:]}{done.stderr}")
    return time.monotonic() - started


def spread(values: list[float]) -> str:
    array = np.asarray(values)
    return f"{array.sum():8.0f} {array.mean():7.1f} {array.max():7.1f} {len(array):5d}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the MSR Action3D folder")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "sweeps" / "configs" / "action3d_cpu.yaml"
    )
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--reuse", action="store_true", help="read a finished sweep's workdir")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-action3d-"))).resolve()
    # the Action3D folder is data.root in domain, data.eval_root in a transfer study
    key = "data.eval_root" if load_config(args.config).data.eval_kind else "data.root"
    overrides = [f"{key}={args.data}", f"workdir={workdir}", *args.overrides]
    config = load_config(args.config, overrides)
    wall = None if args.reuse else run_sweep(args.config, overrides)
    state = json.loads((workdir / "sweeps" / sweep_key(config) / "state.json").read_text())
    if state.get("status") != "finished":
        sys.exit(f"{workdir}: the sweep is not finished (status {state.get('status')!r})")
    print(f"{args.config.name} on {args.data}: {os.cpu_count()} CPUs, workdir {workdir}")
    if wall is not None:
        print(f"wall time of the command: {wall:.0f} s")
    print("\nthe sweep's clock (s):")
    for stage, seconds in state["seconds"].items():
        print(f"  {stage:<12} {seconds:8.1f}")
    print("\nstage 0's trainings (Ray tasks, beside each other and the first fine-tunes):")
    for path in sorted((workdir / "cache").glob("*.json")):
        figures = json.loads(path.read_text())
        print(
            f"  {path.stem.split('-')[0]:<12} {figures.get('train_seconds', float('nan')):8.1f} s"
        )
    records = [json.loads(p.read_text()) for p in (workdir / "results").glob("*.json")]
    kinds = {"finetune": "train_seconds", "evaluation": "eval_seconds"}
    print(f"\n{'trials':<30} {'sum s':>8} {'mean s':>7} {'max s':>7} {'count':>5}")
    for kind, metric in kinds.items():
        values = [r["metrics"][metric] for r in records if r.get("kind") == kind]
        if values:
            print(f"  {kind:<28} {spread(values)}")
    evaluations = [r for r in records if r.get("kind") == "evaluation"]
    for recipe in sorted({r["job"]["recipe"] for r in evaluations}):  # the store's JSON
        values = [r["metrics"]["eval_seconds"] for r in evaluations if r["job"]["recipe"] == recipe]
        print(f"    evaluation {recipe:<15} {spread(values)}")


if __name__ == "__main__":
    main()
