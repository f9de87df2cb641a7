"""The optimisation step every trainer in the project takes."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def optimizer_step(
    loss: torch.Tensor,
    parameters: Iterable[torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
    max_norm: float | None = 1.0,
    scheduler=None,
) -> torch.Tensor:
    """zero_grad, backward, clip the gradients' global norm to `max_norm` (None: no clip),
    step the optimiser (and scheduler); returns the norm before clipping."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(parameters), max_norm or float("inf"))
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return norm


def ema_decay_at(step: int, decay: float) -> float:
    """d_t = min(decay, (1 + t) / (10 + t)): early averages forget the random start fast."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(averages: list[torch.Tensor], values: list[torch.Tensor], decay: float) -> None:
    """a <- d a + (1 - d) v for each pair, in place."""
    torch._foreach_lerp_(averages, values, 1.0 - decay)
