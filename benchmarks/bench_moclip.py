"""MoCLIP fine-tuning throughput (pairs/s), peak memory and model FLOP/s, per text tower and
data path, side by side; and the seconds of one mid-run checkpoint against 1000 steps.

    python benchmarks/bench_moclip.py [--towers tiny hf] [--steps 20] [--batch-size 64]
    python benchmarks/bench_moclip.py --towers vit-b-32 --paths full trimmed --device cuda

Random motions of 120 frames (2,048 of them in memory, batches gathered from them); captions drawn from a fixed pool (as a corpus's captions come
back every epoch) whose teacher features are computed before the timed steps, so the figures
are the steady state of `fit` after its first epoch. Data paths: `full` runs the text tower
over the tokenizer's whole context and tokenizes every step (the code before trimming);
`trimmed` cuts trailing padding and tokenizes each caption once (what `fit` does now). Three
untimed steps first (one counted by torch's FlopCounterMode). Each row runs in a fresh process;
on CUDA, steps run under bf16 autocast, peak memory is the allocator's peak, and a thread reads
the GPU's utilisation (NVML) every 50 ms over the timed steps.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from common import GpuBusy, describe_device
from moclip.model import CheckpointMeta, build_moclip, save_checkpoint
from moclip.motion_encoder import MotionEncoderConfig
from moclip.pairs import Batch
from moclip.skeletons import HUMANML3D
from moclip.text_encoders import TeacherCache, TextEncoderSpec, frozen_copy, memoized
from moclip.training import FinetuneConfig, make_optimizer, train_step

TOWERS = {
    "tiny": TextEncoderSpec(kind="tiny"),
    "hf": TextEncoderSpec(kind="hf"),
    # Architecture only (no download): throughput does not depend on the weights' values.
    "vit-b-32": TextEncoderSpec(kind="open_clip", model="ViT-B-32", pretrained=None),
}
PATHS = ("full", "trimmed")
WORDS = (
    "a person walks runs jumps forward backward slowly quickly left right then turns waves".split()
)
# Dense bf16 peak of the GPUs this has run on, for the utilisation column.
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0}


def caption_pool(size: int, generator: torch.Generator) -> list[str]:
    """`size` captions of 6-14 words, like HumanML3D's (10-20 tokens with the end markers)."""
    return [
        " ".join(WORDS[i] for i in torch.randint(len(WORDS), (int(n),), generator=generator))
        for n in torch.randint(6, 15, (size,), generator=generator)
    ]


def motion_pool(size: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """(size, frames, D) random motions held in memory, as a loaded corpus's features are."""
    return torch.randn(size, frames, HUMANML3D.feature_dim, generator=generator)


def fake_batch(motions: torch.Tensor, pool: list[str], size: int, generator) -> Batch:
    """A batch drawn from the in-memory motions and captions (the bench's stand-in for the
    DataLoader: an index, a gather, no decoding)."""
    index = torch.randint(len(motions), (size,), generator=generator)
    texts = [pool[i] for i in torch.randint(len(pool), (size,), generator=generator)]
    return Batch(
        motions[index],
        torch.ones(size, motions.shape[1], dtype=torch.bool),
        texts,
        index,
        torch.arange(size),
    )


def run(
    name: str,
    path: str,
    steps: int,
    batch_size: int,
    frame_stride: int,
    pool_size: int,
    device: torch.device,
) -> dict:
    model, tokenizer = build_moclip(
        TOWERS[name], HUMANML3D, MotionEncoderConfig(frame_stride=frame_stride)
    )
    model.to(device)
    trimmed = path == "trimmed"
    model.text.trim_padding = trimmed
    tokenizer = memoized(tokenizer) if trimmed else tokenizer
    teacher = TeacherCache(frozen_copy(model.text), tokenizer, batch_size=1024)
    generator = torch.Generator().manual_seed(0)
    pool = caption_pool(pool_size, generator)
    motions = motion_pool(2048, 120, generator)
    started = time.perf_counter()
    teacher(pool)  # the first epoch's teacher work, done up front
    teacher_s = time.perf_counter() - started
    # joint-phase steps (every part trains): the costly kind
    config = FinetuneConfig(steps=steps + 3, epochs=0, motion_only_share=0.0, batch_size=batch_size)
    optimizer, scheduler = make_optimizer(model, config)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> None:
        batch = fake_batch(motions, pool, batch_size, generator)
        train_step(model, batch, tokenizer, teacher, optimizer, scheduler, config, device)

    step()  # warm-up
    with FlopCounterMode(display=False) as counter:  # model FLOPs of one forward + backward
        step()
    flops = counter.get_total_flops()
    step()
    sampler = GpuBusy(device) if device.type == "cuda" else None
    if sampler:
        torch.cuda.synchronize(device)
        sampler.start()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if sampler:
        torch.cuda.synchronize(device)
        sampler.stopped.set()
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = time.perf_counter() - started
    checkpoint_s, checkpoint_mb = time_checkpoint(model, optimizer, scheduler, name, config)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "tower": name,
        "path": path,
        "params_m": params,
        "pairs_per_s": steps * batch_size / seconds,
        "step_ms": 1000 * seconds / steps,
        "peak_mib": peak,
        "tflops": flops * steps / seconds / 1e12,
        "gpu_util": sampler.mean() if sampler else float("nan"),
        "teacher_s": teacher_s,
        "checkpoint_s": checkpoint_s,
        "checkpoint_mb": checkpoint_mb,
    }


