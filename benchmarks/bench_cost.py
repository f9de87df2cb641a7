"""How the cost of the sweep's work grows, and what batching buys, on one synthetic corpus.

    python benchmarks/bench_cost.py [--workdir moclip_runs/bench/cost] [--motions 8500]
        [--pairs 1000 2000 5000 10000 20000] [--prompts 64 128 256 512 1024]
        [--encoder tiny|hf] [--threads 2]

1. Evaluation, batched against one prompt at a time: perturb (char-swap, budget 1), encode,
   generate (the default config's 5 DDIM steps, guidance 2.5) and score a set of prompts, as
   `evaluate` does it (one call each for the whole set) and as a loop over single prompts.
2. Fine-tuning time against the number of pairs: one epoch over nested subsets of 1k to 20k
   pairs (batch 64), set-up (loading, pairing, model, teacher) and training timed apart.
3. Evaluation time against the number of prompts (perturb + encode + generate + score).

Growth is summarised by the exponent b of seconds = a * size^b, fitted on log-log axes.
The evaluator and generator are trained for a few steps only: their cost does not depend on
their weights.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from common import describe_device

from sweeps.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def exponent(sizes: list[float], seconds: list[float]) -> float:
    """b of seconds = a * size^b: the slope of log(seconds) against log(size)."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])


def frozen_models(config, root: str):
    from moclip.evaluation.evaluator import load_evaluator
    from moclip.generation.diffusion import load_generator
    from sweeps.jobs import load_bytes
    from sweeps.stage0 import train_evaluator_task, train_generator_task

    cpu = torch.device("cpu")
    evaluator, _ = load_bytes(train_evaluator_task(config, root)[0], load_evaluator, cpu)
    generator, _ = load_bytes(train_generator_task(config, root)[0], load_generator, cpu)
    generator.config = dataclasses.replace(
        generator.config,
        sample_steps=config.evaluation.ddim_steps,
        guidance=config.evaluation.guidance,
    )
    return evaluator, generator


def batched(prompts, lengths, embedder, generator, evaluator) -> float:
    """Seconds for the whole set in one call of each stage (what an evaluation trial does)."""
    from moclip.attacks.perturb import perturb
    from moclip.evaluation.evaluate import evaluate

    started = time.monotonic()
    records = perturb(prompts, "char-swap", 1, seed=0)
    evaluate(
        generator,
        embedder,
        prompts,
        [r.perturbed for r in records],
        lengths,
        evaluator,
        repeats=1,
        mm_prompts=0,
    )
    return time.monotonic() - started


def one_at_a_time(prompts, lengths, embedder, generator, evaluator) -> float:
    """Seconds for the same work, each prompt perturbed, generated and encoded on its own."""
    from moclip.attacks.perturb import perturb
    from moclip.evaluation.evaluate import noise_seeds
    from moclip.metrics import diversity, frechet_distance, gaussian_stats, r_precision

    started = time.monotonic()
    seeds = noise_seeds(0, 0, len(prompts))
    texts, motions = [], []
    for prompt, length, seed in zip(prompts, lengths, seeds, strict=True):
        (record,) = perturb([prompt], "char-swap", 1, seed=0)
        motion = generator.generate([record.perturbed], [length], embedder, [seed])
        motions.append(evaluator.encode_motions(motion)[0])
        texts.append(evaluator.encode_texts([prompt])[0])
    texts, motions = np.stack(texts), np.stack(motions)
    reference = (evaluator.reference_mu.numpy(), evaluator.reference_sigma.numpy())
    frechet_distance(*gaussian_stats(motions), *reference)
    r_precision(texts, motions, seed=0)
    diversity(motions, seed=0)
    return time.monotonic() - started


