"""The study: MoCLIP fine-tuning-set size versus robustness to adversarial prompts (FID).

Stage 0 (data) is what runs today: build or reuse the synthetic corpus, load its splits, draw
the nested fine-tuning subsets and render a few motions. Fine-tuning (Ray Train), adversarial
evaluation (Ray Tune) and MLflow tracking follow in later stages.

    python sweeps/scale_vs_robustness.py [--workdir DIR] [--num-motions N] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from moclip.data.dataset import DatasetError, load_dataset
from moclip.data.subsets import nested_subset
from moclip.data.synthetic import build_corpus
from moclip.viz import render_strip

FRACTIONS = (0.1, 0.25, 0.5, 1.0)


def corpus_folder(workdir: Path, num_motions: int, seed: int) -> Path:
    """The synthetic corpus for (num_motions, seed), built once and reused."""
    root = workdir / "data" / f"synthetic-n{num_motions}-s{seed}"
    manifest = root / "corpus.json"
    if manifest.is_file():
        print(f"[stage 0] reusing corpus {root}")
        return root
    print(f"[stage 0] building {num_motions} synthetic motions in {root}")
    build_corpus(root, num_motions, seed)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("moclip_runs"),
        help="where data, renders and results go (default: ./moclip_runs)",
    )
    parser.add_argument("--num-motions", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--renders", type=int, default=4, help="motions to draw as PNG strips")
    args = parser.parse_args(argv)

    started = time.monotonic()
    root = corpus_folder(args.workdir, args.num_motions, args.seed)
    try:
        splits = {split: load_dataset(root, split) for split in ("train", "val", "test")}
    except DatasetError as err:
        parser.error(str(err))
    for name, data in splits.items():
        print(
            f"[stage 0] {name}: {len(data.motion_ids)} motions, {data.num_pairs} caption pairs, "
            f"dropped {dict(data.dropped) or 'none'}, fingerprint {data.fingerprint()[:12]}"
        )
    train_ids = splits["train"].motion_ids
    for fraction in FRACTIONS:
        subset = splits["train"].subset(nested_subset(train_ids, fraction, args.seed))
        print(
            f"[stage 0] fraction {fraction:>4}: {len(subset.motion_ids)} motions, "
            f"{subset.num_pairs} fine-tuning pairs"
        )

    render_dir = args.workdir / "renders"
    families = json.loads((root / "corpus.json").read_text())["families"]
    for item in splits["test"].items[: args.renders]:
        out = render_strip(
            item.features, render_dir / f"{item.motion_id}.png", title=item.captions[0].text
        )
        print(f"[stage 0] rendered {out}")
    print(
        f"[stage 0] done in {time.monotonic() - started:.1f} s: {len(families)} action "
        f"families; renders in {render_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