def time_checkpoint(model, optimizer, scheduler, name: str, config) -> tuple[float, float]:
    """(seconds, MB) of one mid-run checkpoint as the sweep writes it: weights, optimizer and
    scheduler state, to a local temporary folder (from the GPU: the copy to the host included)."""
    with tempfile.TemporaryDirectory() as folder:
        meta = CheckpointMeta(
            step=0,
            text_spec=TOWERS[name],
            motion_config=model.motion.config,
            skeleton=HUMANML3D.name,
            train_config=config.to_dict(),
            data_fingerprint="bench",
            mean=np.zeros(HUMANML3D.feature_dim, dtype=np.float32),
            std=np.ones(HUMANML3D.feature_dim, dtype=np.float32),
        )
        started = time.perf_counter()
        path = save_checkpoint(Path(folder) / "moclip.pt", model, meta, optimizer, scheduler)
        return time.perf_counter() - started, path.stat().st_size / 1e6


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--towers", nargs="+", default=["tiny", "hf"], choices=sorted(TOWERS))
    parser.add_argument("--paths", nargs="+", default=["trimmed"], choices=PATHS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[64])
    parser.add_argument("--frame-stride", type=int, default=4)
    parser.add_argument("--pool", type=int, default=4096, help="distinct captions")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # tower, path, batch size
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.one:
        name, path, batch = args.one
        row = run(name, path, args.steps, int(batch), args.frame_stride, args.pool, device)
        print(json.dumps(row))
        return
    print(
        f"device: {describe_device(device)}, 120 frames, stride {args.frame_stride}, "
        f"{args.pool} distinct captions",
        flush=True,
    )
    rows = []
    for name in args.towers:
        for batch in args.batch_size:
            for path in args.paths:
                cmd = [
                    sys.executable,
                    __file__,
                    *("--one", name, path, str(batch)),
                    *("--steps", str(args.steps), "--frame-stride", str(args.frame_stride)),
                    *("--pool", str(args.pool), "--device", args.device),
                ]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode:
                    print(f"  FAILED: {name} {path} batch {batch}:\n{done.stderr[-3000:]}")
                    continue
                rows.append({**json.loads(done.stdout.strip().splitlines()[-1]), "batch": batch})
                print(f"  done: {name} {path} batch {batch}", flush=True)
    if not rows:
        sys.exit("every run failed")
    peak = peak_tflops(device)
    reference = rows[0]["pairs_per_s"]
    print(
        "\ntower     path     batch params(M)  pairs/s step ms vs first  peak MiB  TFLOP/s"
        "  MFU  GPU busy  teacher fill s  checkpoint s (MB)  per 1000 steps"
    )
    for row in rows:
        mfu = f"{100 * row['tflops'] / peak:4.1f}%" if peak else "   - "
        busy = "-" if math.isnan(row["gpu_util"]) else f"{row['gpu_util']:.0f}%"
        print(
            f"{row['tower']:<9} {row['path']:<8} {row['batch']:5d} {row['params_m']:9.1f} "
            f"{row['pairs_per_s']:8.0f} {row['step_ms']:7.0f} {row['pairs_per_s'] / reference:7.2f}x "
            f"{row['peak_mib']:9.0f} {row['tflops']:8.2f} {mfu} {busy:>9} "
            f"{row['teacher_s']:15.1f} {row['checkpoint_s']:8.2f} ({row['checkpoint_mb']:5.0f}) "
            # 1000 steps of step_ms milliseconds take step_ms seconds
            f"{100 * row['checkpoint_s'] / (row['checkpoint_s'] + row['step_ms']):13.2f}%"
        )
    print(
        "(TFLOP/s counts the matrix FLOPs of forward and backward, torch's FlopCounterMode, so a "
        "trimmed tower counts only the tokens it runs; MFU divides by the dense bf16 peak, "
        f"{peak or 'unknown here'} TFLOP/s; GPU busy is NVML's share of time a kernel ran; "
        "per 1000 steps: one mid-run checkpoint's share of the time of 1000 steps and itself, "
        "what `ray.checkpoint_every: 1000` costs a fine-tune, before any upload)"
    )


if __name__ == "__main__":
    main()
