"""The action recogniser of action-conditioned motion generation (Action2Motion, Guo et al.
2020; ACTOR, Petrovich et al. 2021): a classifier trained on real motions of the training
subjects, whose penultimate features are the space of FID, Diversity and MultiModality, and
whose predictions give the recognition accuracy of generated motions. It reads only motion
features: it shares nothing with CLIP, MoCLIP or the text-motion evaluator.

Its input is the covariance descriptor of the joints (Cov3DJ, Hussein et al. 2013): joint
positions (as recorded, or held in place: see `FRAMES`) and velocities, their mean and
covariance over a temporal pyramid (the whole motion, halves, quarters), standardised with
the training statistics. Two layers map it to `feature_width` features and to class logits.
On MSR Action3D it was chosen over a convolution + GRU on the feature sequence, and over
positions without velocities, by accuracy on held-out training subjects
(`benchmarks/recognizer_quality.py`).

    python -m moclip.evaluation.recognizer --data /data/MSRAction3D --out recognizer.pt
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moclip.data.dataset import DatasetError, MotionDataset
from moclip.data.features import features_to_positions, in_place_positions
from moclip.metrics import diversity, fid, gaussian_stats
from moclip.optim import optimizer_step
from moclip.progress import progress_bar
from moclip.storage import freeze, load_state, save_state

RECOGNIZER_FORMAT = 1
# where the descriptor reads joint positions: "world" (as recorded: the root's path and turns
# included) or "in_place" (the root held over the origin on the floor, height and turns kept).
# "world" is the default: on held-out training subjects it recognises 0.762 against 0.658
# (benchmarks/recognizer_quality.py). "in_place" keeps a generated motion that walks off (a
# transfer study's corpus motions walk up to 8 m) from putting its descriptor far outside the
# recordings' range by its path alone, at that cost in recognition.
FRAMES = ("world", "in_place")


@dataclass(frozen=True)
class RecognizerConfig:
    levels: int = 3  # temporal pyramid: 1, 2, 4, ... segments
    velocities: bool = True  # joint velocities beside the positions
    feature_width: int = 64  # the space of FID: below the test set's size
    dropout: float = 0.5
    steps: int = 400
    lr: float = 1e-3
    weight_decay: float = 0.05
    frame: str = "world"  # one of FRAMES

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"recognizer frame must be one of {FRAMES}, got {self.frame!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_top_k(logits: np.ndarray, labels: Sequence[int], k: int) -> float:
    """Share of rows whose label is among the k largest logits."""
    top = np.argsort(-np.asarray(logits), axis=1)[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(1).mean())


def covariance_descriptor(
    features: np.ndarray,
    num_joints: int,
    levels: int = 3,
    velocities: bool = True,
    frame: str = "world",
) -> np.ndarray:
    """Per segment s of a `levels`-deep temporal pyramid: [mean_s(x), upper(Cov_s(x))], x_t =
    the J joint positions in `frame` (and their velocities, 20 fps units) of frame t."""
    to_positions = in_place_positions if frame == "in_place" else features_to_positions
    positions = to_positions(features, num_joints)
    x = positions.reshape(len(positions), -1)
    if velocities:
        x = np.concatenate((x, np.gradient(x, axis=0) if len(x) > 1 else 0 * x), axis=1)
    upper = np.triu_indices(x.shape[1])
    frames = len(x)
    parts = []
    for level in range(levels):
        count = 2**level
        for k in range(count):
            start = int(k * frames / count)
            segment = x[start : max(start + 2, int((k + 1) * frames / count))]
            if len(segment) < 2:  # a motion shorter than the pyramid: its last two frames
                segment = x[-2:] if frames >= 2 else np.repeat(x, 2, axis=0)
            parts += [segment.mean(0), np.cov(segment, rowvar=False)[upper]]
    return np.concatenate(parts).astype(np.float32)


def descriptor(features: np.ndarray, num_joints: int, config: RecognizerConfig) -> np.ndarray:
    """`covariance_descriptor` with `config`'s pyramid, velocities and frame."""
    return covariance_descriptor(
        features, num_joints, config.levels, config.velocities, config.frame
    )


