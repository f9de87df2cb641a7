"""Train the independent evaluator on the training split, freeze it, and record its
ground-truth figures on the test split.

    python -m moclip.evaluation.train_evaluator --data DIR --out FILE [--steps 1500] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from moclip.data.dataset import DatasetError, MotionDataset, load_dataset
from moclip.evaluation.evaluator import (
    Evaluator,
    EvaluatorConfig,
    Vocabulary,
    load_evaluator,
    save_evaluator,
)
from moclip.losses import contrastive_loss
from moclip.metrics import diversity, fid, gaussian_stats, matching_score, r_precision
from moclip.optim import optimizer_step
from moclip.pairs import PairSet, collate_pairs
from moclip.progress import progress_bar
from moclip.storage import freeze

TEMPERATURE = 0.07


def one_caption_per_motion(data: MotionDataset, seed: int) -> list[str]:
    """A seeded choice of one caption for each item: the protocol pairs each motion once."""
    rng = np.random.default_rng(seed)
    return [item.captions[int(rng.integers(len(item.captions)))].text for item in data.items]


def train_evaluator(
    train: MotionDataset,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    config: EvaluatorConfig = EvaluatorConfig(),
    log_every: int = 100,
    device: torch.device | str = "cpu",
) -> tuple[Evaluator, list[float]]:
    """Contrastive training (fixed temperature 0.07, shared motions not negatives) on
    `device`; the frozen evaluator comes back on the CPU."""
    torch.manual_seed(seed)
    vocab = Vocabulary.from_captions([c.text for item in train.items for c in item.captions])
    evaluator = Evaluator(vocab, train.skeleton.feature_dim, train.mean, train.std, config)
    evaluator.to(device)
    pairs = PairSet(train)
    optimizer = torch.optim.AdamW(evaluator.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    generator = torch.Generator().manual_seed(seed)
    log_scale = torch.tensor(math.log(1 / TEMPERATURE), device=device)
    losses: list[float] = []
    started = time.monotonic()
    evaluator.train()
    bar = progress_bar(steps, "evaluator", enabled=bool(log_every))
    while len(losses) < steps:
        order = torch.randperm(len(pairs), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = collate_pairs([pairs[int(i)] for i in order[start : start + batch_size]])
            batch = batch.to(device)
            ids, lengths = vocab.encode(batch.texts, config.max_words)
            text = evaluator.encode_text_tokens(ids.to(device), lengths)
            motion = evaluator.encode_motion_batch(batch.features, batch.mask)
            loss = contrastive_loss(text, motion, log_scale, batch.motion_keys, batch.text_keys)
            optimizer_step(loss, evaluator.parameters(), optimizer, 1.0, scheduler)
            losses.append(loss.item())
            bar.update(1)
            if log_every and len(losses) % log_every == 0:
                print(
                    f"[evaluator] step {len(losses)}/{steps} loss {np.mean(losses[-log_every:]):.3f}"
                    f" ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
            if len(losses) >= steps:
                break
    bar.close()
    return freeze(evaluator), losses


def ground_truth_figures(
    evaluator: Evaluator, train: MotionDataset, test: MotionDataset, seed: int = 0
) -> dict[str, float]:
    """Real test motions against their texts; FID of real test motions against a real sample
    of the training split of the same size. Stores the test features' Gaussian as the FID
    reference."""
    motion = evaluator.encode_motions([item.features for item in test.items])
    text = evaluator.encode_texts(one_caption_per_motion(test, seed))
    mu, sigma = gaussian_stats(motion)
    evaluator.reference_mu.copy_(torch.from_numpy(mu))
    evaluator.reference_sigma.copy_(torch.from_numpy(sigma))
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(train), min(len(train), len(test)), replace=False)
    train_motion = evaluator.encode_motions([train.items[i].features for i in sample])
    return {
        **r_precision(text, motion, seed=seed),
        "mm_dist": matching_score(text, motion),
        "diversity": diversity(motion, seed=seed),
        "fid_train_vs_test": fid(train_motion, motion),
        "num_test_motions": float(len(test)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        train = load_dataset(args.data, "train")
        test = load_dataset(args.data, "test")
    except DatasetError as err:
        parser.error(str(err))
    started = time.monotonic()
    evaluator, _ = train_evaluator(train, args.steps, args.batch_size, seed=args.seed)
    figures = ground_truth_figures(evaluator, train, test, args.seed)
    figures["train_seconds"] = round(time.monotonic() - started, 1)
    save_evaluator(args.out, evaluator, train.fingerprint(), figures)
    loaded, _ = load_evaluator(args.out)  # what later stages will read
    assert loaded.fingerprint() == evaluator.fingerprint()
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({"evaluator": str(args.out), **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
