"""Train the diffusion generator once, conditioned on the original (not fine-tuned) encoder.

    python -m moclip.generation.train_generator --data DIR --out FILE [--encoder hf|tiny]
        [--steps 3000] [--batch-size 64] [--ema-decay 0] [--seed 0]

Caption embeddings come from the frozen original encoder and are computed once up front.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from moclip.data.dataset import DatasetError, MotionDataset, load_dataset
from moclip.generation.diffusion import DiffusionConfig, DiffusionGenerator, save_generator
from moclip.optim import ema_decay_at, ema_update, optimizer_step
from moclip.pairs import PairSet, collate_pairs, length_bucketed_batches
from moclip.progress import progress_bar
from moclip.text_encoders import (
    PrecomputedEmbedder,
    TextEmbedder,
    TextEncoderSpec,
    build_text_encoder,
)

GENERATOR_LR = 2e-4


def train_generator(
    train: MotionDataset,
    embedder: TextEmbedder,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = GENERATOR_LR,
    seed: int = 0,
    config: DiffusionConfig = DiffusionConfig(),
    log_every: int = 100,
    device: torch.device | str = "cpu",
) -> tuple[DiffusionGenerator, list[float]]:
    """The generator (on `device`) and its per-step losses. With `config.ema_decay` > 0 the
    returned weights are the exponential moving average of the trained ones."""
    embedded = _embed_captions(train, embedder, log_every)
    torch.manual_seed(seed)
    width = next(iter(embedded.values())).shape[-1]
    generator = DiffusionGenerator(
        train.skeleton.feature_dim, width, train.mean, train.std, config, embedder.identity
    )
    generator.to(device)
    losses = _train(generator, train, embedded, steps, batch_size, lr, seed, log_every, device)
    return generator, losses


def adapt_generator(
    generator: DiffusionGenerator,
    train: MotionDataset,
    embedder: TextEmbedder,
    steps: int,
    lr: float = GENERATOR_LR / 20,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> tuple[DiffusionGenerator, list[float]]:
    """A copy of `generator` trained on for `steps` steps on `train` conditioned on `embedder`'s
    features (a fine-tuned encoder's), at `lr` (the MoCLIP authors' examples continue their
    generators at a twentieth of the learning rate): the adapted arm. `generator` is untouched."""
    adapted = copy.deepcopy(generator)
    for parameter in adapted.parameters():
        parameter.requires_grad_(True)
    adapted.encoder_id = embedder.identity
    adapted.to(device)
    embedded = _embed_captions(train, embedder, log_every=0)
    torch.manual_seed(seed)  # dropout's draws
    losses = _train(adapted, train, embedded, steps, batch_size, lr, seed, 0, device)
    return adapted, losses


def _embed_captions(train: MotionDataset, embedder: TextEmbedder, log_every: int) -> dict:
    captions = sorted({c.text for item in train.items for c in item.captions})
    started = time.monotonic()
    embedded = dict(zip(captions, embedder(captions)))
    if log_every:
        print(
            f"[generator] embedded {len(captions)} captions in "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )
    return embedded


def _train(
    generator: DiffusionGenerator,
    train: MotionDataset,
    embedded: dict,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    log_every: int,
    device: torch.device | str,
) -> list[float]:
    """`steps` AdamW steps of the denoising loss on `train`'s pairs (length-bucketed batches),
    the EMA of the weights kept where `generator.config.ema_decay` > 0; leaves it in eval mode."""
    config = generator.config
    pairs = PairSet(train)
    started = time.monotonic()
    optimizer = torch.optim.AdamW(generator.parameters(), lr=lr, weight_decay=1e-4)
    sampler = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    # Averaged weights sample better than the last ones of a short, noisy training run.
    # Detached views share the parameters' storage, so they follow the optimiser's updates.
    weights = [p.detach() for p in generator.parameters()]
    averages = [w.clone() for w in weights] if config.ema_decay else []
    generator.train()
    lengths = [train.items[i].num_frames for i, _ in pairs.index]
    bar = progress_bar(steps, "generator", enabled=bool(log_every))
    while len(losses) < steps:
        for rows in length_bucketed_batches(lengths, batch_size, sampler):
            batch = collate_pairs([pairs[i] for i in rows]).to(device)
            text = torch.stack([embedded[t] for t in batch.texts]).to(device)
            loss = generator.training_loss(batch.features, batch.mask, text, sampler)
            optimizer_step(loss, generator.parameters(), optimizer, 1.0)
            losses.append(loss.item())
            bar.update(1)
            if averages:
                ema_update(averages, weights, ema_decay_at(len(losses), config.ema_decay))
            if log_every and len(losses) % log_every == 0:
                print(
                    f"[generator] step {len(losses)}/{steps} loss "
                    f"{np.mean(losses[-log_every:]):.4f} ({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
            if len(losses) >= steps:
                break
    bar.close()
    for weight, average in zip(weights, averages):
        weight.copy_(average)
    generator.eval()
    return losses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--encoder", choices=("hf", "tiny", "open_clip"), default="hf")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument(
        "--frames-per-token", type=int, default=1, help="frames folded into one token"
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=DiffusionConfig.ema_decay,
        help="keep an exponential moving average of the weights and save it (0: the last weights)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--embeddings",
        type=Path,
        help="precomputed caption embeddings (.npz of TeacherCache.save) instead of an encoder",
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    try:
        train = load_dataset(args.data, "train")
        spec = TextEncoderSpec(kind=args.encoder, model=args.model, pretrained=args.pretrained)
        config = DiffusionConfig(
            width=args.width,
            layers=args.layers,
            frames_per_token=args.frames_per_token,
            ema_decay=args.ema_decay,
        )
    except (DatasetError, ValueError) as err:
        parser.error(str(err))
    if args.embeddings:
        embedder = PrecomputedEmbedder.load(args.embeddings)
    else:
        encoder, tokenizer, _ = build_text_encoder(spec)
        embedder = TextEmbedder(encoder, tokenizer)
    started = time.monotonic()
    generator, losses = train_generator(
        train,
        embedder,
        args.steps,
        args.batch_size,
        seed=args.seed,
        config=config,
        device=args.device,
    )
    summary = {
        "steps": args.steps,
        "final_loss": float(np.mean(losses[-100:])),
        "train_seconds": round(time.monotonic() - started, 1),
        "text_encoder": spec.to_dict() if not args.embeddings else str(args.embeddings),
    }
    save_generator(args.out, generator.cpu(), train.fingerprint(), summary)
    print(json.dumps({"generator": str(args.out), **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
