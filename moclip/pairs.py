"""(caption, motion) pairs of a MotionDataset as torch batches."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from moclip.data.dataset import MotionDataset


def stable_key(text: str) -> int:
    """A 63-bit integer from blake2b(text): equal captions, equal keys, on every process."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


class PairSet(Dataset):
    """Every (item, caption) pair, motions normalised with (mean, std) of the training split."""

    def __init__(
        self, data: MotionDataset, mean: np.ndarray | None = None, std: np.ndarray | None = None
    ) -> None:
        mean = data.mean if mean is None else mean
        std = data.std if std is None else std
        if mean is None or std is None:
            raise ValueError(
                f"{data.name}/{data.split}: no normalisation statistics; pass mean "
                f"and std from the training split (moclip.data.normalization)"
            )
        self.data = data
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.as_tensor(std, dtype=torch.float32)
        self.index = [
            (i, c) for i, item in enumerate(data.items) for c in range(len(item.captions))
        ]
        motion_numbers = {m: n for n, m in enumerate(data.motion_ids)}
        self.motion_key = [motion_numbers[item.motion_id] for item in data.items]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, str, int, int]:
        i, c = self.index[k]
        item = self.data.items[i]
        motion = (torch.from_numpy(item.features) - self.mean) / self.std
        text = item.captions[c].text
        return motion, text, self.motion_key[i], stable_key(text)


@dataclass
class Batch:
    features: torch.Tensor  # (B, T, D), zero after each motion's end
    mask: torch.Tensor  # (B, T) bool, True on real frames
    texts: list[str]
    motion_keys: torch.Tensor  # (B,) int64, equal for captions of one motion
    text_keys: torch.Tensor  # (B,) int64, equal for identical captions

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(
            self.features.to(device),
            self.mask.to(device),
            self.texts,
            self.motion_keys.to(device),
            self.text_keys.to(device),
        )


def pad_motions(motions: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, D) motions into (B, max T, D) with zeros after each end, and the mask."""
    longest = max(len(m) for m in motions)
    features = motions[0].new_zeros(len(motions), longest, motions[0].shape[-1])
    mask = torch.zeros(len(motions), longest, dtype=torch.bool)
    for b, motion in enumerate(motions):
        features[b, : len(motion)] = motion
        mask[b, : len(motion)] = True
    return features, mask


def normalized_batch(
    motions: Sequence[np.ndarray], mean: torch.Tensor, std: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (T_i, D) feature arrays -> padded (B, max T, D) of (x - mean) / std, and the mask."""
    return pad_motions([(torch.as_tensor(m, dtype=torch.float32) - mean) / std for m in motions])


def collate_pairs(samples: list[tuple[torch.Tensor, str, int, int]]) -> Batch:
    motions, texts, motion_keys, text_keys = zip(*samples)
    features, mask = pad_motions(list(motions))
    return Batch(features, mask, list(texts), torch.tensor(motion_keys), torch.tensor(text_keys))


def length_bucketed_batches(
    lengths: list[int], batch_size: int, generator: torch.Generator, window: int = 50
) -> list[list[int]]:
    """Shuffled batches of indices whose lengths are close: shuffle, sort each window of
    `window` batches by length, cut into batches, shuffle the batches. Padding, and so the
    cost of a step, falls to about the batch's own lengths; a remainder is left out."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    batches = []
    span = batch_size * window
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])
        batches += [
            chunk[k : k + batch_size] for k in range(0, len(chunk) - batch_size + 1, batch_size)
        ]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
