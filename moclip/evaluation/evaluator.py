"""The independent evaluator: its own vocabulary, word embeddings and GRU text encoder, and a
motion encoder over the feature sequence (temporal convolutions, then a GRU), as Guo et al.
2022. It shares nothing with CLIP or MoCLIP. Features are unit vectors times `scale`, so
Euclidean ranking (the protocol's R-precision) and cosine training agree.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from moclip.data.captions import tokenize
from moclip.pairs import normalized_batch
from moclip.prompts import clean_prompts
from moclip.storage import freeze, load_state, save_state

PAD, UNK = "<pad>", "<unk>"
EVALUATOR_FORMAT = 1


@dataclass(frozen=True)
class Vocabulary:
    """Words of the training captions (seen at least `min_count` times), plus <pad> and <unk>."""

    words: tuple[str, ...]

    @classmethod
    def from_captions(cls, captions: Sequence[str], min_count: int = 1) -> "Vocabulary":
        counts = Counter(word for caption in captions for word in tokenize(caption))
        kept = sorted(w for w, n in counts.items() if n >= min_count)
        return cls((PAD, UNK, *kept))

    def encode(self, captions: Sequence[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L) word ids padded with 0 and (B,) lengths (at least 1)."""
        index = {w: i for i, w in enumerate(self.words)}
        rows = [[index.get(w, 1) for w in tokenize(c)][:max_words] or [1] for c in captions]
        ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row)
        return ids, torch.tensor([len(r) for r in rows])


@dataclass(frozen=True)
class EvaluatorConfig:
    word_width: int = 128
    hidden: int = 256
    out_width: int = 256
    conv_width: int = 256
    max_words: int = 40
    scale: float = 10.0

    def to_dict(self) -> dict:
        return asdict(self)


class TextGRU(nn.Module):
    """Word embeddings -> bidirectional GRU -> both final states -> linear."""

    def __init__(self, vocab_size: int, config: EvaluatorConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.word_width, padding_idx=0)
        self.gru = nn.GRU(config.word_width, config.hidden, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(
            nn.Linear(2 * config.hidden, config.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden, config.out_width),
        )

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(
            self.embed(ids), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, last = self.gru(packed)
        return self.out(torch.cat((last[0], last[1]), dim=-1))


class MotionConvGRU(nn.Module):
    """Two stride-2 temporal convolutions (4x shorter) -> bidirectional GRU -> linear."""

    def __init__(self, feature_dim: int, config: EvaluatorConfig) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv1d(feature_dim, config.conv_width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv1d(config.conv_width, config.conv_width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.gru = nn.GRU(config.conv_width, config.hidden, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(
            nn.Linear(2 * config.hidden, config.hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(config.hidden, config.out_width),
        )

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.conv(features.transpose(1, 2)).transpose(1, 2)
        reduced = ((lengths - 2) // 2 + 1 - 2) // 2 + 1  # two convs: k=4, s=2, p=1
        reduced = reduced.clamp(min=1, max=x.shape[1])
        packed = pack_padded_sequence(x, reduced.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.gru(packed)
        return self.out(torch.cat((last[0], last[1]), dim=-1))


class Evaluator(nn.Module):
    """Text and motion features in one space, from the evaluator's own encoders."""

    def __init__(
        self,
        vocab: Vocabulary,
        feature_dim: int,
        mean: np.ndarray,
        std: np.ndarray,
        config: EvaluatorConfig = EvaluatorConfig(),
    ) -> None:
        super().__init__()
        self.vocab = vocab
        self.config = config
        self.feature_dim = feature_dim
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.text = TextGRU(len(vocab.words), config)
        self.motion = MotionConvGRU(feature_dim, config)
        # Filled after training: features of real test motions, the reference of FID.
        self.register_buffer("reference_mu", torch.zeros(config.out_width, dtype=torch.float64))
        self.register_buffer(
            "reference_sigma", torch.zeros(config.out_width, config.out_width, dtype=torch.float64)
        )

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) * self.config.scale

    def encode_text_tokens(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self._finish(self.text(ids, lengths))

    def encode_motion_batch(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Features (B, T, D) already normalised with the evaluator's statistics."""
        return self._finish(self.motion(features, mask.sum(1)))

    @torch.no_grad()
    def encode_texts(self, captions: Sequence[str], batch_size: int = 512) -> np.ndarray:
        captions = clean_prompts(captions)
        self.eval()
        device = self.mean.device
        out = []
        for i in range(0, len(captions), batch_size):
            ids, lengths = self.vocab.encode(captions[i : i + batch_size], self.config.max_words)
            out.append(self.encode_text_tokens(ids.to(device), lengths).cpu())
        return torch.cat(out).numpy().astype(np.float64)

    @torch.no_grad()
    def encode_motions(self, motions: Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Raw (not normalised) feature arrays (T_i, D) -> (N, out_width) evaluator features."""
        self.eval()
        device = self.mean.device
        mean, std = self.mean.cpu(), self.std.cpu()
        out = []
        for i in range(0, len(motions), batch_size):
            features, mask = normalized_batch(motions[i : i + batch_size], mean, std)
            out.append(self.encode_motion_batch(features.to(device), mask.to(device)).cpu())
        return torch.cat(out).numpy().astype(np.float64)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


def save_evaluator(
    path: Path | str, evaluator: Evaluator, data_fingerprint: str, figures: dict
) -> Path:
    """Write weights, vocabulary, config, data fingerprint and ground-truth figures atomically."""
    return save_state(
        path,
        {
            "format": EVALUATOR_FORMAT,
            "model": evaluator.state_dict(),
            "vocab": list(evaluator.vocab.words),
            "config": evaluator.config.to_dict(),
            "feature_dim": evaluator.feature_dim,
            "data_fingerprint": data_fingerprint,
            "figures": figures,
        },
    )


def load_evaluator(path: Path | str, device: str | torch.device = "cpu") -> tuple[Evaluator, dict]:
    """(frozen evaluator, stored state: data fingerprint, ground-truth figures, ...)."""
    state = load_state(
        path,
        "evaluator",
        EVALUATOR_FORMAT,
        "train one with python -m moclip.evaluation.train_evaluator",
    )
    config = EvaluatorConfig(**state["config"])
    model = state["model"]
    evaluator = Evaluator(
        Vocabulary(tuple(state["vocab"])),
        state["feature_dim"],
        model["mean"].numpy(),
        model["std"].numpy(),
        config,
    )
    evaluator.load_state_dict(model)
    return freeze(evaluator, device), state
