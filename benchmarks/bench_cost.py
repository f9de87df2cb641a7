"""How the cost of the sweep's work grows, and what batching buys, on one synthetic corpus.

    python benchmarks/bench_cost.py [--workdir moclip_runs/bench/cost] [--motions 8500]
        [--pairs 1000 2000 5000 10000 20000] [--prompts 64 128 256 512 1024]
        [--encoder tiny|hf] [--threads 2] [--parts 1 2 3] [--device cpu|cuda]
        [--recipe char-swap|none] [--sample-batch 8 128 512]

1. Evaluation, batched against one prompt at a time: perturb (char-swap, budget 1), encode,
   generate (the default config's 5 DDIM steps, guidance 2.5) and score a set of prompts, as
   `evaluate` does it (one call each for the whole set) and as a loop over single prompts.
2. Fine-tuning time against the number of pairs: one epoch over nested subsets of 1k to 20k
   pairs (batch 64), set-up (loading, pairing, model, teacher) and training timed apart.
3. Evaluation time against the number of prompts (perturb + encode + generate + score).

Growth is summarised by the exponent b of seconds = a * size^b, fitted on log-log axes.
`--device cuda` runs parts 1 and 3 (text encoder, generator, evaluator) on the GPU; fine-tuning
stays on the CPU. `--recipe none` leaves the prompts clean, for machines without TextAttack.
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


def frozen_models(config, root: str, device: torch.device):
    from moclip.evaluation.evaluator import load_evaluator
    from moclip.generation.diffusion import load_generator
    from sweeps.jobs import load_bytes, sampling_config
    from sweeps.stage0 import train_evaluator_task, train_generator_task

    evaluator, _ = load_bytes(train_evaluator_task(config, root)[0], load_evaluator, device)
    generator, _ = load_bytes(train_generator_task(config, root)[0], load_generator, device)
    generator.config = sampling_config(generator.config, config)  # as an evaluation trial does
    return evaluator, generator


def perturbed(prompts: list[str], recipe: str) -> list[str]:
    """The prompts after `recipe` at budget 1 ("none": unchanged)."""
    from moclip.attacks.perturb import perturb

    if recipe == "none":
        return list(prompts)
    return [record.perturbed for record in perturb(prompts, recipe, 1, seed=0)]


def batched(prompts, lengths, embedder, generator, evaluator, recipe: str) -> float:
    """Seconds for the whole set in one call of each stage (what an evaluation trial does)."""
    from moclip.evaluation.evaluate import evaluate

    started = time.monotonic()
    evaluate(
        generator,
        embedder,
        prompts,
        perturbed(prompts, recipe),
        lengths,
        evaluator,
        repeats=1,
        mm_prompts=0,
    )
    return time.monotonic() - started


def one_at_a_time(prompts, lengths, embedder, generator, evaluator, recipe: str) -> float:
    """Seconds for the same work, each prompt perturbed, generated and encoded on its own."""
    from moclip.evaluation.evaluate import noise_seeds
    from moclip.metrics import diversity, frechet_distance, gaussian_stats, r_precision

    started = time.monotonic()
    seeds = noise_seeds(0, 0, len(prompts))
    texts, motions = [], []
    for prompt, length, seed in zip(prompts, lengths, seeds, strict=True):
        motion = generator.generate(perturbed([prompt], recipe), [length], embedder, [seed])
        motions.append(evaluator.encode_motions(motion)[0])
        texts.append(evaluator.encode_texts([prompt])[0])
    texts, motions = np.stack(texts), np.stack(motions)
    reference = (evaluator.reference_mu.cpu().numpy(), evaluator.reference_sigma.cpu().numpy())
    frechet_distance(*gaussian_stats(motions), *reference)
    r_precision(texts, motions, seed=0)
    diversity(motions, seed=0)
    return time.monotonic() - started


def finetune_epoch(config, root: str, pairs: int) -> tuple[int, float, float]:
    """(pairs, set-up seconds, training seconds) of one epoch over a nested subset."""
    from sweeps.data import load_split
    from sweeps.jobs import prepare_finetune
    from sweeps.records import FinetuneJob

    started = time.monotonic()
    total = load_split(config.data.kind, root, "train").num_pairs
    job = FinetuneJob("ft-bench", "finetune", min(1.0, pairs / total), 0, 1.0, 1.0, n_pairs=0)
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
    parser.add_argument("--parts", type=int, nargs="+", choices=(1, 2, 3), default=[1, 2, 3])
    parser.add_argument("--device", default="cpu", help="for parts 1 and 3: cpu or cuda")
    parser.add_argument("--recipe", choices=("char-swap", "none"), default="char-swap")
    parser.add_argument(
        "--sample-batch",
        type=int,
        nargs="+",
        help="part 1: generator sample_batch values to time (default: the config's)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
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
    from sweeps.data import data_root, load_split

    root = data_root(config)
    test = load_split(config.data.kind, root, "test")
    print(f"machine: {os.cpu_count()} cores, {describe_device(device)}")
    print(
        f"corpus: {root} ({len(test)} test motions); encoder {args.encoder}; "
        f"perturbation {args.recipe}",
        flush=True,
    )
    evaluator, generator = frozen_models(config, root, device)
    encoder, tokenizer, _ = build_text_encoder(config.encoder)
    embedder = TextEmbedder(encoder.eval().to(device), tokenizer)
    models = (embedder, generator, evaluator, args.recipe)

    if 1 in args.parts:
        batching(
            test,
            args.batching_prompts,
            models,
            args.sample_batch or [generator.config.sample_batch],
        )
    if 2 in args.parts:
        growth_with_pairs(config, root, args.pairs)
    if 3 in args.parts:
        growth_with_prompts(test, args.prompts, models)


def batching(test, count: int, models: tuple, sample_batches: list[int]) -> None:
    """Batched at each generator `sample_batch` (motions per DDIM batch) against one prompt at
    a time."""
    from sweeps.data import evaluation_prompts

    print(f"\n1. evaluation of {count} prompts", flush=True)
    prompts, lengths, _ = evaluation_prompts(test, count, seed=0)
    _, generator, _, _ = models
    configured = generator.config
    batched(prompts[:32], lengths[:32], *models)  # warm-up
    rows = []
    for size in sample_batches:
        generator.config = dataclasses.replace(configured, sample_batch=size)
        rows.append((f"batched, sample_batch {size}", batched(prompts, lengths, *models)))
    generator.config = configured
    single = one_at_a_time(prompts, lengths, *models)
    rows.append(("one prompt at a time", single))
    print("| way | seconds | prompts/s | vs one at a time |\n|---|---:|---:|---:|")
    for way, seconds in rows:
        print(f"| {way} | {seconds:.2f} | {len(prompts) / seconds:.1f} | {single / seconds:.1f}x |")
    print("(goal: batched >= 10x faster)", flush=True)


def growth_with_pairs(config, root: str, targets: list[int]) -> None:
    print("\n2. fine-tuning, one epoch, against pairs", flush=True)
    print("| pairs | set-up s | training s | total s | pairs/s |\n|---:|---:|---:|---:|---:|")
    sizes, totals, trains = [], [], []
    for target in targets:
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


def growth_with_prompts(test, targets: list[int], models: tuple) -> None:
    from sweeps.data import evaluation_prompts

    print("\n3. evaluation against prompts", flush=True)
    print("| prompts | seconds | prompts/s |\n|---:|---:|---:|")
    counts, seconds = [], []
    for count in targets:
        prompts, lengths, _ = evaluation_prompts(test, count, seed=0)
        counts.append(len(prompts))
        seconds.append(batched(prompts, lengths, *models))
        print(f"| {counts[-1]} | {seconds[-1]:.2f} | {counts[-1] / seconds[-1]:.1f} |", flush=True)
    print(f"exponent: {exponent(counts, seconds):.2f}")


if __name__ == "__main__":
    main()
