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
