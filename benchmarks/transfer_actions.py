"""What a transfer study's generator makes of each MSR Action3D action: the motions generated
for every test prompt with the original text encoder, retargeted to the Kinect skeleton as the
sweep scores them, recognised by the sweep's recogniser, per action: how many are recognised as
the prompted action (with a 95 % Wilson interval), what they are taken for instead, and how far
their root travels against the real test recordings'.

    python benchmarks/transfer_actions.py --data ../shared/data/msr_action3d \
        --workdir moclip_runs/transfer [--config sweeps/configs/transfer_cpu.yaml] [--seed 0]

It reads the recogniser and generator that a finished (or stage-0-complete) sweep cached in
`<workdir>/cache`; one generation seed, one repeat.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import torch
from common import wilson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moclip.data.action3d import ACTIONS
from moclip.data.features import features_to_positions
from moclip.data.retarget import Retargeting, action3d_body, retarget_features
from moclip.evaluation.evaluate import noise_seeds
from moclip.evaluation.recognizer import load_recognizer
from moclip.generation.diffusion import load_generator
from sweeps.config import load_config
from sweeps.data import evaluation_prompts, load_split
from sweeps.jobs import sampling_config
from sweeps.trials import load_encoder


def cached(workdir: Path, name: str) -> Path:
    found = sorted((workdir / "cache").glob(f"{name}-*.pt"))
    if len(found) != 1:
        sys.exit(f"{workdir / 'cache'}: expected one {name}-*.pt, found {len(found)}")
    return found[0]


def travel(features: np.ndarray) -> float:
    """Metres between the root's first and last positions on the floor."""
    root = features_to_positions(features, 20)[:, 0]
    return float(np.linalg.norm(root[-1, [0, 2]] - root[0, [0, 2]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the MSR Action3D folder")
    parser.add_argument("--workdir", type=Path, required=True, help="the transfer sweep's")
    parser.add_argument("--config", type=Path, default=ROOT / "sweeps/configs/transfer_cpu.yaml")
    parser.add_argument("--seed", type=int, default=0, help="the generation noise's")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = load_config(args.config, [f"data.eval_root={args.data}"])
    train = load_split("action3d", str(args.data), "train")
    test = load_split("action3d", str(args.data), "test")
    recognizer, _ = load_recognizer(cached(args.workdir, "recognizer"))
    generator_path = cached(args.workdir, "generator")
    generator, _ = load_generator(generator_path)
    generator.config = sampling_config(generator.config, config)
    encoder = load_encoder(config, None, "cpu")
    count = config.attacks.prompts or len(test)  # the sweep's prompts
    prompts, lengths, labels = evaluation_prompts(test, count, config.attacks.seed)
    seeds = noise_seeds(args.seed, 0, len(prompts))  # as the sweep's first repeat draws them
    retargeting = Retargeting(action3d_body(train))
    motions = [
        retarget_features(m, retargeting)
        for m in generator.generate(prompts, lengths, encoder, seeds)
    ]
    predicted = recognizer.encode(motions)[1].argmax(1)
    walked = np.array([travel(m) for m in motions])
    real = np.array([travel(item.features) for item in test.items])

    hits = int((predicted == np.array(labels)).sum())
    low, high = wilson(hits, len(labels))
    print(
        f"{config.encoder.kind} original encoder, generator {generator_path.name}"
        f", {len(prompts)} test prompts, seed {args.seed}\nrecognised as the prompted action: "
        f"{hits}/{len(labels)} = {hits / len(labels):.3f} [{low:.3f}, {high:.3f}] (chance "
        f"{1 / len(ACTIONS):.3f})\nroot travel: generated median {np.median(walked):.2f} m, max "
        f"{walked.max():.2f} m, {np.mean(walked > real.max()):.0%} beyond every test recording; "
        f"test recordings median {np.median(real):.2f} m, max {real.max():.2f} m\n"
    )
    print(f"{'action':<20} {'hits':>6} {'95 % interval':>14} {'travel':>7}  taken for")
    for action in sorted(set(labels)):
        rows = [i for i, label in enumerate(labels) if label == action]
        right = sum(int(predicted[i] == action) for i in rows)
        low, high = (max(0.0, v) for v in wilson(right, len(rows)))
        instead = collections.Counter(
            ACTIONS[int(predicted[i]) + 1][0] for i in rows if predicted[i] != action
        ).most_common(2)
        print(
            f"{ACTIONS[action + 1][0]:<20} {right:>2}/{len(rows):<3} {low:>6.2f}-{high:<6.2f}"
            f" {np.median(walked[rows]):>6.2f}m  {', '.join(f'{a} {n}' for a, n in instead)}"
        )


if __name__ == "__main__":
    main()
