"""Stage 0's two trainings through the sweep's own Ray tasks, on the CPU and on the GPU Ray
gives them: where each one computes, and what the GPU buys.

    python benchmarks/bench_stage0.py [--config sweeps/configs/humanml3d.yaml] [--steps 200]
        [--cpu-steps 5] [--motions 300] [key.path=value ...]

`sweeps.stage0.train_evaluator_task` and `train_generator_task` run as Ray tasks with the
options stage 0 gives them (`RayConfig.stage0_task_options`), once with `ray.use_gpu=false`
and, where the machine has a GPU, once with `ray.use_gpu=true`. Models have the config's sizes
(the HumanML3D config's: ViT-B-32 text tower without its weights, generator width 512 x 8
layers), trained for --steps steps each on the GPU and --cpu-steps on the CPU (a step of that
generator takes seconds there), on a synthetic corpus of --motions motions. For each run it
prints the device the task computed on (`assigned_device` inside the task), the CUDA memory
the task's process peaked at, the task's own training seconds and seconds per step, and the
GPU's speed-up per step. The task's seconds include its fixed work (the generator embeds every
training caption first, the evaluator scores the test split after), so per-step figures from
few steps are upper bounds. Without a GPU only the CPU rows run: a check of the script.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweeps.config import load_config


def placed_run(task, config, root: str, fingerprints: dict) -> dict:
    """Run one stage-0 task in this Ray worker; where it computed and what it cost."""
    from sweeps.data import assigned_device

    device = assigned_device()
    _, figures = task(config, root, fingerprints)
    return {
        "device": str(device),
        "cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else 0,
        "train_seconds": figures["train_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "sweeps" / "configs" / "humanml3d.yaml"))
    parser.add_argument("--steps", type=int, default=200, help="steps of each model on the GPU")
    parser.add_argument("--cpu-steps", type=int, default=5, help="steps of each on the CPU")
    parser.add_argument("--motions", type=int, default=300, help="synthetic corpus size")
    parser.add_argument("--workdir", type=Path, default=ROOT / "moclip_runs" / "bench" / "stage0")
    parser.add_argument("overrides", nargs="*", help="key.path=value, as the sweep takes them")
    args = parser.parse_args()
    if min(args.steps, args.cpu_steps) < 1:
        parser.error(f"--steps {args.steps}, --cpu-steps {args.cpu_steps}: need at least 1")

    import ray

    from sweeps.data import data_root, load_splits
    from sweeps.stage0 import train_evaluator_task, train_generator_task

    gpu = torch.cuda.is_available()
    steps = {"false": args.cpu_steps, "true": args.steps}
    settings = ["false", "true"] if gpu else ["false"]
    configs = {
        use_gpu: load_config(
            args.config,
            [
                "data.kind=synthetic",
                "data.root=null",
                f"data.num_motions={args.motions}",
                "encoder.pretrained=null",  # the architecture's cost, no weights to fetch
                f"evaluation.evaluator_steps={steps[use_gpu]}",
                f"evaluation.generator_steps={steps[use_gpu]}",
                f"workdir={args.workdir.resolve()}",
                f"ray.use_gpu={use_gpu}",
                *args.overrides,
            ],
        )
        for use_gpu in settings
    }
    first = configs["false"]
    root = data_root(first)
    fingerprints = {name: part.fingerprint() for name, part in load_splits(first, root).items()}
    cpus = int(first.ray.cpus_per_eval_trial)
    ray.init(num_cpus=cpus, num_gpus=1 if gpu else 0, include_dashboard=False)
    device = torch.cuda.get_device_name(0) if gpu else "CPU only (no GPU: a check of the script)"
    tower = first.encoder.model if first.encoder.kind == "open_clip" else first.encoder.kind
    print(
        f"device: {device}; the evaluator and the generator (width "
        f"{first.generator.width} x {first.generator.layers} layers, {tower} text tower); "
        f"{args.motions} synthetic motions; {args.cpu_steps} steps each on the CPU"
        + (f", {args.steps} on the GPU" if gpu else ""),
        flush=True,
    )
    rows = []
    for use_gpu, config in configs.items():
        options = config.ray.stage0_task_options()
        for name, task in (
            ("evaluator", train_evaluator_task),
            ("generator", train_generator_task),
        ):
            print(f"training the {name} with {options} ...", flush=True)
            remote = ray.remote(**options)(placed_run)
            result = ray.get(remote.remote(task, config, root, fingerprints))
            result["step_seconds"] = result["train_seconds"] / steps[use_gpu]
            rows.append((use_gpu, name, options, result))
    ray.shutdown()

    cpu_step = {name: result["step_seconds"] for _, name, _, result in rows[:2]}
    print(
        "\nmodel      task options                      device  CUDA peak  steps  train s"
        "  s/step  vs CPU"
    )
    for use_gpu, name, options, result in rows:
        print(
            f"{name:<10} {options!s:<33} {result['device']:>6}  "
            f"{result['cuda_peak_mib']:5.0f} MiB  {steps[use_gpu]:5d}  "
            f"{result['train_seconds']:7.1f}  {result['step_seconds']:6.3f}  "
            f"{cpu_step[name] / result['step_seconds']:5.1f}x"
        )
    print(
        "(train s: the task's own figure, its fixed work included; device: assigned_device() "
        "inside the task; CUDA peak: torch.cuda.max_memory_allocated in the task's process)"
    )
    expected = {"false": "cpu", "true": "cuda"}
    wrong = [
        (name, options, result["device"])
        for use_gpu, name, options, result in rows
        if result["device"] != expected[use_gpu]
    ]
    if wrong:
        sys.exit(f"stage-0 tasks on the wrong device: {wrong}")


if __name__ == "__main__":
    main()
