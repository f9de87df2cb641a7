"""Fine-tune MoCLIP on a nested subset of a data folder, then score retrieval on the test split.

    python -m moclip.finetune --data DIR --out CKPT [--fraction 0.5] [--encoder hf|tiny]
        [--epochs 50] [--w-distill 0.6] [--seed 0]

MoCLIP's recipe by default (`FinetuneConfig`): a motion-encoder-only phase, then joint training
with the tether, the checkpoint chosen on the validation split's retrieval (val.txt).

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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from moclip.data.dataset import DatasetError, MotionDataset, load_dataset
from moclip.data.subsets import nested_subset
from moclip.model import CheckpointMeta, MoCLIP, build_moclip, save_checkpoint
from moclip.motion_encoder import MotionEncoderConfig
from moclip.pairs import PairSet
from moclip.retrieval import evaluate_retrieval, validation_recalls
from moclip.text_encoders import TeacherCache, TextEncoderSpec, Tokenizer, frozen_copy
from moclip.training import FinetuneConfig, distributed, fit, make_optimizer


def validation_score(metrics: dict[str, float]) -> float:
    """S = (R@1 + R@2 + R@3) / 3 of text-to-motion retrieval over the validation split."""
    return (metrics["t2m_R@1"] + metrics["t2m_R@2"] + metrics["t2m_R@3"]) / 3


@dataclass
class Selection:
    """The validation's best checkpoint so far: its step, score and weights (on the CPU), and
    every (step, score) scored."""

    step: int = 0
    score: float = float("-inf")
    weights: dict | None = None
    scores: list[tuple[int, float]] = field(default_factory=list)

    def to_state(self) -> dict:
        return {"step": self.step, "score": self.score, "weights": self.weights,
                "scores": self.scores}


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
    val: MotionDataset | None = None  # checkpoints are chosen on it (None: the last is kept)
    selection: Selection = field(default_factory=Selection)

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

    def fit(
        self,
        device,
        model: torch.nn.Module | None = None,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        **options,
    ) -> list[dict]:
        """`moclip.training.fit` on these pieces; `model` is the model as wrapped for training
        (DDP, Ray Train), by default the plain one. At the validation steps every process
        scores the validation split (`validate`, so all keep the same best weights) and the
        step's metrics passed to `on_step` carry its figures (`val_score`, `val_t2m_R@k`)."""
        trained = self.model if model is None else model
        plain = getattr(trained, "module", trained)

        def step_done(step: int, metrics: dict[str, float]) -> None:
            metrics.update(self.validate(step, device, plain) or {})
            if on_step is not None:
                on_step(step, metrics)

        return fit(
            trained,
            self.pairs,
            self.tokenizer,
            self.teacher,
            self.config,
            device,
            self.optimizer,
            self.scheduler,
            on_step=step_done,
            **options,
        )

    def restore(self, path: Path) -> int:
        """Load a checkpoint written with its optimiser (and the validation's best so far);
        the step to go on from."""
        from moclip.model import CHECKPOINT_FORMAT
        from moclip.storage import load_state

        state = load_state(path, "MoCLIP checkpoint", CHECKPOINT_FORMAT, "")
        self.model.load_state_dict(state["model"])
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        chosen = state.get("extra", {}).get("selection")
        if chosen:
            self.selection = Selection(**{**chosen, "scores": [tuple(s) for s in chosen["scores"]]})
        return state["step"]

    def validate(self, step: int, device, model: torch.nn.Module | None = None) -> dict | None:
        """At the config's validation steps, score retrieval on the validation split and keep
        the weights if they are the best so far: {"val_score", "val_t2m_R@k"...}; else None."""
        if self.val is None or step not in self.config.validation_steps():
            return None
        model = self.model if model is None else model
        metrics = validation_recalls(
            model, self.tokenizer, self.val, self.train.mean, self.train.std, device
        )
        score = validation_score(metrics)
        self.selection.scores.append((step, score))
        if score > self.selection.score:  # ties keep the earlier step
            self.selection.step, self.selection.score = step, score
            self.selection.weights = {
                k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()
            }
        model.train()
        return {"val_score": score, **{f"val_t2m_R@{k}": metrics[f"t2m_R@{k}"] for k in (1, 2, 3)}}

    def select(self, model: torch.nn.Module | None = None) -> dict[str, float]:
        """Load the validation's best weights into `model` (if any step was scored); what was
        chosen: the selected step and its score, or the last step without a validation."""
        model = self.model if model is None else model
        if self.selection.weights is None:
            return {"selected_step": float(self.config.steps)}
        model.load_state_dict(self.selection.weights)
        return {"selected_step": float(self.selection.step), "val_score": self.selection.score}

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
    val: MotionDataset | None = None,
    subset_seed: int | None = None,
) -> Finetune:
    """A fine-tune on the nested `fraction` of `train` drawn by `subset_seed` (default:
    `config.seed`), the motion head's initialisation and the batches seeded by `config.seed`,
    on the CPU, its length resolved from `config.epochs` and the subset's size, its
    checkpoints chosen on `val`."""
    draw = config.seed if subset_seed is None else subset_seed
    subset = train.subset(nested_subset(train.motion_ids, fraction, draw))
    pairs = PairSet(subset, train.mean, train.std)
    processes = dist.get_world_size() if distributed() else 1
    config = config.resolved(len(pairs), processes)
    model, tokenizer = build_moclip(spec, train.skeleton, motion_config, seed=config.seed)
    optimizer, scheduler = make_optimizer(model, config)
    return Finetune(
        spec=spec,
        motion_config=motion_config,
        config=config,
        train=train,
        subset=subset,
        subset_fingerprint=subset.fingerprint(),
        pairs=pairs,
        model=model,
        tokenizer=tokenizer,
        teacher=TeacherCache(frozen_copy(model.text), tokenizer),
        optimizer=optimizer,
        scheduler=scheduler,
        val=val,
    )


