"""The study: MoCLIP fine-tuning-set size versus robustness to adversarial prompts (FID).

    python sweeps/scale_vs_robustness.py [--config FILE] [key.path=value ...]

e.g. `python sweeps/scale_vs_robustness.py data.num_motions=20000 workdir=/data/moclip`.

Stage 0 (data) is what runs today: it prints the resolved config, builds or reuses the data
set, loads its splits, draws the nested fine-tuning subsets and renders a few test motions.
Fine-tuning (Ray Train), adversarial evaluation (Ray Tune) and MLflow tracking follow in the
later stages.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

from moclip.data.action3d import load_action3d
from moclip.data.dataset import DatasetError, MotionDataset, load_dataset
from moclip.data.subsets import nested_subset
from moclip.data.synthetic import build_corpus
from moclip.viz import render_strip
from sweeps.config import ConfigError, DataConfig, StudyConfig, load_config

RENDERS = 4


def corpus_folder(workdir: Path, data: DataConfig) -> Path:
    """The synthetic corpus for (num_motions, seed), built once and reused."""
    root = (
        Path(data.root)
        if data.root
        else workdir / "data" / (f"synthetic-n{data.num_motions}-s{data.seed}")
    )
    if (root / "corpus.json").is_file():
        print(f"[stage 0] reusing corpus {root}")
        return root
    print(f"[stage 0] building {data.num_motions} synthetic motions in {root}")
    build_corpus(root, data.num_motions, data.seed)
    return root


def load_splits(config: StudyConfig) -> dict[str, MotionDataset]:
    """train and test (and val where the data set has one) of the configured data."""
    data = config.data
    if data.kind == "action3d":
        return {split: load_action3d(data.root, split) for split in ("train", "test")}
    root = corpus_folder(Path(config.workdir), data) if data.kind == "synthetic" else data.root
    return {split: load_dataset(root, split) for split in ("train", "val", "test")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, help="a YAML file (default: configs/default.yaml)")
    parser.add_argument("overrides", nargs="*", help="key.path=value, e.g. grid.seeds=[0]")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        parser.error(str(err))
    print("[config] resolved:\n" + yaml.safe_dump(config.to_dict(), sort_keys=False).rstrip())

    started = time.monotonic()
    try:
        splits = load_splits(config)
    except DatasetError as err:
        parser.error(str(err))
    for name, part in splits.items():
        print(
            f"[stage 0] {name}: {len(part.motion_ids)} motions, {part.num_pairs} caption pairs,"
            f" dropped {dict(part.dropped) or 'none'}, fingerprint {part.fingerprint()[:12]}"
        )
    train = splits["train"]
    for seed in config.grid.seeds:
        for fraction in config.grid.fractions:
            subset = train.subset(nested_subset(train.motion_ids, fraction, seed))
            print(
                f"[stage 0] seed {seed} fraction {fraction:>4}: {len(subset.motion_ids)} "
                f"motions, {subset.num_pairs} fine-tuning pairs"
            )

    render_dir = Path(config.workdir) / "renders"
    for item in splits["test"].items[:RENDERS]:
        out = render_strip(
            item.features,
            render_dir / f"{item.item_id}.png",
            title=item.captions[0].text,
            skeleton=train.skeleton,
        )
        print(f"[stage 0] rendered {out}")
    print(f"[stage 0] done in {time.monotonic() - started:.1f} s; renders in {render_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
