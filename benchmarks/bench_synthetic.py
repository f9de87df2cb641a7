"""Time to build the synthetic corpus, by number of worker processes, and its size on disk.

    python benchmarks/bench_synthetic.py [--num-motions 20000] [--workers 1 2] [--keep DIR]

Prints one row per worker count and the speed-up of each against the first, measured in the
same run on the same machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from moclip.data.synthetic import build_corpus


def folder_size(root: Path) -> tuple[int, int]:
    """(bytes, files) under root."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-motions", type=int, default=20000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build here instead of a temporary folder")
    args = parser.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-synthetic-"))
    rows = []
    for workers in args.workers:
        out = base / f"w{workers}"
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        build_corpus(out, args.num_motions, args.seed, workers=workers, progress=False)
        seconds = time.perf_counter() - started
        size, files = folder_size(out)
        rows.append((workers, seconds, size, files))
        print(
            f"workers {workers}: {seconds:7.1f} s  {args.num_motions / seconds:6.0f} motions/s  "
            f"{size / 2**20:7.1f} MiB in {files} files",
            flush=True,
        )
    reference = rows[0][1]
    print("\nworkers  seconds  motions/s  speed-up   size MiB")
    for workers, seconds, size, _ in rows:
        print(
            f"{workers:>7}  {seconds:7.1f}  {args.num_motions / seconds:9.0f}  "
            f"{reference / seconds:8.2f}x  {size / 2**20:9.1f}"
        )
    if args.keep is None:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