def finetune_epoch(config, root: str, pairs: int) -> tuple[int, float, float]:
    """(pairs, set-up seconds, training seconds) of one epoch over a nested subset."""
    from sweeps.jobs import prepare_finetune
    from sweeps.stage0 import load_split

    started = time.monotonic()
    total = load_split(config.data.kind, root, "train").num_pairs
    job = {"fraction": min(1.0, pairs / total), "seed": 0, "w_contrastive": 1.0, "w_distill": 1.0}
    run = prepare_finetune(config, job, root)
    steps = math.ceil(len(run.pairs) / config.finetune.batch_size)
    run.config = dataclasses.replace(run.config, steps=steps, warmup_steps=min(10, steps))
    setup = time.monotonic() - started
    started = time.monotonic()
    run.fit("cpu")
    return len(run.pairs), setup, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "moclip_runs" / "bench" / "cost")
    parser.add_argument("--motions", type=int, default=8500)
    parser.add_argument("--pairs", type=int, nargs="+", default=[1000, 2000, 5000, 10000, 20000])
    parser.add_argument("--prompts", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--batching-prompts", type=int, default=64)
    parser.add_argument("--encoder", choices=("tiny", "hf"), default="tiny")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(
        ROOT / "sweeps" / "configs" / "default.yaml",
        [
            f"workdir={args.workdir.resolve()}",
            f"data.num_motions={args.motions}",
            f"encoder.kind={args.encoder}",
            "finetune.batch_size=64",
            "evaluation.evaluator_steps=5",
            "evaluation.generator_steps=5",
        ],
    )
    from moclip.text_encoders import TextEmbedder, build_text_encoder
    from sweeps.stage0 import data_root, evaluation_prompts, load_split

    root = data_root(config)
    test = load_split(config.data.kind, root, "test")
    print(f"machine: {os.cpu_count()} cores, {describe_device(torch.device('cpu'))}")
    print(f"corpus: {root} ({len(test)} test motions); encoder {args.encoder}", flush=True)
    evaluator, generator = frozen_models(config, root)
    encoder, tokenizer, _ = build_text_encoder(config.encoder)
    embedder = TextEmbedder(encoder.eval(), tokenizer)

    print(f"\n1. evaluation of {args.batching_prompts} prompts", flush=True)
    prompts, lengths = evaluation_prompts(test, args.batching_prompts, seed=0)
    batched(prompts[:32], lengths[:32], embedder, generator, evaluator)  # warm-up
    whole = batched(prompts, lengths, embedder, generator, evaluator)
    single = one_at_a_time(prompts, lengths, embedder, generator, evaluator)
    print("| way | seconds | prompts/s |\n|---|---:|---:|")
    print(f"| batched | {whole:.2f} | {len(prompts) / whole:.1f} |")
    print(f"| one prompt at a time | {single:.2f} | {len(prompts) / single:.1f} |")
    print(f"batched is {single / whole:.1f}x faster (goal >= 10x)", flush=True)

    print("\n2. fine-tuning, one epoch, against pairs", flush=True)
    print("| pairs | set-up s | training s | total s | pairs/s |\n|---:|---:|---:|---:|---:|")
    sizes, totals, trains = [], [], []
    for target in args.pairs:
        pairs, setup, train = finetune_epoch(config, root, target)
        sizes.append(pairs)
        totals.append(setup + train)
        trains.append(train)
        print(
            f"| {pairs} | {setup:.1f} | {train:.1f} | {setup + train:.1f} | "
            f"{pairs / (setup + train):.0f} |",
            flush=True,
        )
    print(f"exponent: total {exponent(sizes, totals):.2f}, training {exponent(sizes, trains):.2f}")

    print("\n3. evaluation against prompts", flush=True)
    print("| prompts | seconds | prompts/s |\n|---:|---:|---:|")
    counts, seconds = [], []
    for count in args.prompts:
        prompts, lengths = evaluation_prompts(test, count, seed=0)
        counts.append(len(prompts))
        seconds.append(batched(prompts, lengths, embedder, generator, evaluator))
        print(f"| {counts[-1]} | {seconds[-1]:.2f} | {counts[-1] / seconds[-1]:.1f} |", flush=True)
    print(f"exponent: {exponent(counts, seconds):.2f}")


if __name__ == "__main__":
    main()
