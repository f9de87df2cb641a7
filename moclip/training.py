"""Fine-tuning MoCLIP in plain PyTorch, single-process or under DDP (torch.distributed).

No Ray in here: a Ray Train worker calls `fit` like any other process, after Ray has set up the
process group (and possibly wrapped the model in DDP already).
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

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
    """MoCLIP's fine-tune; the defaults are the authors' (train_moCLIP.py): 50 epochs, the first
    70 % training only the motion encoder at 1e-4 with the text tower frozen and no tether, then
    every parameter at 1e-6 with the tether on, loss L_con + 0.6 L_distill + L_align."""

    steps: int = 1000  # the run's length where `epochs` is 0
    # passes over the (sub)set trained on: > 0 derives `steps` from the set's size (`resolved`),
    # so every fraction makes the same number of passes
    epochs: float = 50.0
    batch_size: int = 128  # per process
    # the share of steps that trains only the motion encoder (the text tower frozen and equal
    # to its teacher, no tether, temperature frozen); the authors' 35 of 50 epochs
    motion_only_share: float = 0.7
    lr_motion: float = 1e-4  # the motion encoder in the motion-only phase
    lr_text: float = 1e-6  # the text tower and the temperature in the joint phase
    lr_motion_joint: float = 1e-6  # the motion encoder in the joint phase
    weight_decay: float = 0.01
    adam_eps: float = 1e-8
    warmup_steps: int = 0  # linear warm-up at the start of each phase
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    w_contrastive: float = 1.0
    w_distill: float = 0.6  # the paper's lambda: the tether is a mean over elements
    w_align: float = 1.0
    # checkpoints scored on the validation split's retrieval, evenly spaced over the joint
    # phase, the last at the final step; the best is kept. 0: keep the last step
    validations: int = 3
    seed: int = 0
    log_every: int = 50
    bf16: bool = True  # autocast to bf16 on CUDA; CPU always runs fp32

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "lr_text", "lr_motion", "lr_motion_joint")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in (
            "epochs",
            "weight_decay",
            "adam_eps",
            "warmup_steps",
            "grad_clip",
            "w_contrastive",
            "w_distill",
            "w_align",
            "validations",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_lr_ratio", "motion_only_share"):  # share 1: the text stays frozen
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2 for a contrastive loss")

    def to_dict(self) -> dict:
        return asdict(self)

    def resolved(self, pairs: int, processes: int = 1) -> FinetuneConfig:
        """This config with `steps` = round(epochs x batches per pass) for a set of `pairs`
        pairs split over `processes` (at least one step); unchanged where epochs is 0."""
        if not self.epochs:
            return self
        per_pass = pairs // (self.batch_size * max(1, processes))
        if per_pass < 1:
            raise ValueError(
                f"{pairs} pairs make no batch of {self.batch_size} x {processes} process(es): "
                f"lower finetune.batch_size or use a larger fraction"
            )
        return replace(self, steps=max(1, round(self.epochs * per_pass)))

    @property
    def motion_only_steps(self) -> int:
        """The steps of the motion-only phase: round(motion_only_share x steps)."""
        return round(self.motion_only_share * self.steps)

    def validation_steps(self) -> list[int]:
        """The steps (after which) the validation split is scored: `validations` evenly spaced
        over the joint phase, the last at the final step."""
        if not self.validations:
            return []
        start, joint = self.motion_only_steps, self.steps - self.motion_only_steps
        points = {start + math.ceil(joint * (i + 1) / self.validations) for i in range(self.validations)}
        return sorted(step for step in points if step > start)


def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """(step+1)/warmup during warm-up, then floor + (1-floor)(1+cos(pi p))/2, p = progress."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def phase_rates(step: int, config: FinetuneConfig) -> dict[str, float]:
    """Learning rates at `step` of the text tower, the motion encoder and the temperature:
    motion only at lr_motion x lr_factor over the first phase, then lr_text (lr_motion_joint
    for the motion encoder) x lr_factor over the joint phase; 0 marks a frozen part."""
    first = config.motion_only_steps
    if step < first:
        factor = lr_factor(step, config.warmup_steps, first, config.min_lr_ratio)
        return {"text": 0.0, "motion": config.lr_motion * factor, "scale": 0.0}
    factor = lr_factor(
        step - first, config.warmup_steps, config.steps - first, config.min_lr_ratio
    )
    return {
        "text": config.lr_text * factor,
        "motion": config.lr_motion_joint * factor,
        "scale": config.lr_text * factor,
    }


