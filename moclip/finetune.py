"""Fine-tune MoCLIP on a nested subset of a data folder, then score retrieval on the test split.

    python -m moclip.finetune --data DIR --out CKPT [--fraction 0.5] [--encoder hf|tiny]
        [--steps 1000] [--w-distill 1.0] [--seed 0]

Under torchrun (several processes) it trains with DDP; only rank 0 writes and prints.
`build_finetune` assembles a fine-tune from its configs and data: this command and the sweep's
trials (sweeps/jobs.py) both use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from moclip.data.dataset import DatasetError, MotionDataset, load_dataset
from moclip.data.subsets import nested_subset
from moclip.model import CheckpointMeta, MoCLIP, build_moclip, save_checkpoint
from moclip.motion_encoder import MotionEncoderConfig
from moclip.pairs import PairSet
from moclip.retrieval import evaluate_retrieval
from moclip.text_encoders import TeacherCache, TextEncoderSpec, Tokenizer, frozen_copy
from moclip.training import FinetuneConfig, fit, make_optimizer


@dataclass
class Finetune:
    """One fine-tune's data, model, frozen teacher and optimiser (see `build_finetune`)."""

    spec: TextEncoderSpec
    motion_config: MotionEncoderConfig
    config: FinetuneConfig
    train: MotionDataset  # the whole training split: its mean and std normalise the motions
    subset: MotionDataset  # the nested subset trained on
    subset_fingerprint: str  # hashed once: every checkpoint records it
    pairs: PairSet
    model: MoCLIP
    tokenizer: Tokenizer
    teacher: TeacherCache
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def meta(self, step: int) -> CheckpointMeta:
        """The checkpoint metadata at `step`."""
        return CheckpointMeta(
            step=step,
            text_spec=self.spec,
            motion_config=self.motion_config,
            skeleton=self.train.skeleton.name,
            train_config=self.config.to_dict(),
            data_fingerprint=self.subset_fingerprint,
            mean=self.train.mean,
            std=self.train.std,
        )

    def fit(self, device, model: torch.nn.Module | None = None, **options) -> list[dict]:
        """`moclip.training.fit` on these pieces; `model` is the model as wrapped for training
        (DDP, Ray Train), by default the plain one."""
        return fit(
            self.model if model is None else model,
            self.pairs,
            self.tokenizer,
            self.teacher,
            self.config,
            device,
            self.optimizer,
            self.scheduler,
            **options,
        )

    def restore(self, path: Path) -> int:
        """Load a checkpoint written with its optimiser; the step to go on from."""
        from moclip.model import CHECKPOINT_FORMAT
        from moclip.storage import load_state

        state = load_state(path, "MoCLIP checkpoint", CHECKPOINT_FORMAT, "")
        self.model.load_state_dict(state["model"])
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        return state["step"]

    def retrieval_scores(
        self, test: MotionDataset, device, model: torch.nn.Module | None = None
    ) -> dict[str, float]:
        """Retrieval on `test` (batch-32 R-precision, R@k, teacher drift), seeded by the
        fine-tune's seed."""
        return evaluate_retrieval(
            self.model if model is None else model,
            self.tokenizer,
            self.teacher,
            test,
            self.train.mean,
            self.train.std,
            seed=self.config.seed,
            device=device,
        )


def build_finetune(
    spec: TextEncoderSpec,
    motion_config: MotionEncoderConfig,
    config: FinetuneConfig,
    train: MotionDataset,
    fraction: float,
) -> Finetune:
    """A fine-tune on the nested `fraction` of `train` (the subset, the motion head's
    initialisation and the batches all seeded by `config.seed`), on the CPU."""
    subset = train.subset(nested_subset(train.motion_ids, fraction, config.seed))
    model, tokenizer = build_moclip(spec, train.skeleton, motion_config, seed=config.seed)
    optimizer, scheduler = make_optimizer(model, config)
    return Finetune(
        spec=spec,
        motion_config=motion_config,
        config=config,
        train=train,
        subset=subset,
        subset_fingerprint=subset.fingerprint(),
        pairs=PairSet(subset, train.mean, train.std),
        model=model,
        tokenizer=tokenizer,
        teacher=TeacherCache(frozen_copy(model.text), tokenizer),
        optimizer=optimizer,
        scheduler=scheduler,
    )


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
    run = build_finetune(spec, motion_config, config, train, args.fraction)
    model, pairs = run.model, run.pairs
    if rank == 0:
        print(
            f"[finetune] {len(run.subset.motion_ids)} motions, {len(pairs)} pairs "
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

    run.fit(device, on_step=report)
    if rank == 0:
        model.to(device)
        scores = run.retrieval_scores(test, device)
        save_checkpoint(args.out, model, run.meta(config.steps))
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
