"""Perturbation recipes on test prompts: success rate, words changed, edit distance, embedding
drift under an encoder and prompts/s, per recipe and budget; the greedy (white-box) search on a
subset; and batched encoder queries against one prompt at a time.

    python benchmarks/bench_attacks.py --data DIR [--prompts 1000] [--greedy-prompts 100]
        [--encoder hf|tiny] [--budgets 1 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from moclip.attacks.perturb import perturb, set_statistics
from moclip.attacks.recipes import RECIPES
from moclip.data.dataset import load_dataset
from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--greedy-prompts", type=int, default=100)
    parser.add_argument("--encoder", default="hf", choices=("hf", "tiny"))
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    test = load_dataset(args.data, "test")
    prompts = [c.text for item in test.items for c in item.captions][: args.prompts]
    encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind=args.encoder))
    embedder = TextEmbedder(encoder, tokenizer)
    perturb(prompts[:2], "wordnet-synonym", 1, args.seed)  # load WordNet and TextAttack once

    print(f"{len(prompts)} test prompts of {args.data.name}; drift under {args.encoder}")
    print(
        f"\n{'recipe':<16} {'budget':>6} {'mode':>7} {'success':>8} {'words':>6} "
        f"{'edit':>6} {'drift':>7} {'prompts/s':>10}"
    )
    for recipe in RECIPES:
        for budget in args.budgets:
            for mode, count in (("random", len(prompts)), ("greedy", args.greedy_prompts)):
                if count == 0:
                    continue
                started = time.perf_counter()
                records = perturb(
                    prompts[:count],
                    recipe,
                    budget,
                    args.seed,
                    encoder=embedder if mode == "greedy" else None,
                )
                rate = count / (time.perf_counter() - started)
                stats = set_statistics(records, embedder)
                print(
                    f"{recipe:<16} {budget:>6} {mode:>7} {stats['success_rate']:8.3f} "
                    f"{stats['mean_words_changed']:6.2f} {stats['mean_edit_distance']:6.2f} "
                    f"{stats['mean_drift']:7.4f} {rate:10.1f}",
                    flush=True,
                )

    sample = prompts[:256]
    started = time.perf_counter()
    embedder(sample)
    batched = time.perf_counter() - started
    started = time.perf_counter()
    for prompt in sample:
        embedder([prompt])
    single = time.perf_counter() - started
    print(
        f"\nencoder queries, {len(sample)} prompts: batched {len(sample) / batched:.0f}/s, one at "
        f"a time {len(sample) / single:.0f}/s, ratio {single / batched:.1f}x"
    )


if __name__ == "__main__":
    main()
