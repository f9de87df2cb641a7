"""MoCLIP: a CLIP text encoder and a motion encoder trained into one embedding space."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moclip.losses import INIT_LOGIT_SCALE
from moclip.motion_encoder import MotionEncoderConfig, build_motion_encoder
from moclip.skeletons import Skeleton, get_skeleton
from moclip.storage import load_state, save_state
from moclip.text_encoders import TextEncoder, TextEncoderSpec, Tokenizer, build_text_encoder

CHECKPOINT_FORMAT = 1


class MoCLIP(nn.Module):
    """Student text encoder + motion encoder + learnable log temperature."""

    def __init__(self, text: TextEncoder, motion: nn.Module) -> None:
        super().__init__()
        self.text = text
        self.motion = motion
        self.log_scale = nn.Parameter(torch.tensor(INIT_LOGIT_SCALE))

    def forward(
        self,
        tokens: torch.Tensor,
        features: torch.Tensor,
        mask: torch.Tensor,
        text_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text, motion, log scale); `text_features` stand in for a frozen text tower's."""
        text = self.text(tokens) if text_features is None else text_features
        return text, self.motion(features, mask), self.log_scale


def build_moclip(
    spec: TextEncoderSpec,
    skeleton: Skeleton,
    motion_config: MotionEncoderConfig = MotionEncoderConfig(),
    seed: int = 0,
    load_weights: bool = True,
) -> tuple[MoCLIP, Tokenizer]:
    """A MoCLIP whose motion head is initialised from `seed` (the text tower from its weights)."""
    text, tokenizer, width = build_text_encoder(spec, load_weights=load_weights)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        motion = build_motion_encoder(skeleton, width, motion_config)
        model = MoCLIP(text, motion)
    return model, tokenizer


@dataclass
class CheckpointMeta:
    step: int
    text_spec: TextEncoderSpec
    motion_config: MotionEncoderConfig
    skeleton: str
    train_config: dict
    data_fingerprint: str
    mean: np.ndarray
    std: np.ndarray


def save_checkpoint(
    path: Path | str,
    model: MoCLIP,
    meta: CheckpointMeta,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    extra: dict | None = None,
) -> Path:
    """Write weights, configs, data fingerprint, step (and optimiser state, and `extra`: the
    trainer's own state, such as the validation's best so far) atomically."""
    model = getattr(model, "module", model)  # unwrap DDP
    return save_state(
        path,
        {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "step": meta.step,
            "text_spec": meta.text_spec.to_dict(),
            "motion_config": meta.motion_config.to_dict(),
            "skeleton": meta.skeleton,
            "train_config": meta.train_config,
            "data_fingerprint": meta.data_fingerprint,
            "mean": torch.as_tensor(meta.mean),
            "std": torch.as_tensor(meta.std),
            "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None,
            "extra": extra or {},
        },
    )


def load_checkpoint(
    path: Path | str, device: str | torch.device = "cpu"
) -> tuple[MoCLIP, Tokenizer, CheckpointMeta, dict]:
    """(model, tokenizer, meta, raw state) from a checkpoint of save_checkpoint."""
    state = load_state(
        path, "MoCLIP checkpoint", CHECKPOINT_FORMAT, "fine-tune one with python -m moclip.finetune"
    )
    meta = CheckpointMeta(
        step=state["step"],
        text_spec=TextEncoderSpec.from_dict(state["text_spec"]),
        motion_config=MotionEncoderConfig(**state["motion_config"]),
        skeleton=state["skeleton"],
        train_config=state["train_config"],
        data_fingerprint=state["data_fingerprint"],
        mean=state["mean"].numpy(),
        std=state["std"].numpy(),
    )
    model, tokenizer = build_moclip(
        meta.text_spec, get_skeleton(meta.skeleton), meta.motion_config, load_weights=False
    )
    model.load_state_dict(state["model"])
    return model.to(device), tokenizer, meta, state
