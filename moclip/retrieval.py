"""Text-motion retrieval metrics of a MoCLIP on a held-out split, and teacher drift."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from moclip.data.dataset import MotionDataset
from moclip.metrics import r_precision
from moclip.model import MoCLIP
from moclip.pairs import normalized_batch
from moclip.text_encoders import TeacherCache, TextEmbedder, Tokenizer

RECALL_KS = (1, 2, 3, 5, 10)


def embed_texts(
    model: MoCLIP, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """(N, W) unit-norm text embeddings of the model's (fine-tuned) text tower; a caption
    that repeats (template captions do) is embedded once."""
    unique = list(dict.fromkeys(texts))
    row = {text: i for i, text in enumerate(unique)}
    embedded = F.normalize(TextEmbedder(model.text, tokenizer, batch_size)(unique), dim=-1)
    return embedded[[row[text] for text in texts]]


@torch.no_grad()
def embed_motions(
    model: MoCLIP,
    data: MotionDataset,
    mean: np.ndarray,
    std: np.ndarray,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """(M, W) unit-norm motion embeddings, one per item of `data`."""
    model.eval()
    mean_t, std_t = torch.as_tensor(mean), torch.as_tensor(std)
    out = []
    for i in range(0, len(data), batch_size):
        chunk = [item.features for item in data.items[i : i + batch_size]]
        features, mask = normalized_batch(chunk, mean_t, std_t)
        out.append(model.motion(features.to(device), mask.to(device)).float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


def recall_metrics(
    text: torch.Tensor, motion: torch.Tensor, text_item: torch.Tensor, ks: Sequence[int] = RECALL_KS
) -> dict[str, float]:
    """Text-to-motion and motion-to-text R@k and median rank over the whole split.

    rank_t2m(i) = 1 + #{m : s(i, m) > s(i, item(i))}; a motion's rank_m2t is that of its best
    ranked matching caption; R@k = mean(rank <= k).
    """
    sims = text @ motion.T
    true = sims[torch.arange(len(text)), text_item]
    t2m_rank = (sims > true[:, None]).sum(1) + 1
    correct = text_item[None, :] == torch.arange(len(motion))[:, None]  # (M, N)
    best_true = sims.T.masked_fill(~correct, float("-inf")).max(1).values
    m2t_rank = (sims.T > best_true[:, None]).sum(1) + 1
    metrics = {}
    for name, rank in (("t2m", t2m_rank), ("m2t", m2t_rank)):
        for k in ks:
            metrics[f"{name}_R@{k}"] = float((rank <= k).float().mean())
        metrics[f"{name}_median_rank"] = float(rank.float().median())
    return metrics


def teacher_drift(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """Mean cosine between fine-tuned and original text features of the same captions."""
    return float(F.cosine_similarity(student, teacher, dim=-1).mean())


def embed_split(
    model: MoCLIP,
    tokenizer: Tokenizer,
    data: MotionDataset,
    mean: np.ndarray,
    std: np.ndarray,
    device: torch.device | str = "cpu",
) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every caption of `data` and its motion's index, with both sides' unit embeddings:
    (texts, text_item, text_emb, motion_emb)."""
    texts, text_item = [], []
    for i, item in enumerate(data.items):
        for caption in item.captions:
            texts.append(caption.text)
            text_item.append(i)
    text_emb = embed_texts(model, tokenizer, texts)
    motion_emb = embed_motions(model, data, mean, std, device=device)
    return texts, torch.tensor(text_item), text_emb, motion_emb


def validation_recalls(
    model: MoCLIP,
    tokenizer: Tokenizer,
    data: MotionDataset,
    mean: np.ndarray,
    std: np.ndarray,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Recalls and median ranks over all of `data`'s captions: what checkpoint selection
    reads (no batch-32 R-precision, which needs 32 motions a validation split may lack)."""
    _, text_item, text_emb, motion_emb = embed_split(model, tokenizer, data, mean, std, device)
    return recall_metrics(text_emb, motion_emb, text_item)


def evaluate_retrieval(
    model: MoCLIP,
    tokenizer: Tokenizer,
    teacher: TeacherCache,
    data: MotionDataset,
    mean: np.ndarray,
    std: np.ndarray,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Every retrieval metric on `data`: recalls and median ranks over all captions, batch-32
    R-precision with one seeded caption per motion, and teacher drift."""
    texts, text_item_t, text_emb, motion_emb = embed_split(
        model, tokenizer, data, mean, std, device
    )
    text_item = text_item_t.tolist()
    metrics = recall_metrics(text_emb, motion_emb, text_item_t)
    rng = np.random.default_rng(seed)
    first = {i: k for k, i in reversed(list(enumerate(text_item)))}  # first caption index
    chosen = [first[i] + int(rng.integers(len(item.captions))) for i, item in enumerate(data.items)]
    metrics.update(r_precision(text_emb[chosen], motion_emb, seed=seed, distance="cosine"))
    metrics["teacher_drift"] = teacher_drift(text_emb, teacher(texts))
    metrics["num_texts"], metrics["num_motions"] = float(len(texts)), float(len(data))
    return metrics
