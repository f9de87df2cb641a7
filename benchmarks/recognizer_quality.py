"""The MSR Action3D action recogniser: its settings chosen on held-out training subjects, then
its cross-subject figures on the test subjects, measured once for the chosen settings.

Validation never touches the test subjects: two folds over the training subjects (train on
s01 s03 s05, validate on s07 s09; train on s05 s07 s09, validate on s01 s03), each candidate's
score the mean top-1 accuracy over both. The candidate with the best score is trained on all
training subjects and scored on the test subjects (accuracy, top-3, the real-versus-real FID
floor), with the accuracy's 95 % Wilson interval.

    python benchmarks/recognizer_quality.py --data ../shared/data/msr_action3d [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from common import wilson

from moclip.data.action3d import ACTIONS, load_action3d
from moclip.evaluation.recognizer import (
    RecognizerConfig,
    accuracy_top_k,
    labels_of,
    recognizer_figures,
    train_recognizer,
)

FOLDS = (((1, 3, 5), (7, 9)), ((5, 7, 9), (1, 3)))
CANDIDATES = {
    "default": {},
    "held in place": {"frame": "in_place"},
    "positions only": {"velocities": False},
    "two pyramid levels": {"levels": 2},
    "features 32": {"feature_width": 32},
    "no dropout": {"dropout": 0.0},
    "weight decay 0.5": {"weight_decay": 0.5},
}


def subjects(data, chosen: tuple[int, ...]):
    return data.subset([m for m in data.motion_ids if int(m.split("_")[1][1:]) in chosen])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the MSR Action3D folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    torch.set_num_threads(2)
    train = load_action3d(args.data, "train")
    test = load_action3d(args.data, "test")
    print(f"{len(train)} training and {len(test)} test sequences; chance {1 / len(ACTIONS):.3f}")
    print(f"\n{'candidate':<20} {'fold 1':>7} {'fold 2':>7} {'mean':>7} {'seconds':>8}")
    scores = {}
    for name, change in CANDIDATES.items():
        config = dataclasses.replace(RecognizerConfig(), **change)
        started = time.monotonic()
        folds = []
        for fit_on, held_out in FOLDS:
            part, check = subjects(train, fit_on), subjects(train, held_out)
            values = []
            for seed in args.seeds:
                model, _ = train_recognizer(part, len(ACTIONS), config, seed)
                _, logits = model.encode([item.features for item in check.items])
                values.append(accuracy_top_k(logits, labels_of(check), 1))
            folds.append(float(np.mean(values)))
        scores[name] = float(np.mean(folds))
        print(
            f"{name:<20} {folds[0]:>7.3f} {folds[1]:>7.3f} {scores[name]:>7.3f} "
            f"{time.monotonic() - started:>8.1f}"
        )
    best = max(scores, key=scores.get)
    config = dataclasses.replace(RecognizerConfig(), **CANDIDATES[best])
    print(f"\nchosen on validation: {best!r} ({config})")
    for seed in args.seeds:
        model, _ = train_recognizer(train, len(ACTIONS), config, seed)
        figures = recognizer_figures(model, train, test, seed)
        hits = round(figures["accuracy_top1"] * len(test))
        low, high = wilson(hits, len(test))
        print(
            f"seed {seed}: test accuracy top-1 {figures['accuracy_top1']:.3f} "
            f"[{low:.3f}, {high:.3f}] (n={len(test)}), top-3 {figures['accuracy_top3']:.3f}, "
            f"train {figures['train_accuracy_top1']:.3f}, real-vs-real FID "
            f"{figures['fid_train_vs_test']:.2f}, diversity {figures['diversity']:.2f}"
        )


if __name__ == "__main__":
    main()
