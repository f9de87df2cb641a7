"""Evidence that the fine-tune is MoCLIP's: the recipe (a motion-encoder-only phase, then joint
training with the tether at the paper's lambda, the checkpoint chosen on validation) on the
synthetic corpus and on the real MSR Action3D recordings, against the original text encoder.

For each data set it trains, from the same motion-encoder initialisation and for the same
epochs:
- `original`: the text tower frozen throughout (motion_only_share 1): the original encoder
  with a motion encoder trained for it, the paper's baseline;
- `lambda=L` for each --lambdas value: the recipe, fine-tuning the text tower;
- the last lambda again with the authors' body-part motion encoder (`kind: parts`) at the
  graph encoder's temporal size;
and prints, on the test split, text-to-motion R@1/2/3 with 95 % Wilson intervals over the test
captions (MSR Action3D: a caption names an action, so the score is the motion's action among
the 20 actions' captions, motion-to-action R@k over the test motions), and the text tower's
drift from the teacher (mean cosine on the test captions, with its t interval).

    python benchmarks/moclip_recipe.py --synthetic 600 --action3d ../shared/data/msr_action3d
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import describe_device, wilson
from scipy import stats

from moclip.data.action3d import load_action3d
from moclip.data.dataset import MotionDataset, load_dataset
from moclip.data.synthetic import build_corpus
from moclip.finetune import build_finetune
from moclip.motion_encoder import MotionEncoderConfig
from moclip.retrieval import embed_split, recall_metrics
from moclip.text_encoders import TextEncoderSpec
from moclip.training import FinetuneConfig

# the default sweep's CPU settings (sweeps/configs/default.yaml), at --epochs
RECIPE = FinetuneConfig(
    batch_size=32, lr_motion=3e-4, lr_text=2e-5, lr_motion_joint=1e-4, warmup_steps=2
)


def scores(run, test: MotionDataset, by_action: bool) -> dict[str, tuple[float, int, float]]:
    """R@1, R@2, R@3 and drift on `test`, each as (value, n, low, high) with its 95 % interval."""
    model = run.model
    texts, text_item, text_emb, motion_emb = embed_split(
        model, run.tokenizer, test, run.train.mean, run.train.std
    )
    with torch.no_grad():
        drift = F.cosine_similarity(text_emb, F.normalize(run.teacher(texts), dim=-1), dim=-1)
    out = {}
    if by_action:  # each test motion against one caption per action (the first)
        labels = [item.label for item in test.items]
        names = {}
        for i, item in enumerate(test.items):
            names.setdefault(item.label, texts[int((text_item == i).nonzero()[0])])
        actions = sorted(names)
        action_emb = text_emb[[texts.index(names[a]) for a in actions]]
        sims = motion_emb @ action_emb.T
        truth = torch.tensor([actions.index(label) for label in labels])
        rank = (sims > sims[torch.arange(len(truth)), truth][:, None]).sum(1) + 1
        for k in (1, 2, 3):
            hits = int((rank <= k).sum())
            out[f"R@{k}"] = (hits / len(rank), len(rank), *wilson(hits, len(rank)))
    else:
        metrics = recall_metrics(text_emb, motion_emb, text_item, ks=(1, 2, 3))
        for k in (1, 2, 3):
            hits = round(metrics[f"t2m_R@{k}"] * len(texts))
            out[f"R@{k}"] = (hits / len(texts), len(texts), *wilson(hits, len(texts)))
    values = drift.numpy()
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    out["drift"] = (float(values.mean()), len(values), values.mean() - half, values.mean() + half)
    return out


def train(train, val, config, seed: int, spec, motion) -> tuple[object, dict, float]:
    run = build_finetune(spec, motion, dataclasses.replace(config, seed=seed), train, 1.0, val)
    started = time.monotonic()
    run.fit("cpu")  # scoring the validation split at its steps
    chosen = run.select()
    return run, chosen, time.monotonic() - started


def study(name, recipe, train_split, val, test, lambdas, seed, spec, motion, by_action) -> None:
    runs = [("original (text frozen)", dataclasses.replace(recipe, motion_only_share=1.0), motion)]
    runs += [
        (f"lambda={lam:g}", dataclasses.replace(recipe, w_distill=lam), motion) for lam in lambdas
    ]
    # the authors' body-part encoder at the graph encoder's temporal size, at the last lambda
    parts = dataclasses.replace(motion, kind="parts", part_width=64, part_hidden=64)
    runs.append((f"lambda={lambdas[-1]:g}, parts encoder", runs[-1][1], parts))
    score = "motion-to-action R@k over the 20 actions" if by_action else "text-to-motion R@k"
    print(f"\n## {name}: {len(train_split)} training motions, {len(test)} test motions; {score}")
    print("| encoder | steps (motion only) | chosen step | R@1 | R@2 | R@3 | drift | s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, config, encoder in runs:
        run, chosen, seconds = train(train_split, val, config, seed, spec, encoder)
        figures = scores(run, test, by_action)
        cells = [
            f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
            for v, _, lo, hi in (figures[k] for k in ("R@1", "R@2", "R@3", "drift"))
        ]
        print(
            f"| {label} | {run.config.steps} ({run.config.motion_only_steps}) | "
            f"{int(chosen['selected_step'])} | {' | '.join(cells)} | {seconds:.0f} |",
            flush=True,
        )
    n = figures["R@1"][1]
    print(f"n = {n} test {'motions' if by_action else 'captions'} for R@k, "
          f"{figures['drift'][1]} captions for drift; 95 % Wilson / t intervals; seed {seed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=int, default=600, help="synthetic motions (0: skip)")
    parser.add_argument("--action3d", type=Path, help="the MSR Action3D folder")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.2, 0.4, 0.6])
    parser.add_argument("--epochs", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    recipe = dataclasses.replace(RECIPE, epochs=args.epochs)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = TextEncoderSpec(kind="hf")
    print(f"machine: {describe_device(torch.device('cpu'))}; MiniLM; {recipe}")
    if args.synthetic:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder) / "synthetic"
            build_corpus(root, args.synthetic, seed=0, workers=1, progress=False)
            splits = [load_dataset(root, split) for split in ("train", "val", "test")]
            study(f"synthetic corpus ({args.synthetic} motions)", recipe, *splits, args.lambdas,
                  args.seed, spec, MotionEncoderConfig(frame_stride=4), by_action=False)
    if args.action3d:
        train_split = load_action3d(args.action3d, "train")
        test = load_action3d(args.action3d, "test")
        # no validation split in the cross-subject protocol: the last step is kept
        study("MSR Action3D (cross-subject)", recipe, train_split, None, test, args.lambdas,
              args.seed, spec, MotionEncoderConfig(frame_stride=2), by_action=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
