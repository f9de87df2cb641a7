"""Evaluation trials packed on one GPU with fractional resources, against one at a time.

    python benchmarks/bench_pack.py [--trials 8] [--fractions 1 0.5 0.25] [--prompts 512]

The sweep's own evaluation trial (`sweeps.trials.evaluation_trial`) through its own Tuner
(`run_trials`), on a payload of freshly initialised models of the HumanML3D config's sizes
(the cost of generating and scoring does not depend on the weights' values): ViT-B-32's text
tower (architecture only), the config's generator (width 512, 8 layers, 50 DDIM steps,
guidance 2.5) and the default evaluator. For each fraction f the same N clean-prompt trials run
with {CPU: --cpus, GPU: f} each, so 1/f share the GPU at a time; a thread reads the GPU's
utilisation (NVML) every 0.1 s. Without a GPU it runs the same trials with CPU only, to check
the script.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import GpuBusy

from moclip.evaluation.evaluator import Evaluator, Vocabulary, save_evaluator
from moclip.generation.diffusion import DiffusionGenerator, save_generator
from moclip.metrics import gaussian_stats
from moclip.skeletons import HUMANML3D
from moclip.text_encoders import build_text_encoder
from sweeps.config import load_config

WORDS = [
    "a",
    "person",
    "walks",
    "runs",
    "jumps",
    "forward",
    "backward",
    "slowly",
    "then",
    "turns",
    "left",
    "right",
    "waves",
]


def payload(config, prompts: int, folder: Path) -> dict:
    """What Stage0.payload carries, with untrained models of the config's sizes."""
    _, _, text_width = build_text_encoder(config.encoder, load_weights=False)
    dim = HUMANML3D.feature_dim
    zeros, ones = np.zeros(dim), np.ones(dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        generator = DiffusionGenerator(dim, text_width, zeros, ones, config.generator)
        evaluator = Evaluator(Vocabulary(("<pad>", "<unk>", *WORDS)), dim, zeros, ones).eval()
    rng = np.random.default_rng(0)
    # FID's reference: stand-in "real" motions, as train_evaluator stores the test split's.
    mu, sigma = gaussian_stats(
        evaluator.encode_motions([rng.normal(size=(120, dim)) for _ in range(512)])
    )
    evaluator.reference_mu.copy_(torch.from_numpy(mu))
    evaluator.reference_sigma.copy_(torch.from_numpy(sigma))
    paths = (
        save_generator(folder / "generator.pt", generator, "bench"),
        save_evaluator(folder / "evaluator.pt", evaluator, "bench", {}),
    )
    return {
        "study": config.to_dict(),
        "generator": paths[0].read_bytes(),
        "evaluator": paths[1].read_bytes(),
        "prompts": [" ".join(rng.choice(WORDS, size=rng.integers(6, 14))) for _ in range(prompts)],
        "lengths": rng.integers(40, 197, size=prompts).tolist(),
        "transfer": {},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs per trial")
    parser.add_argument("--config", default=str(ROOT / "sweeps" / "configs" / "humanml3d.yaml"))
    parser.add_argument("overrides", nargs="*", help="key.path=value, as the sweep takes them")
    args = parser.parse_args()
    if args.prompts < 32:
        parser.error(f"--prompts {args.prompts}: R-precision needs batches of 32 prompts")
    for fraction in args.fractions:
        if not 0 < fraction <= 1:
            parser.error(f"--fractions: {fraction} is not in (0, 1]")

    import ray

    from sweeps.execution import Tally, make_progress_callback, run_trials
    from sweeps.trials import evaluation_trial

    gpu = torch.cuda.is_available()
    config = load_config(
        args.config,
        [
            "encoder.pretrained=null",
            f"evaluation.repeats={args.repeats}",
            f"ray.cpus_per_eval_trial={args.cpus}",
            *args.overrides,
        ],
    )
    from sweeps.records import EvaluationJob

    jobs = [
        EvaluationJob(f"pack-{i}", f"trial {i}", "base", 0.0, None, None, None, 0, "none", 0)
        for i in range(args.trials)
    ]
    slots = max(int(round(1 / f)) for f in args.fractions)
    ray.init(num_cpus=args.cpus * slots, num_gpus=1 if gpu else 0, include_dashboard=False)
    device = torch.cuda.get_device_name(0) if gpu else "CPU only (no GPU: a check of the script)"
    print(
        f"device: {device}; {args.trials} trials of {args.prompts} prompts x {args.repeats} "
        f"repeat(s), {config.evaluation.ddim_steps} DDIM steps, guidance "
        f"{config.evaluation.guidance}, generator width {config.generator.width} x "
        f"{config.generator.layers} layers, {args.cpus} CPUs per trial",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = payload(config, args.prompts, Path(folder))
        for fraction in args.fractions:
            resources = {"CPU": args.cpus, **({"GPU": fraction} if gpu else {})}
            seconds: list[float] = []

            def record(job, result, checkpoint, seconds=seconds) -> str:
                seconds.append(result["eval_seconds"])
                return f"FID {result['fid']:.2f} in {result['eval_seconds']:.1f} s"

            stage = f"GPU {fraction:g}"
            sampler = GpuBusy(0, every_s=0.1) if gpu else None
            if sampler:
                sampler.start()
            started = time.monotonic()
            run_trials(
                f"pack-{fraction:g}",
                ray.tune.with_parameters(evaluation_trial, payload=data),
                {"job": ray.tune.grid_search([job.to_dict() for job in jobs])},
                resources,
                str(Path(folder) / "ray"),
                make_progress_callback({"evaluation": Tally(stage, len(jobs), record)}),
                lambda trial: trial.config["job"]["key"],
                max_concurrent=int(round(1 / fraction)),
            )
            wall = time.monotonic() - started
            if sampler:
                sampler.stopped.set()
            if len(seconds) < len(jobs):
                sys.exit(f"{stage}: only {len(seconds)} of {len(jobs)} trials finished")
            busy = sampler.mean() if sampler else math.nan
            rows.append((fraction, wall, statistics.mean(seconds), busy))
    ray.shutdown()
    base = rows[0][1]
    print("\nGPU per trial  at once  wall s  trials/min  vs first  mean trial s  GPU busy")
    for fraction, wall, trial_s, busy in rows:
        print(
            f"{fraction:13g}  {int(round(1 / fraction)):7d}  {wall:6.1f}  "
            f"{60 * len(jobs) / wall:10.1f}  {base / wall:7.2f}x  {trial_s:12.1f}  "
            + ("      -" if math.isnan(busy) else f"{busy:7.0f}%")
        )
    print(
        "(wall: the whole Tuner, actor starts included; mean trial s: inside the trial, the "
        "models' loading + generation + scoring)"
    )


if __name__ == "__main__":
    main()