class ActionRecognizer(nn.Module):
    """Standardised covariance descriptor -> linear -> LeakyReLU (the `feature_width`
    features) -> dropout -> linear -> class logits."""

    def __init__(
        self,
        num_joints: int,
        num_classes: int,
        descriptor_mean: np.ndarray,
        descriptor_std: np.ndarray,
        config: RecognizerConfig = RecognizerConfig(),
    ) -> None:
        super().__init__()
        self.config = config
        self.num_joints = num_joints
        self.num_classes = num_classes
        self.register_buffer("mean", torch.as_tensor(descriptor_mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(descriptor_std, dtype=torch.float32))
        width = config.feature_width
        self.features = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(len(descriptor_mean), width), nn.LeakyReLU(0.2)
        )
        self.classify = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(width, num_classes))
        # Filled after training: features of real test motions, the reference of FID.
        self.register_buffer("reference_mu", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("reference_sigma", torch.zeros(width, width, dtype=torch.float64))

    def describe(self, motions: Sequence[np.ndarray]) -> torch.Tensor:
        """Raw (T_i, D) feature arrays -> (N, descriptor) standardised descriptors."""
        rows = [descriptor(m, self.num_joints, self.config) for m in motions]
        x = torch.from_numpy(np.stack(rows)).to(self.mean.device)
        return (x - self.mean) / self.std

    def forward(self, descriptors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of standardised descriptors."""
        embedded = self.features(descriptors)
        return embedded, self.classify(embedded)

    @torch.no_grad()
    def encode(
        self, motions: Sequence[np.ndarray], batch_size: int = 256
    ) -> tuple[np.ndarray, np.ndarray]:
        """Raw (T_i, D) feature arrays -> ((N, feature_width) features, (N, classes) logits)."""
        self.eval()
        features, logits = [], []
        for i in range(0, len(motions), batch_size):
            embedded, scores = self(self.describe(motions[i : i + batch_size]))
            features.append(embedded.cpu())
            logits.append(scores.cpu())
        return (
            torch.cat(features).numpy().astype(np.float64),
            torch.cat(logits).numpy().astype(np.float64),
        )


def labels_of(data: MotionDataset) -> list[int]:
    """Every item's class label, or a DatasetError if an item has none."""
    missing = [item.item_id for item in data.items if item.label is None]
    if missing:
        raise DatasetError(
            f"{data.name}/{data.split}: {len(missing)} item(s) without a class label, e.g. "
            f"{missing[0]!r}; the recogniser needs labelled data (MSR Action3D)"
        )
    return [int(item.label) for item in data.items]


def train_recognizer(
    train: MotionDataset,
    num_classes: int,
    config: RecognizerConfig = RecognizerConfig(),
    seed: int = 0,
    log_every: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[ActionRecognizer, list[float]]:
    """Full-batch cross-entropy on the training split's descriptors (AdamW, cosine decay);
    the frozen recogniser comes back on the CPU."""
    torch.manual_seed(seed)
    labels = torch.tensor(labels_of(train), device=device)
    joints = train.skeleton.num_joints
    rows = np.stack([descriptor(item.features, joints, config) for item in train.items])
    mean, std = rows.mean(0), np.maximum(rows.std(0), 1e-6)
    model = ActionRecognizer(joints, num_classes, mean, std, config).to(device)
    descriptors = (torch.from_numpy(rows).to(device) - model.mean) / model.std
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / config.steps)))
    )
    losses: list[float] = []
    started = time.monotonic()
    model.train()
    bar = progress_bar(config.steps, "recogniser", enabled=bool(log_every))
    for step in range(1, config.steps + 1):
        loss = F.cross_entropy(model(descriptors)[1], labels)
        optimizer_step(loss, model.parameters(), optimizer, 1.0, scheduler)
        losses.append(loss.item())
        bar.update(1)
        if log_every and step % log_every == 0:
            print(
                f"[recogniser] step {step}/{config.steps} loss {np.mean(losses[-log_every:]):.3f}"
                f" ({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    bar.close()
    return freeze(model), losses


def real_floors(
    train_features: np.ndarray, test_features: np.ndarray, seed: int = 0, splits: int = 10
) -> dict[str, float]:
    """FID between real motions' recogniser features: the training subjects against the
    test subjects (inflated: the recogniser was fitted to the training motions, whose
    features it spreads further), and two halves of the test subjects' motions (unseen data
    on both sides, at half the sample size): mean and standard deviation over `splits`
    seeded random halvings."""
    rng = np.random.default_rng(seed)
    half = len(test_features) // 2
    halves = []
    for _ in range(splits):
        order = rng.permutation(len(test_features))
        halves.append(fid(test_features[order[:half]], test_features[order[half:]]))
    return {
        "fid_train_vs_test": fid(train_features, test_features),
        "fid_test_halves": float(np.mean(halves)),
        "fid_test_halves_sd": float(np.std(halves, ddof=1)),
    }


def recognizer_figures(
    recognizer: ActionRecognizer, train: MotionDataset, test: MotionDataset, seed: int = 0
) -> dict[str, float]:
    """The recogniser on real motions, stored with it: cross-subject accuracy (top-1, top-3)
    on the test subjects, their Diversity, and the real-versus-real FID floors
    (`real_floors`). Stores the test features' Gaussian as the
    reference of FID."""
    features, logits = recognizer.encode([item.features for item in test.items])
    labels = labels_of(test)
    mu, sigma = gaussian_stats(features)
    recognizer.reference_mu.copy_(torch.from_numpy(mu))
    recognizer.reference_sigma.copy_(torch.from_numpy(sigma))
    train_features, train_logits = recognizer.encode([item.features for item in train.items])
    return {
        "accuracy_top1": accuracy_top_k(logits, labels, 1),
        "accuracy_top3": accuracy_top_k(logits, labels, 3),
        "train_accuracy_top1": accuracy_top_k(train_logits, labels_of(train), 1),
        "chance_top1": 1.0 / recognizer.num_classes,
        "diversity": diversity(features, seed=seed),
        **real_floors(train_features, features, seed),
        "num_train_motions": float(len(train)),
        "num_test_motions": float(len(test)),
        "feature_width": float(recognizer.config.feature_width),
    }


def save_recognizer(
    path: Path | str, recognizer: ActionRecognizer, data_fingerprint: str, figures: dict
) -> Path:
    """Write weights, config, data fingerprint and figures on real motions atomically."""
    return save_state(
        path,
        {
            "format": RECOGNIZER_FORMAT,
            "model": recognizer.state_dict(),
            "config": recognizer.config.to_dict(),
            "num_joints": recognizer.num_joints,
            "num_classes": recognizer.num_classes,
            "data_fingerprint": data_fingerprint,
            "figures": figures,
        },
    )


def load_recognizer(
    path: Path | str, device: str | torch.device = "cpu"
) -> tuple[ActionRecognizer, dict]:
    """(frozen recogniser, stored state: data fingerprint, figures, ...)."""
    state = load_state(
        path,
        "action recogniser",
        RECOGNIZER_FORMAT,
        "train one with python -m moclip.evaluation.recognizer",
    )
    model = state["model"]
    recognizer = ActionRecognizer(
        state["num_joints"],
        state["num_classes"],
        model["mean"].numpy(),
        model["std"].numpy(),
        RecognizerConfig(**state["config"]),
    )
    recognizer.load_state_dict(model)
    return freeze(recognizer, device), state


def main(argv: list[str] | None = None) -> int:
    from moclip.data.action3d import ACTIONS, load_action3d

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the MSR Action3D folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=RecognizerConfig.steps)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        train = load_action3d(args.data, "train")
        test = load_action3d(args.data, "test")
    except DatasetError as err:
        parser.error(str(err))
    started = time.monotonic()
    config = RecognizerConfig(steps=args.steps)
    recognizer, _ = train_recognizer(train, len(ACTIONS), config, args.seed, log_every=100)
    figures = recognizer_figures(recognizer, train, test, args.seed)
    figures["train_seconds"] = round(time.monotonic() - started, 1)
    save_recognizer(args.out, recognizer, train.fingerprint(), figures)
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({"recognizer": str(args.out), **figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
