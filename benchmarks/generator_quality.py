"""Does the generator follow the text? Its scores on the test prompts beside a control that
feeds it the same prompts shuffled (so each motion is scored against a text it was not made
from), and the real motions' ground truth.

    python benchmarks/generator_quality.py --data DIR --generator G.pt --evaluator E.pt
        [--encoder hf] [--repeats 3] [--steps 20] [--limit 0] [--guidance 1 2.5]
    python benchmarks/generator_quality.py --data DIR --num-motions 5000 \\
        --generator G.pt --generator-steps 5000 --frames-per-token 4 \\
        --evaluator E.pt --evaluator-steps 500 --repeats 5 --guidance 1

A missing corpus (with --num-motions), evaluator or generator file is built first and timed,
so the second form is the whole experiment from nothing in one command.

Both columns share each repeat's noise seeds (the control only permutes the prompts), so
besides each column's mean ± 95 % interval over repeats the script reports the paired
difference, generator minus control, per repeat: its interval is what says whether the
generator is better, since the noise common to both columns cancels in it. FID, blind to
which text a motion came from, sees the control only through the prompts' lengths: read it at
guidance 1, where a CPU-trained generator is closest to the data (docs/USAGE.md, "Generator").
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
from moclip.generation.diffusion import DiffusionConfig, load_generator
from moclip.metrics import mean_interval
from moclip.text_encoders import (
    PrecomputedEmbedder,
    TextEmbedder,
    TextEncoderSpec,
    build_text_encoder,
)

METRICS = ("fid", "r_precision_top1", "r_precision_top3", "mm_dist", "diversity")
BETTER = {
    "fid": "lower",
    "r_precision_top1": "higher",
    "r_precision_top3": "higher",
    "mm_dist": "lower",
}


def build_missing(args, embedder, generator_config: DiffusionConfig) -> dict[str, float]:
    """Build the corpus, train the evaluator and the generator where their files are missing;
    seconds per part."""
    from moclip.data.synthetic import build_corpus
    from moclip.evaluation.evaluator import save_evaluator
    from moclip.evaluation.train_evaluator import ground_truth_figures, train_evaluator
    from moclip.generation.diffusion import save_generator
    from moclip.generation.train_generator import train_generator

    seconds = {}
    if not (args.data / "corpus.json").is_file() and args.num_motions:
        started = time.monotonic()
        build_corpus(args.data, args.num_motions, args.seed)
        seconds["corpus"] = time.monotonic() - started
    train = test = None
    if not args.evaluator.is_file():
        started = time.monotonic()
        train, test = load_dataset(args.data, "train"), load_dataset(args.data, "test")
        evaluator, _ = train_evaluator(train, args.evaluator_steps, seed=args.seed)
        figures = ground_truth_figures(evaluator, train, test, args.seed)
        save_evaluator(args.evaluator, evaluator, train.fingerprint(), figures)
        seconds["evaluator"] = time.monotonic() - started
    if not args.generator.is_file():
        started = time.monotonic()
        train = train or load_dataset(args.data, "train")
        generator, losses = train_generator(
            train,
            embedder,
            args.generator_steps,
            args.batch_size,
            seed=args.seed,
            config=generator_config,
        )
        summary = {"final_loss": float(np.mean(losses[-100:])), "steps": args.generator_steps}
        save_generator(args.generator, generator, train.fingerprint(), summary)
        seconds["generator (with caption embedding)"] = time.monotonic() - started
    return seconds


def compare(
    generator, embedder, evaluator, prompts: list[str], lengths: list[int], repeats: int, seed: int
) -> dict[str, dict[str, list[float]]]:
    """Per repeat scores of the generator on the prompts and of the control on the same
    prompts shuffled (each motion scored against a text it was not made from)."""
    shuffled = [prompts[i] for i in np.random.default_rng(seed).permutation(len(prompts))]
    columns: dict[str, dict[str, list[float]]] = {"generator": {}, "control": {}}
    for repeat in range(repeats):
        for column, used in (("generator", prompts), ("control", shuffled)):
            scores = evaluate(
                generator,
                embedder,
                prompts,
                used,
                lengths,
                evaluator,
                repeats=1,
                seed=seed + repeat,
                mm_prompts=0,
            )
            for name in METRICS:
                columns[column].setdefault(name, []).append(scores[name])
    return columns


def print_table(columns: dict[str, dict[str, list[float]]], truth: dict) -> None:
    """Markdown rows: each column's mean ± 95 % interval, the paired difference and whether its
    interval puts the generator ahead of the control, behind it, or neither."""
    print("\n| metric | generator | shuffled control | generator - control | real motions |")
    print("|---|---:|---:|---:|---:|")
    for name in METRICS:
        gt = truth.get(name, truth.get("fid_train_vs_test") if name == "fid" else float("nan"))
        real, control = columns["generator"][name], columns["control"][name]
        cells = [mean_interval(real), mean_interval(control)]
        cells.append(mean_interval(np.subtract(real, control)))
        text = " | ".join(f"{m:.3f} ± {ci:.3f}" for m, ci in cells)
        difference, interval = cells[2]
        verdict = ""
        if name in BETTER:
            gain = -difference if BETTER[name] == "lower" else difference
            verdict = " (not separated)"
            if abs(gain) > interval:
                verdict = " (better)" if gain > 0 else " (worse)"
        print(f"| {name} | {text}{verdict} | {gt:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--generator", type=Path, required=True)
    parser.add_argument("--evaluator", type=Path, required=True)
    parser.add_argument("--encoder", default="hf", choices=("hf", "tiny", "open_clip"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps")
    parser.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        help="classifier-free guidance scales, one table each (default: the generator's)",
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N test motions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--embeddings", type=Path, help="precomputed caption embeddings (.npz)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    build = parser.add_argument_group("building what is missing")
    build.add_argument("--num-motions", type=int, default=0, help="synthetic corpus size")
    build.add_argument("--evaluator-steps", type=int, default=600)
    build.add_argument("--generator-steps", type=int, default=2000)
    build.add_argument("--batch-size", type=int, default=64)
    build.add_argument("--width", type=int, default=128)
    build.add_argument("--layers", type=int, default=4)
    build.add_argument("--frames-per-token", type=int, default=1)
    build.add_argument(
        "--ema-decay", type=float, default=DiffusionConfig.ema_decay, help="0: the last weights"
    )
    args = parser.parse_args()
    try:
        # checked before anything is built, so a bad value costs no training
        generator_config = DiffusionConfig(
            width=args.width,
            layers=args.layers,
            frames_per_token=args.frames_per_token,
            ema_decay=args.ema_decay,
        )
    except ValueError as err:
        parser.error(str(err))

    started = time.monotonic()
    if args.embeddings:
        embedder = PrecomputedEmbedder.load(args.embeddings)
    else:
        encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind=args.encoder))
        embedder = TextEmbedder(encoder, tokenizer)
    seconds = build_missing(args, embedder, generator_config)
    test = load_dataset(args.data, "test")
    generator, _ = load_generator(args.generator, args.device)
    evaluator, evaluator_state = load_evaluator(args.evaluator, args.device)
    items = test.items[: args.limit or None]
    prompts = one_caption_per_motion(test, args.seed)[: len(items)]
    lengths = [min(item.num_frames, generator.config.max_frames) for item in items]
    guidances = args.guidance or [generator.config.guidance]

    evaluation_started = time.monotonic()
    truth = evaluator_state["figures"]
    for guidance in guidances:
        generator.config = replace(generator.config, sample_steps=args.steps, guidance=guidance)
        columns = compare(generator, embedder, evaluator, prompts, lengths, args.repeats, args.seed)
        print(
            f"\n{len(prompts)} test prompts, {args.repeats} repeats, {args.steps} DDIM steps, "
            f"guidance {guidance:g}"
        )
        print_table(columns, truth)
    seconds["evaluation"] = time.monotonic() - evaluation_started
    motions = 2 * args.repeats * len(prompts) * len(guidances)
    print(
        f"\ngeneration + scoring: {seconds['evaluation'] / motions * 1000:.0f} s per 1000 motions"
    )
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"total: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
