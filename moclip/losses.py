"""MoCLIP's loss terms as pure functions of embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = 100.0


def similarity_logits(
    text: torch.Tensor, motion: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """S_ij = min(exp(s), 100) * cos(t_i, m_j)."""
    scale = log_scale.exp().clamp(max=MAX_LOGIT_SCALE)
    return scale * F.normalize(text, dim=-1) @ F.normalize(motion, dim=-1).T


def false_negative_mask(
    motion_keys: torch.Tensor | None,
    text_keys: torch.Tensor | None,
    size: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(B, B) bool, True off the diagonal where pair i and pair j share a motion or a caption:
    such a pair is not a negative of the other."""
    mask = torch.zeros(size, size, dtype=torch.bool, device=device)
    for keys in (motion_keys, text_keys):
        if keys is not None:
            mask |= keys[:, None] == keys[None, :]
    mask.fill_diagonal_(False)
    return mask


def contrastive_loss(
    text: torch.Tensor,
    motion: torch.Tensor,
    log_scale: torch.Tensor,
    motion_keys: torch.Tensor | None = None,
    text_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """L = (CE(S, I) + CE(S^T, I)) / 2 over the scaled cosine matrix S, false negatives removed.

    Off-diagonal entries whose pairs share a motion (`motion_keys`) or an identical caption
    (`text_keys`) are excluded from both softmaxes instead of being pushed apart.
    """
    logits = similarity_logits(text, motion, log_scale)
    excluded = false_negative_mask(motion_keys, text_keys, len(logits), logits.device)
    logits = logits.masked_fill(excluded, float("-inf"))
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L = mean_{i,d} (s_id/|s_i| - t_id/|t_i|)^2: MoCLIP's tether, the authors' F.mse_loss on
    unit features, a mean over the B x D elements (so its weight is the paper's lambda)."""
    return F.mse_loss(F.normalize(student, dim=-1), F.normalize(teacher, dim=-1))


def alignment_loss(text: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """L = mean_i (1 - cos(t_i, m_i)): the paper's third term, pulling each text embedding
    towards its paired motion embedding (MoCLIP, arXiv 2505.10810)."""
    return (1.0 - F.cosine_similarity(text, motion, dim=-1)).mean()


def weighted_loss(
    terms: dict[str, torch.Tensor],
    w_contrastive: float = 1.0,
    w_distill: float = 0.6,
    w_align: float = 1.0,
) -> torch.Tensor:
    """L = w_c L_con + w_d L_distill + w_a L_align, from terms named contrastive/distill/align
    (defaults: the authors' L_con + 0.6 L_distill + L_align)."""
    return (
        w_contrastive * terms["contrastive"]
        + w_distill * terms["distill"]
        + w_align * terms["align"]
    )
