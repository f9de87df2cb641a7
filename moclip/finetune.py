"""Fine-tune MoCLIP on a nested subset of a data folder, then score retrieval on the test split.

    python -m moclip.finetune --data DIR --out CKPT [--fraction 0.5] [--encoder hf|tiny]
        [--steps 1000] [--w-distill 1.0] [--seed 0]

Under torchrun (several processes) it trains with DDP; only rank 0 writes and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from moclip.data.dataset import DatasetError, load_dataset
from moclip.data.subsets import nested_subset
from moclip.model import CheckpointMeta, build_moclip, save_checkpoint
from moclip.motion_encoder import MotionEncoderConfig
from moclip.pairs import PairSet
from moclip.retrieval import evaluate_retrieval
from moclip.text_encoders import TeacherCache, TextEncoderSpec, frozen_copy
from moclip.training import FinetuneConfig, fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--encoder", choices=("hf", "tiny", "open_clip"), default="hf")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model name")
    parser.add_argument("--pretrained", default="openai", help="open_clip tag or checkpoint file")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr-text", type=float, default=1e-5)
    parser.add_argument("--lr-motion", type=float, default=3e-4)
    parser.add_argument("--w-contrastive", type=float, default=1.0)
    parser.add_argument("--w-distill", type=float, default=1.0)
    parser.add_argument("--w-align", type=float, default=0.0)
    parser.add_argument("--frame-stride", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    device = torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    )
    try:
        config = FinetuneConfig(
            steps=args.steps,
            batch_size=args.batch_size,
            lr_text=args.lr_text,
            lr_motion=args.lr_motion,
            w_contrastive=args.w_contrastive,
            w_distill=args.w_distill,
            w_align=args.w_align,
            seed=args.seed,
            log_every=args.log_every,
        )
        spec = TextEncoderSpec(kind=args.encoder, model=args.model, pretrained=args.pretrained)
        motion_config = MotionEncoderConfig(frame_stride=args.frame_stride)
        train = load_dataset(args.data, "train")
        test = load_dataset(args.data, "test")
    except (ValueError, DatasetError) as err:
        parser.error(str(err))
    subset = train.subset(nested_subset(train.motion_ids, args.fraction, args.seed))
    pairs = PairSet(subset, train.mean, train.std)
    model, tokenizer = build_moclip(spec, train.skeleton, motion_config, seed=args.seed)
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    if rank == 0:
        print(
            f"[finetune] {len(subset.motion_ids)} motions, {len(pairs)} pairs "
            f"(fraction {args.fraction}); encoder {spec.kind} width {model.text.width}; "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters",
            flush=True,
        )
    started = time.monotonic()

    def report(step: int, metrics: dict[str, float]) -> None:
        if rank == 0 and (step % config.log_every == 0 or step == config.steps):
            print(
                f"[finetune] step {step}/{config.steps} loss {metrics['loss']:.3f} "
                f"(contrastive {metrics['contrastive']:.3f}, distill {metrics['distill']:.4f}) "
                f"{metrics['pairs_per_s']:.0f} pairs/s, {time.monotonic() - started:.0f} s",
                flush=True,
            )

    fit(model, pairs, tokenizer, teacher, config, device, on_step=report)
    if rank == 0:
        model.to(device)
        scores = evaluate_retrieval(
            model, tokenizer, teacher, test, train.mean, train.std, seed=args.seed, device=device
        )
        meta = CheckpointMeta(
            step=config.steps,
            text_spec=spec,
            motion_config=motion_config,
            skeleton=train.skeleton.name,
            train_config=config.to_dict(),
            data_fingerprint=subset.fingerprint(),
            mean=train.mean,
            std=train.std,
        )
        save_checkpoint(args.out, model, meta)
        result = {
            "fraction": args.fraction,
            "pairs": len(pairs),
            "seconds": round(time.monotonic() - started, 1),
            **scores,
        }
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    if distributed:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
