"""Saving and loading the project's model files: atomic writes and checked reads."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


def save_state(path: Path | str, state: dict) -> Path:
    """torch.save to a temporary name, then rename: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(path: Path | str, what: str, version: int, how_to_make: str) -> dict:
    """The dict saved at `path`, on the CPU, after checking it is a `what` of format `version`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} not found; {how_to_make}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != version:
        raise ValueError(f"{path}: not a {what} file of format {version}")
    return state


def freeze(module: nn.Module, device: str | torch.device = "cpu") -> nn.Module:
    """Eval mode, no gradients, on `device`."""
    module.eval().to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module
