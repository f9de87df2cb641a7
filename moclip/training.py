"""Fine-tuning MoCLIP in plain PyTorch, single-process or under DDP (torch.distributed).

No Ray in here: a Ray Train worker calls `fit` like any other process, after Ray has set up the
process group (and possibly wrapped the model in DDP already).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from moclip.losses import alignment_loss, contrastive_loss, distillation_loss, weighted_loss
from moclip.model import MoCLIP
from moclip.optim import optimizer_step
from moclip.pairs import Batch, PairSet, collate_pairs
from moclip.text_encoders import TeacherCache, Tokenizer, memoized


@dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 1000
    batch_size: int = 64  # per process
    lr_text: float = 1e-5
    lr_motion: float = 3e-4
    weight_decay: float = 0.01
    adam_eps: float = 1e-8
    warmup_steps: int = 50
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    w_contrastive: float = 1.0
    w_distill: float = 1.0
    w_align: float = 0.0
    seed: int = 0
    log_every: int = 50
    bf16: bool = True  # autocast to bf16 on CUDA; CPU always runs fp32

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "lr_text", "lr_motion")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "weight_decay",
            "adam_eps",
            "warmup_steps",
            "grad_clip",
            "w_contrastive",
            "w_distill",
            "w_align",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 for a contrastive loss")

    def to_dict(self) -> dict:
        return asdict(self)


def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """(step+1)/warmup during warm-up, then floor + (1-floor)(1+cos(pi p))/2, p = progress."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    model: MoCLIP, config: FinetuneConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with the text tower at lr_text and the motion head (and temperature) at lr_motion;
    weight decay on matrices only."""
    model = getattr(model, "module", model)
    groups = []
    for params, lr in (
        (list(model.text.parameters()), config.lr_text),
        (list(model.motion.parameters()) + [model.log_scale], config.lr_motion),
    ):
        trainable = [p for p in params if p.requires_grad]
        groups.append(
            {
                "params": [p for p in trainable if p.ndim >= 2],
                "lr": lr,
                "weight_decay": config.weight_decay,
            }
        )
        groups.append(
            {"params": [p for p in trainable if p.ndim < 2], "lr": lr, "weight_decay": 0.0}
        )
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], eps=config.adam_eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config.warmup_steps, config.steps, config.min_lr_ratio)
    )
    return optimizer, scheduler


def distributed() -> bool:
    """Whether this process trains in a group of several (a group of one, as a single Ray Train
    worker has, trains exactly as a plain process)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients of every rank and keeps this rank's slice.

    Every rank computes the same loss on the gathered batch; summing d(loss)/d(slice) over ranks
    and DDP's averaging of parameter gradients then give exactly the gradient of one process
    that saw the whole concatenated batch.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad.chunk(ctx.world)[ctx.rank]


def _gather(x: torch.Tensor, with_grad: bool) -> torch.Tensor:
    if not distributed():
        return x
    if with_grad:
        return _GatherWithGrad.apply(x)
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def train_step(
    model: MoCLIP,
    batch: Batch,
    tokenizer: Tokenizer,
    teacher: TeacherCache,
    optimizer: torch.optim.Optimizer,
    scheduler,
    config: FinetuneConfig,
    device: torch.device,
) -> dict[str, float]:
    """One optimisation step on one batch (this process's share of it under DDP)."""
    model.train()
    batch = batch.to(device)
    tokens = tokenizer(batch.texts).to(device)
    teacher_features = teacher(batch.texts).to(device)
    use_bf16 = config.bf16 and device.type == "cuda"
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    )
    with autocast:
        text, motion, log_scale = model(tokens, batch.features, batch.mask)
    text, motion = text.float(), motion.float()
    # The contrastive loss sees the whole batch across processes (gathered, with gradients);
    # the per-pair terms use local means, which DDP's gradient averaging turns into the mean
    # over the whole batch.
    terms = {
        "contrastive": contrastive_loss(
            _gather(text, True),
            _gather(motion, True),
            log_scale,
            _gather(batch.motion_keys, False),
            _gather(batch.text_keys, False),
        ),
        "distill": distillation_loss(text, teacher_features),
        "align": alignment_loss(text, motion),
    }
    loss = weighted_loss(terms, config.w_contrastive, config.w_distill, config.w_align)
    grad_norm = optimizer_step(loss, model.parameters(), optimizer, config.grad_clip, scheduler)
    return {
        "loss": loss.item(),
        **{name: value.item() for name, value in terms.items()},
        "logit_scale": log_scale.exp().item(),
        "grad_norm": grad_norm.item(),
    }


