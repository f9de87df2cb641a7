"""MoCLIP fine-tuning throughput (pairs/s) and peak memory, per text tower, side by side.

    python benchmarks/bench_moclip.py [--towers tiny hf] [--steps 20] [--batch-size 64]
    python benchmarks/bench_moclip.py --towers vit-b-32 --device cuda   # on a GPU machine

Random motions of 120 frames and synthetic captions; three untimed steps first (one of them
counted by torch's FlopCounterMode). Each tower runs in a fresh process, so that on the CPU its peak resident set is its own;
on CUDA, steps run under bf16 autocast and peak memory is the allocator's peak.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import describe_device
from moclip.model import build_moclip
from moclip.motion_encoder import MotionEncoderConfig
from moclip.pairs import Batch
from moclip.skeletons import HUMANML3D
from moclip.text_encoders import TeacherCache, TextEncoderSpec, frozen_copy
from moclip.training import FinetuneConfig, make_optimizer, train_step

TOWERS = {
    "tiny": TextEncoderSpec(kind="tiny"),
    "hf": TextEncoderSpec(kind="hf"),
    # Architecture only (no download): throughput does not depend on the weights' values.
    "vit-b-32": TextEncoderSpec(kind="open_clip", model="ViT-B-32", pretrained=None),
}
WORDS = (
    "a person walks runs jumps forward backward slowly quickly left right then turns waves".split()
)


def fake_batch(size: int, frames: int, generator: torch.Generator) -> Batch:
    texts = [
        " ".join(WORDS[i] for i in torch.randint(len(WORDS), (10,), generator=generator))
        for _ in range(size)
    ]
    return Batch(
        torch.randn(size, frames, HUMANML3D.feature_dim, generator=generator),
        torch.ones(size, frames, dtype=torch.bool),
        texts,
        torch.arange(size),
        torch.arange(size),
    )


def run(name: str, steps: int, batch_size: int, frame_stride: int, device: torch.device) -> dict:
    model, tokenizer = build_moclip(
        TOWERS[name], HUMANML3D, MotionEncoderConfig(frame_stride=frame_stride)
    )
    model.to(device)
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    config = FinetuneConfig(steps=steps + 3, batch_size=batch_size)
    optimizer, scheduler = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        batch = fake_batch(batch_size, 120, generator)
        train_step(model, batch, tokenizer, teacher, optimizer, scheduler, config, device)

    step()  # warm-up
    with FlopCounterMode(display=False) as counter:  # model FLOPs of one forward + backward
        step()
    flops = counter.get_total_flops()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "tower": name,
        "params_m": params,
        "pairs_per_s": steps * batch_size / seconds,
        "step_ms": 1000 * seconds / steps,
        "peak_mib": peak,
        "tflops": flops * steps / seconds / 1e12,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--towers", nargs="+", default=["tiny", "hf"], choices=sorted(TOWERS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frame-stride", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", choices=sorted(TOWERS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.one:
        print(json.dumps(run(args.one, args.steps, args.batch_size, args.frame_stride, device)))
        return
    print(
        f"device: {describe_device(device)}, batch {args.batch_size}, 120 frames, stride "
        f"{args.frame_stride}"
    )
    rows = []
    for name in args.towers:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--frame-stride",
            str(args.frame_stride),
            "--device",
            args.device,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    reference = rows[0]["pairs_per_s"]
    print("\ntower      params(M)  pairs/s  step ms  vs first  peak MiB  model TFLOP/s")
    for row in rows:
        print(
            f"{row['tower']:<10} {row['params_m']:9.1f} {row['pairs_per_s']:8.0f} "
            f"{row['step_ms']:8.0f} {row['pairs_per_s'] / reference:8.2f}x "
            f"{row['peak_mib']:9.0f}  {row['tflops']:13.3f}"
        )
    print(
        "(model TFLOP/s counts the matrix FLOPs of forward and backward, torch's FlopCounterMode;"
        " divide by the device's peak for the utilisation)"
    )


if __name__ == "__main__":
    main()
