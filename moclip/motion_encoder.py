"""MoCLIP's motion encoder: spatial attention over a skeleton graph, then temporal attention.

Per frame, every joint is a token built from its slice of the HumanML3D-style features
(root-relative position, 6D rotation, velocity, foot contact; the root gets its rotation
velocity, linear velocity, height and velocity). Spatial self-attention between the joints of a
frame is masked to the skeletal adjacency, self, and cross-limb links between both hands and
both feet. The frame's joint tokens are then flattened to one frame vector, temporal
self-attention runs over the frames (sinusoidal positions, padding mask), valid frames are
mean-pooled and projected to the text embedding width.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from moclip.data.features import feature_slices
from moclip.skeletons import Skeleton

TOKEN_WIDTH = 13  # position 3 + rotation 6 + velocity 3 + contact 1


@dataclass(frozen=True)
class MotionEncoderConfig:
    joint_width: int = 32
    spatial_layers: int = 1
    temporal_width: int = 256
    temporal_layers: int = 2
    heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    cross_limb: bool = True  # hand<->hand and foot<->foot links
    hand_foot: bool = False  # also hand<->foot links
    frame_stride: int = 1  # attend to every k-th frame (a speed knob; 1 keeps all)
    max_frames: int = 200

    def __post_init__(self) -> None:
        for name in (
            "joint_width",
            "temporal_width",
            "heads",
            "ff_mult",
            "frame_stride",
            "max_frames",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"motion encoder {name} must be >= 1, got {getattr(self, name)}")
        if self.joint_width % self.heads or self.temporal_width % self.heads:
            raise ValueError(
                f"joint_width ({self.joint_width}) and temporal_width "
                f"({self.temporal_width}) must be multiples of heads ({self.heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


def joint_token_index(skeleton: Skeleton) -> torch.Tensor:
    """(J, 13) indices into a feature vector with one zero appended (index D = padding)."""
    j_count, dim = skeleton.num_joints, skeleton.feature_dim
    s = feature_slices(j_count)
    pad = dim
    contacts = {
        j: s["contacts"].start + k
        for k, j in enumerate(j for pair in skeleton.foot_joints for j in pair)
    }
    rows = []
    for j in range(j_count):
        vel = [s["velocities"].start + 3 * j + k for k in range(3)]
        if j == 0:
            rows.append([0, 1, 2, 3] + [pad] * 5 + vel + [pad])
            continue
        pos = [s["positions"].start + 3 * (j - 1) + k for k in range(3)]
        rot = [s["rotations"].start + 6 * (j - 1) + k for k in range(6)]
        rows.append(pos + rot + vel + [contacts.get(j, pad)])
    return torch.tensor(rows, dtype=torch.long)


def skeleton_attention_mask(
    skeleton: Skeleton, cross_limb: bool = True, hand_foot: bool = False
) -> torch.Tensor:
    """(J, J) bool, True where joint i may attend to joint j: self, bones, cross-limb links."""
    allowed = torch.eye(skeleton.num_joints, dtype=torch.bool)
    links = list(skeleton.bones)
    if cross_limb:
        links += skeleton.cross_limb_links(hand_foot=hand_foot)
    for a, b in links:
        allowed[a, b] = allowed[b, a] = True
    return allowed


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """PE[t, 2i] = sin(t / 10000^(2i/width)), PE[t, 2i+1] = cos(t / 10000^(2i/width))."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    pe = torch.zeros(length, width)
    pe[:, 0::2] = torch.sin(position * rate)
    pe[:, 1::2] = torch.cos(position * rate[: width // 2])
    return pe


SPATIAL_ROWS = 32768  # frames per spatial attention call, half CUDA's grid limit of 65,535


def _layer(width: int, heads: int, ff_mult: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        width, heads, ff_mult * width, dropout, batch_first=True, norm_first=True, activation="gelu"
    )


class MotionEncoder(nn.Module):
    """(B, T, D) normalised features + (B, T) validity mask -> (B, out_width) embeddings."""

    def __init__(
        self,
        skeleton: Skeleton,
        out_width: int,
        config: MotionEncoderConfig = MotionEncoderConfig(),
    ) -> None:
        super().__init__()
        self.skeleton = skeleton
        self.config = config
        j_count = skeleton.num_joints
        self.register_buffer("token_index", joint_token_index(skeleton), persistent=False)
        blocked = ~skeleton_attention_mask(skeleton, config.cross_limb, config.hand_foot)
        self.register_buffer("spatial_blocked", blocked, persistent=False)
        self.register_buffer(
            "positions",
            sinusoidal_positions(config.max_frames, config.temporal_width),
            persistent=False,
        )
        self.joint_in = nn.Linear(TOKEN_WIDTH, config.joint_width)
        self.joint_embedding = nn.Parameter(torch.randn(j_count, config.joint_width) * 0.02)
        self.spatial = nn.ModuleList(
            _layer(config.joint_width, config.heads, config.ff_mult, config.dropout)
            for _ in range(config.spatial_layers)
        )
        self.frame_proj = nn.Linear(j_count * config.joint_width, config.temporal_width)
        self.temporal = nn.ModuleList(
            _layer(config.temporal_width, config.heads, config.ff_mult, config.dropout)
            for _ in range(config.temporal_layers)
        )
        self.out_norm = nn.LayerNorm(config.temporal_width)
        self.out_proj = nn.Linear(config.temporal_width, out_width)

    def joint_tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, J, 13) per-joint inputs."""
        padded = torch.cat((features, features.new_zeros(features.shape[:-1] + (1,))), dim=-1)
        return padded[..., self.token_index]

    def spatial_attention(self, x: torch.Tensor, rows: int = SPATIAL_ROWS) -> torch.Tensor:
        """(frames, J, W) -> (frames, J, W): the spatial layers, `rows` frames at a time.
        A frame's joints attend only among themselves, so the chunks change nothing; they keep
        each attention call's batch under the 65,535 that CUDA's attention kernels take (cuDNN's
        backward pass fails beyond it: 1,024 motions of 120 frames at stride 1)."""
        parts = []
        for part in x.split(rows):
            for layer in self.spatial:
                part = layer(part, src_mask=self.spatial_blocked)
            parts.append(part)
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        stride = self.config.frame_stride
        features, mask = features[:, ::stride], mask[:, ::stride]
        batch, frames, _ = features.shape
        if frames > self.config.max_frames:
            raise ValueError(
                f"{frames} frames after stride {stride} exceed max_frames="
                f"{self.config.max_frames} of the motion encoder"
            )
        x = self.joint_in(self.joint_tokens(features)) + self.joint_embedding
        x = self.spatial_attention(x.reshape(batch * frames, self.skeleton.num_joints, -1))
        x = self.frame_proj(x.reshape(batch, frames, -1)) + self.positions[:frames]
        padding = ~mask
        for layer in self.temporal:
            x = layer(x, src_key_padding_mask=padding)
        weights = mask.to(x.dtype)[..., None]
        pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        return self.out_proj(self.out_norm(pooled))
