"""Embed every caption of a data folder once with the original text encoder, to an .npz that
`--embeddings` of the generator tools reads (for machines without the encoder's weights).

    python -m moclip.embed_captions --data DIR --out FILE.npz [--encoder hf|tiny|open_clip]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from moclip.data.dataset import SPLITS, DatasetError, load_dataset
from moclip.text_encoders import TeacherCache, TextEncoderSpec, build_text_encoder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", choices=("hf", "tiny", "open_clip"), default="hf")
    parser.add_argument("--split", choices=SPLITS, default="all")
    args = parser.parse_args(argv)
    try:
        data = load_dataset(args.data, args.split)
    except DatasetError as err:
        parser.error(str(err))
    encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind=args.encoder))
    cache = TeacherCache(encoder.eval(), tokenizer)
    started = time.monotonic()
    cache(sorted({c.text for item in data.items for c in item.captions}))
    cache.save(args.out)
    print(
        f"embedded {len(cache.features)} captions in {time.monotonic() - started:.0f} s "
        f"-> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
