"""Does the generator follow the text? Its scores on the test prompts beside a control that
feeds it the same prompts shuffled (so each motion is scored against a text it was not made
from), and the real motions' ground truth.

    python benchmarks/generator_quality.py --data DIR --generator G.pt --evaluator E.pt
        [--encoder hf] [--repeats 3] [--steps 20] [--limit 0]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from moclip.data.dataset import load_dataset
from moclip.evaluation.evaluate import evaluate
from moclip.evaluation.evaluator import load_evaluator
from moclip.evaluation.train_evaluator import one_caption_per_motion
from moclip.generation.diffusion import load_generator
from moclip.text_encoders import (
    PrecomputedEmbedder,
    TextEmbedder,
    TextEncoderSpec,
    build_text_encoder,
)

METRICS = ("fid", "r_precision_top1", "r_precision_top3", "mm_dist", "diversity")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--generator", type=Path, required=True)
    parser.add_argument("--evaluator", type=Path, required=True)
    parser.add_argument("--encoder", default="hf", choices=("hf", "tiny", "open_clip"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test motions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embeddings", type=Path, help="precomputed caption embeddings (.npz)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    test = load_dataset(args.data, "test")
    generator, _ = load_generator(args.generator, args.device)
    evaluator, evaluator_state = load_evaluator(args.evaluator, args.device)
    if args.embeddings:
        embedder = PrecomputedEmbedder.load(args.embeddings)
    else:
        encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind=args.encoder))
        embedder = TextEmbedder(encoder, tokenizer)
    items = test.items[: args.limit or None]
    prompts = one_caption_per_motion(test, args.seed)[: len(items)]
    lengths = [min(item.num_frames, generator.config.max_frames) for item in items]
    shuffled = [prompts[i] for i in np.random.default_rng(args.seed).permutation(len(prompts))]
    generator.config = replace(generator.config, sample_steps=args.steps)

    started = time.perf_counter()
    real = evaluate(
        generator,
        embedder,
        prompts,
        prompts,
        lengths,
        evaluator,
        args.repeats,
        args.seed,
        mm_prompts=0,
    )
    seconds = time.perf_counter() - started
    control = evaluate(
        generator,
        embedder,
        prompts,
        shuffled,
        lengths,
        evaluator,
        args.repeats,
        args.seed,
        mm_prompts=0,
    )
    truth = evaluator_state["figures"]
    print(f"{len(prompts)} test prompts, {args.repeats} repeats, {args.steps} DDIM steps")
    print(f"\n{'metric':<18} {'generator':>18} {'shuffled control':>18} {'real motions':>14}")
    for name in METRICS:
        gt = truth.get(name, truth.get("fid_train_vs_test") if name == "fid" else float("nan"))
        print(
            f"{name:<18} {real[name]:10.3f} ± {real[name + '_ci95']:5.3f} "
            f"{control[name]:10.3f} ± {control[name + '_ci95']:5.3f} {gt:14.3f}"
        )
    per_thousand = seconds / (args.repeats * len(prompts)) * 1000
    print(f"\ngeneration + scoring: {per_thousand:.0f} s per 1000 motions on this machine")


if __name__ == "__main__":
    main()
