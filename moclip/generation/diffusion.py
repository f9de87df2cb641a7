"""A text-conditioned motion diffusion model in the manner of MDM (Tevet et al. 2023).

A transformer over frames, with a timestep token and a text token in front, predicts the clean
motion x0 from a noised one; cosine noise schedule; classifier-free guidance learnt through
condition dropout; DDIM sampling with a chosen number of steps. The text token is the
unit-normalised pooled embedding of whatever encoder of the text-encoder interface is plugged
in, so a fine-tuned encoder that stays close to the original (distillation) can replace it
without retraining.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from moclip.generation.base import MotionGenerator
from moclip.motion_encoder import sinusoidal_positions
from moclip.pairs import pad_motions
from moclip.storage import freeze, load_state, save_state
from moclip.text_encoders import TextEmbedder

GENERATOR_FORMAT = 1


# how motions are drawn from trained weights, not how the weights are trained
SAMPLING_FIELDS = ("sample_steps", "guidance", "sample_batch")


@dataclass(frozen=True)
class DiffusionConfig:
    width: int = 256
    layers: int = 4
    heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    diffusion_steps: int = 1000
    cond_dropout: float = 0.1  # share of training samples without text (for guidance)
    # > 0: train a moving average of the weights and save that (0: the last weights). Off by
    # default: on the 5,000-motion corpus 0.999 helped after 3,000 steps and hurt after 5,000,
    # where the average lags a model still improving (benchmarks/RESULTS.md)
    ema_decay: float = 0.0
    max_frames: int = 200
    # consecutive frames folded into one transformer token: attention and the layers' cost
    # shrink with the sequence, which is what makes a useful generator trainable on a CPU
    frames_per_token: int = 1
    sample_steps: int = 50  # DDIM steps at generation
    guidance: float = 2.5  # classifier-free guidance scale at generation
    # motions sampled together, grouped by length so little compute goes to padding
    sample_batch: int = 8

    def __post_init__(self) -> None:
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be a multiple of heads {self.heads}")
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.frames_per_token < 1:
            raise ValueError(f"frames_per_token must be >= 1, got {self.frames_per_token}")
        if self.sample_batch < 1:
            raise ValueError(f"sample_batch must be >= 1, got {self.sample_batch}")
        if not 1 <= self.sample_steps <= self.diffusion_steps:
            raise ValueError(
                f"sample_steps must be in [1, {self.diffusion_steps}], got {self.sample_steps}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    def weights_dict(self) -> dict:
        """`to_dict` with the sampling settings (`SAMPLING_FIELDS`) at their defaults: what
        the trained weights depend on, to key a cache of them by. Defaults rather than left
        out, so that a key made before for a config with default sampling stays the same."""
        defaults = DiffusionConfig()
        return {**self.to_dict(), **{name: getattr(defaults, name) for name in SAMPLING_FIELDS}}


def cosine_alpha_bar(steps: int, s: float = 0.008) -> torch.Tensor:
    """abar_t = f(t)/f(0), f(t) = cos^2(((t/T) + s)/(1 + s) * pi/2), t = 1..T, with each
    beta_t = 1 - abar_t/abar_{t-1} clipped at 0.999 (Nichol and Dhariwal 2021)."""
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - betas, dim=0)


class MotionDenoiser(nn.Module):
    """(x_t, t, text or none, mask) -> predicted x0, all (B, T, D); each token holds
    `frames_per_token` consecutive frames."""

    def __init__(self, feature_dim: int, text_width: int, config: DiffusionConfig) -> None:
        super().__init__()
        w = config.width
        self.config = config
        patch = config.frames_per_token
        max_tokens = -(-config.max_frames // patch)
        self.in_proj = nn.Linear(patch * feature_dim, w)
        self.time_mlp = nn.Sequential(nn.Linear(w, w), nn.SiLU(), nn.Linear(w, w))
        self.text_proj = nn.Linear(text_width, w)
        self.null_text = nn.Parameter(torch.zeros(w))
        self.register_buffer("positions", sinusoidal_positions(max_tokens + 2, w), persistent=False)
        self.register_buffer(
            "step_codes", sinusoidal_positions(config.diffusion_steps, w), persistent=False
        )
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                w,
                config.heads,
                config.ff_mult * w,
                config.dropout,
                batch_first=True,
                norm_first=True,
                activation="gelu",
            )
            for _ in range(config.layers)
        )
        self.out_norm = nn.LayerNorm(w)
        self.out_proj = nn.Linear(w, patch * feature_dim)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        use_text: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        batch, frames, dim = x.shape
        patch = self.config.frames_per_token
        spare = -frames % patch
        # A token is valid when any of its frames is. Padded frames enter as zeros, so a
        # motion's last token reads the same whatever it is batched with.
        x = F.pad(x * mask[..., None], (0, 0, 0, spare)).reshape(batch, -1, patch * dim)
        valid = F.pad(mask, (0, spare)).reshape(batch, -1, patch).any(-1)
        time_token = self.time_mlp(self.step_codes[t])
        text_token = torch.where(
            use_text[:, None], self.text_proj(text), self.null_text.expand(batch, -1)
        )
        tokens = torch.cat((time_token[:, None], text_token[:, None], self.in_proj(x)), dim=1)
        tokens = tokens + self.positions[: tokens.shape[1]]
        padding = torch.cat(
            (torch.zeros(batch, 2, dtype=torch.bool, device=x.device), ~valid), dim=1
        )
        for layer in self.layers:
            tokens = layer(tokens, src_key_padding_mask=padding)
        out = self.out_proj(self.out_norm(tokens[:, 2:]))
        return out.reshape(batch, -1, dim)[:, :frames]


class DiffusionGenerator(nn.Module, MotionGenerator):
    """The denoiser with its schedule, the data statistics and the conditioning encoder's id."""

    def __init__(
        self,
        feature_dim: int,
        text_width: int,
        mean: np.ndarray,
        std: np.ndarray,
        config: DiffusionConfig = DiffusionConfig(),
        encoder_id: str = "",
    ) -> None:
        super().__init__()
        self.config = config
        self.feature_dim = feature_dim
        self.text_width = text_width
        self.encoder_id = encoder_id
        self.denoiser = MotionDenoiser(feature_dim, text_width, config)
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.register_buffer("alpha_bar", cosine_alpha_bar(config.diffusion_steps).float())

    def training_loss(
        self,
        x0: torch.Tensor,
        mask: torch.Tensor,
        text: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """E ||x0 - D(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t, c)||^2 over valid frames, with
        the text dropped for a `cond_dropout` share of the batch."""
        batch = len(x0)
        device = x0.device
        t = torch.randint(0, self.config.diffusion_steps, (batch,), generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        abar = self.alpha_bar[t][:, None, None]
        x_t = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        use_text = (torch.rand(batch, generator=generator) >= self.config.cond_dropout).to(device)
        pred = self.denoiser(x_t, t, F.normalize(text, dim=-1), use_text, mask)
        err = ((pred - x0) ** 2).mean(-1) * mask
        return err.sum() / mask.sum()

    def guided_x0(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        text: torch.Tensor,
        mask: torch.Tensor,
        guidance: float,
    ) -> torch.Tensor:
        """x0_u + g (x0_c - x0_u); at g = 1 only the conditional model runs."""
        batch = len(x_t)
        on = torch.ones(batch, dtype=torch.bool, device=x_t.device)
        if guidance == 1.0:
            return self.denoiser(x_t, t, text, on, mask)
        both = self.denoiser(
            torch.cat((x_t, x_t)),
            torch.cat((t, t)),
            torch.cat((text, text)),
            torch.cat((on, ~on)),
            torch.cat((mask, mask)),
        )
        conditional, unconditional = both[:batch], both[batch:]
        return unconditional + guidance * (conditional - unconditional)

    @torch.no_grad()
    def sample(
        self,
        text: torch.Tensor,
        lengths: Sequence[int],
        noise_seeds: Sequence[int],
        steps: int | None = None,
        guidance: float | None = None,
    ) -> list[np.ndarray]:
        """DDIM (eta = 0): x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t') eps_hat, where
        eps_hat = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t). The only randomness is the
        starting noise, drawn per motion from its own seed. Motions are sampled in batches of
        `sample_batch` of similar length (a motion does not depend on its batch). Returns
        unnormalised features, in the order given."""
        self.eval()
        steps = steps or self.config.sample_steps
        guidance = self.config.guidance if guidance is None else guidance
        if not len(text) == len(lengths) == len(noise_seeds):
            raise ValueError(
                f"{len(text)} texts, {len(lengths)} lengths and {len(noise_seeds)} "
                f"noise seeds: need one of each per motion"
            )
        if min(lengths) < 1 or max(lengths) > self.config.max_frames:
            raise ValueError(
                f"lengths must be in 1..{self.config.max_frames}, got "
                f"{min(lengths)}..{max(lengths)}"
            )
        order = sorted(range(len(lengths)), key=lambda i: lengths[i])
        motions: list[np.ndarray] = [np.empty(0)] * len(lengths)
        size = self.config.sample_batch
        for rows in (order[i : i + size] for i in range(0, len(order), size)):
            batch = self._sample_batch(
                text[rows],
                [lengths[i] for i in rows],
                [noise_seeds[i] for i in rows],
                steps,
                guidance,
            )
            for i, motion in zip(rows, batch):
                motions[i] = motion
        return motions

    def _sample_batch(
        self,
        text: torch.Tensor,
        lengths: Sequence[int],
        noise_seeds: Sequence[int],
        steps: int,
        guidance: float,
    ) -> list[np.ndarray]:
        device = self.mean.device
        noise = [
            torch.randn(
                int(n), self.feature_dim, generator=torch.Generator().manual_seed(int(seed))
            )
            for n, seed in zip(lengths, noise_seeds)
        ]
        x, mask = pad_motions(noise)
        x, mask = x.to(device), mask.to(device)
        text = F.normalize(text.to(device).float(), dim=-1)
        schedule = torch.linspace(self.config.diffusion_steps - 1, 0, steps).round().long()
        for i, t in enumerate(schedule.tolist()):
            abar = self.alpha_bar[t]
            abar_prev = self.alpha_bar[schedule[i + 1]] if i + 1 < steps else torch.tensor(1.0)
            x0 = self.guided_x0(x, torch.full((len(x),), t, device=device), text, mask, guidance)
            eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()
            x = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
        x = x * self.std + self.mean
        return [x[b, : int(n)].cpu().numpy() for b, n in enumerate(lengths)]

    def generate(
        self,
        prompts: Sequence[str],
        lengths: Sequence[int],
        text_encoder: TextEmbedder,
        noise_seeds: Sequence[int],
        steps: int | None = None,
        guidance: float | None = None,
    ) -> list[np.ndarray]:
        """One motion (T_i, D) per prompt; equal seeds give equal starting noise."""
        text = text_encoder(list(prompts))
        if text.shape[-1] != self.text_width:
            raise ValueError(
                f"the text encoder gives width {text.shape[-1]}, the generator was "
                f"trained on width {self.text_width}"
            )
        return self.sample(text, lengths, noise_seeds, steps, guidance)


def save_generator(
    path: Path | str,
    generator: DiffusionGenerator,
    data_fingerprint: str,
    extra: dict | None = None,
) -> Path:
    """Write weights, config, conditioning encoder id and data fingerprint atomically."""
    return save_state(
        path,
        {
            "format": GENERATOR_FORMAT,
            "family": "diffusion",
            "model": generator.state_dict(),
            "config": generator.config.to_dict(),
            "feature_dim": generator.feature_dim,
            "text_width": generator.text_width,
            "encoder_id": generator.encoder_id,
            "data_fingerprint": data_fingerprint,
            "extra": extra or {},
        },
    )


def load_generator(
    path: Path | str, device: str | torch.device = "cpu"
) -> tuple[DiffusionGenerator, dict]:
    """(frozen generator, stored state) on `device`."""
    state = load_state(
        path,
        "generator",
        GENERATOR_FORMAT,
        "train one with python -m moclip.generation.train_generator",
    )
    model = state["model"]
    generator = DiffusionGenerator(
        state["feature_dim"],
        state["text_width"],
        model["mean"].numpy(),
        model["std"].numpy(),
        DiffusionConfig(**state["config"]),
        state["encoder_id"],
    )
    generator.load_state_dict(model)
    return freeze(generator, device), state
