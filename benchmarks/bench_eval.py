"""Motions generated per second by number of DDIM steps, and evaluator throughput.

    python benchmarks/bench_eval.py [--motions 128] [--steps 10 20 50] [--device cpu|cuda]
    python benchmarks/bench_eval.py --generator G.pt --evaluator E.pt   # trained models

Without files it times freshly initialised models of the default sizes: the cost of sampling
does not depend on the weights' values. Lengths are 120 frames; guidance 2.5 (two denoiser
passes per step), and 1.0 for comparison.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from common import describe_device
from moclip.evaluation.evaluator import Evaluator, Vocabulary, load_evaluator
from moclip.generation.diffusion import DiffusionGenerator, load_generator
from moclip.skeletons import HUMANML3D


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--motions", type=int, default=128)
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--generator", type=Path)
    parser.add_argument("--evaluator", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    dim = HUMANML3D.feature_dim
    zeros, ones = np.zeros(dim), np.ones(dim)
    generator = (
        load_generator(args.generator, args.device)[0]
        if args.generator
        else DiffusionGenerator(dim, 384, zeros, ones).eval()
    ).to(device)
    evaluator = (
        load_evaluator(args.evaluator, args.device)[0]
        if args.evaluator
        else Evaluator(
            Vocabulary(("<pad>", "<unk>", "a", "person", "walks")), dim, zeros, ones
        ).eval()
    ).to(device)
    print(f"device: {describe_device(device)}; {args.motions} motions of {args.frames} frames")
    text = torch.randn(args.motions, generator.text_width)
    lengths = [args.frames] * args.motions
    seeds = list(range(args.motions))
    generator.sample(text[:2], lengths[:2], seeds[:2], steps=2)  # warm-up
    print("\nDDIM steps  guidance  seconds  motions/s  s per 1000 motions")
    for steps in args.steps:
        for guidance in (2.5, 1.0):
            seconds = timed(lambda: generator.sample(text, lengths, seeds, steps, guidance))
            print(
                f"{steps:>10}  {guidance:8.1f}  {seconds:7.2f}  {args.motions / seconds:9.1f}"
                f"  {1000 * seconds / args.motions:18.1f}"
            )
    motions = [np.random.default_rng(i).normal(size=(args.frames, dim)) for i in range(1024)]
    captions = ["a person walks forward and then turns left."] * 1024
    evaluator.encode_motions(motions[:8])
    motion_s = timed(lambda: evaluator.encode_motions(motions))
    text_s = timed(lambda: evaluator.encode_texts(captions))
    print(f"\nevaluator: {1024 / motion_s:.0f} motions/s, {1024 / text_s:.0f} captions/s")


if __name__ == "__main__":
    main()
