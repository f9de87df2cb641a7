"""Render the example motions of docs/USAGE.md: the first single-action motion of each listed family.

python docs/render_examples.py [--out docs/images] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moclip.data.synthetic import make_motion
from moclip.viz import render_strip

FAMILIES = ("walk", "jump", "wave", "sit down", "kick", "bend and pick up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wanted = set(FAMILIES)
    index = 0
    while wanted:
        motion = make_motion(args.seed, index)
        index += 1
        family = motion.families[0]
        if len(motion.families) == 1 and family in wanted:
            wanted.discard(family)
            out = render_strip(
                motion.positions,
                args.out / f"{family.replace(' ', '_')}.png",
                frames=6,
                title=f"“{motion.captions[0].text}”",
            )
            print(f"wrote {out}")


if __name__ == "__main__":
    main()