def main(argv: list[str] | None = None) -> int:
    defaults = FinetuneConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint file to write")
    parser.add_argument("--fraction", type=float, default=1.0)
    parser.add_argument("--encoder", choices=("hf", "tiny", "open_clip"), default="hf")
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model name")
    parser.add_argument("--pretrained", default="openai", help="open_clip tag or checkpoint file")
    parser.add_argument(
        "--epochs", type=float, default=defaults.epochs, help="passes over the subset (0: --steps)"
    )
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--motion-only-share", type=float, default=defaults.motion_only_share)
    parser.add_argument("--lr-motion", type=float, default=defaults.lr_motion)
    parser.add_argument("--lr-text", type=float, default=defaults.lr_text)
    parser.add_argument("--lr-motion-joint", type=float, default=defaults.lr_motion_joint)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--w-contrastive", type=float, default=defaults.w_contrastive)
    parser.add_argument("--w-distill", type=float, default=defaults.w_distill, help="lambda")
    parser.add_argument("--w-align", type=float, default=defaults.w_align)
    parser.add_argument("--validations", type=int, default=defaults.validations)
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
            epochs=args.epochs,
            steps=args.steps,
            batch_size=args.batch_size,
            motion_only_share=args.motion_only_share,
            lr_motion=args.lr_motion,
            lr_text=args.lr_text,
            lr_motion_joint=args.lr_motion_joint,
            warmup_steps=args.warmup_steps,
            w_contrastive=args.w_contrastive,
            w_distill=args.w_distill,
            w_align=args.w_align,
            validations=args.validations,
            seed=args.seed,
            log_every=args.log_every,
        )
        spec = TextEncoderSpec(kind=args.encoder, model=args.model, pretrained=args.pretrained)
        motion_config = MotionEncoderConfig(frame_stride=args.frame_stride)
        train = load_dataset(args.data, "train")
        test = load_dataset(args.data, "test")
        val = load_dataset(args.data, "val") if (args.data / "val.txt").is_file() else None
        run = build_finetune(spec, motion_config, config, train, args.fraction, val)
    except (ValueError, DatasetError) as err:
        parser.error(str(err))
    model, pairs, config = run.model, run.pairs, run.config
    if rank == 0:
        print(
            f"[finetune] {len(run.subset.motion_ids)} motions, {len(pairs)} pairs "
            f"(fraction {args.fraction}); {config.epochs:g} epochs = {config.steps} steps, the "
            f"first {config.motion_only_steps} motion encoder only; encoder {spec.kind} width "
            f"{model.text.width}; {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
            f"parameters; checkpoint chosen on "
            f"{'the validation split' if val is not None else 'nothing (no val.txt): the last'}",
            flush=True,
        )
    started = time.monotonic()

    def report(step: int, metrics: dict[str, float]) -> None:
        scored = "val_score" in metrics
        if rank == 0 and (step % config.log_every == 0 or step == config.steps or scored):
            print(
                f"[finetune] step {step}/{config.steps} loss {metrics['loss']:.3f} "
                f"(contrastive {metrics['contrastive']:.3f}, distill {metrics['distill']:.4f}, "
                f"align {metrics['align']:.3f}) {metrics['pairs_per_s']:.0f} pairs/s, "
                f"{time.monotonic() - started:.0f} s"
                + (f"; validation score {metrics['val_score']:.3f}" if scored else ""),
                flush=True,
            )

    run.fit(device, on_step=report)
    if rank == 0:
        model.to(device)
        chosen = run.select()
        scores = run.retrieval_scores(test, device)
        save_checkpoint(args.out, model, run.meta(config.steps))
        result = {
            "fraction": args.fraction,
            "pairs": len(pairs),
            "epochs": config.epochs,
            "steps": config.steps,
            **chosen,
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