def step_seed(seed: int, rank: int, step: int) -> int:
    """Torch's seed for one training step: (seed·P + rank)·P + step, P = 1,000,003."""
    prime = 1_000_003
    return ((seed * prime + rank) * prime + step) % (2**63 - 1)


def make_loader(pairs: PairSet, config: FinetuneConfig, epoch_seed: int = 0) -> DataLoader:
    """Shuffled pair batches; under DDP each rank gets its own equal-sized share."""
    if distributed():
        sampler = DistributedSampler(
            pairs, shuffle=True, seed=config.seed + epoch_seed, drop_last=True
        )
    else:
        generator = torch.Generator().manual_seed(config.seed + epoch_seed)
        sampler = RandomSampler(pairs, generator=generator)
    return DataLoader(
        pairs,
        batch_size=config.batch_size,
        sampler=sampler,
        collate_fn=collate_pairs,
        drop_last=True,
    )


def fit(
    model: MoCLIP,
    pairs: PairSet,
    tokenizer: Tokenizer,
    teacher: TeacherCache,
    config: FinetuneConfig,
    device: torch.device | str = "cpu",
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    start_step: int = 0,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    prepare_loader: Callable[[DataLoader], DataLoader] | None = None,
) -> list[dict[str, float]]:
    """Train for config.steps steps (from `start_step`); returns the per-step metrics.

    In a process group of several the model is wrapped in DDP unless it already is.
    Step s sees the same batch and the same random draws whether the run got there in one go
    or resumed at `start_step` from a checkpoint of step `start_step` (model, optimizer and
    scheduler states): the same config gives the same numbers, interrupted or not.
    `on_step(step, metrics)` is called after every step (logging, checkpoints, Ray reports);
    `prepare_loader` wraps each epoch's loader (e.g. Ray Train's prepare_data_loader).
    """
    device = torch.device(device)
    ddp = distributed()
    rank = dist.get_rank() if ddp else 0
    if len(pairs) < config.batch_size:
        raise ValueError(f"{len(pairs)} pairs are fewer than one batch of {config.batch_size}")
    model.to(device)
    if ddp and not isinstance(model, DistributedDataParallel):
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    teacher.teacher.to(device)
    tokenizer = memoized(tokenizer)
    if optimizer is None:
        optimizer, scheduler = make_optimizer(model, config)
    history: list[dict[str, float]] = []
    # Resuming: the epoch of start_step, and the batches of it already trained on.
    epoch, skip = divmod(start_step, len(make_loader(pairs, config)))
    step, started = start_step, time.monotonic()
    while step < config.steps:
        loader = make_loader(pairs, config, epoch_seed=epoch)
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        if prepare_loader is not None:
            loader = prepare_loader(loader)
        for index, batch in enumerate(loader):
            if index < skip:
                continue
            if step >= config.steps:
                break
            # Dropout draws from torch's global generator: seeded per step (and rank, so DDP
            # workers do not share masks), a resumed run draws what the uninterrupted one did.
            torch.manual_seed(step_seed(config.seed, rank, step))
            metrics = train_step(
                model, batch, tokenizer, teacher, optimizer, scheduler, config, device
            )
            metrics["lr_text"] = optimizer.param_groups[0]["lr"]
            metrics["pairs_per_s"] = (
                (step - start_step + 1) * config.batch_size / max(time.monotonic() - started, 1e-9)
            )
            history.append(metrics)
            step += 1
            if on_step:
                on_step(step, metrics)
        epoch, skip = epoch + 1, 0
    return history