def make_optimizer(
    model: MoCLIP, config: FinetuneConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the text tower, the motion encoder and the temperature, each at its rate of
    `phase_rates` (set per step by the scheduler); weight decay on matrices only."""
    model = getattr(model, "module", model)
    groups, lambdas = [], []
    for part, params in (
        ("text", list(model.text.parameters())),
        ("motion", list(model.motion.parameters())),
        ("scale", [model.log_scale]),
    ):
        trainable = [p for p in params if p.requires_grad]
        for decay, chosen in (
            (config.weight_decay, [p for p in trainable if p.ndim >= 2]),
            (0.0, [p for p in trainable if p.ndim < 2]),
        ):
            if chosen:
                # lr 1 times the scheduler's factor: the factor is the rate itself
                groups.append({"params": chosen, "lr": 1.0, "weight_decay": decay, "part": part})
                lambdas.append(functools.partial(_group_rate, part=part, config=config))
    optimizer = torch.optim.AdamW(groups, eps=config.adam_eps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def _group_rate(step: int, part: str, config: FinetuneConfig) -> float:
    return phase_rates(step, config)[part]


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
    motion_only: bool = False,
) -> dict[str, float]:
    """One optimisation step on one batch (this process's share of it under DDP). With
    `motion_only` the text tower is frozen and still equal to its teacher, so the teacher's
    cached features stand in for it and the tether is off (MoCLIP's first phase)."""
    model.train()
    batch = batch.to(device)
    tokens = tokenizer(batch.texts).to(device)
    teacher_features = teacher(batch.texts).to(device)
    use_bf16 = config.bf16 and device.type == "cuda"
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
    )
    with autocast:
        frozen_text = teacher_features if motion_only else None
        text, motion, log_scale = model(tokens, batch.features, batch.mask, frozen_text)
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
    w_distill = 0.0 if motion_only else config.w_distill
    loss = weighted_loss(terms, config.w_contrastive, w_distill, config.w_align)
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
    """Train for config.steps steps, or config.epochs passes over `pairs` (from `start_step`);
    returns the per-step metrics. Steps before `config.motion_only_steps` train only the motion
    encoder (MoCLIP's first phase), the rest every part with the tether.

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
    # with epochs, the length of the run on this set (a passed-in scheduler must have been
    # made from the same resolved config, as `moclip.finetune.build_finetune` makes it)
    config = config.resolved(len(pairs), dist.get_world_size() if ddp else 1)
    if len(pairs) < config.batch_size:
        raise ValueError(f"{len(pairs)} pairs are fewer than one batch of {config.batch_size}")
    model.to(device)
    if ddp and not isinstance(model, DistributedDataParallel):
        model = DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            # the motion-only phase leaves the text tower without gradients
            find_unused_parameters=config.motion_only_share > 0,
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
            motion_only = step < config.motion_only_steps
            metrics = train_step(
                model, batch, tokenizer, teacher, optimizer, scheduler, config, device, motion_only
            )
            rates = phase_rates(step, config)
            metrics["lr_text"], metrics["lr_motion"] = rates["text"], rates["motion"]
            metrics["pairs_per_s"] = (
                (step - start_step + 1) * config.batch_size / max(time.monotonic() - started, 1e-9)
            )
            history.append(metrics)
            step += 1
            if on_step:
                on_step(step, metrics)
        epoch, skip = epoch + 1, 0
    return history
