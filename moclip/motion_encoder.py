"""MoCLIP's motion encoders. `kind: graph` (the project's): spatial attention over a skeleton
graph, then temporal attention. `kind: parts` (the authors', `models/motion_clip.py`): an MLP
per body part over positions and over velocities, then a temporal transformer.

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


MOTION_ENCODER_KINDS = ("graph", "parts")


@dataclass(frozen=True)
class MotionEncoderConfig:
    kind: str = "graph"  # graph (skeleton-graph attention) | parts (the authors' body parts)
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
    # kind "parts": each part's MLP (hidden, then part_width / 2 for positions and as much for
    # velocities); the authors' full size is part_width 256, part_hidden 128, temporal_width
    # 1032, temporal_layers 12, heads 12, ff_mult 4
    part_width: int = 256
    part_hidden: int = 128

    def __post_init__(self) -> None:
        if self.kind not in MOTION_ENCODER_KINDS:
            raise ValueError(
                f"motion encoder kind must be one of {', '.join(MOTION_ENCODER_KINDS)}, "
                f"got {self.kind!r}"
            )
        if self.part_width < 2 or self.part_width % 2 or self.part_hidden < 1:
            raise ValueError(
                f"part_width must be even and >= 2 and part_hidden >= 1, got "
                f"{self.part_width} and {self.part_hidden}"
            )
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
        if self.temporal_width % self.heads or (
            self.kind == "graph" and self.joint_width % self.heads
        ):
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
        features, mask = strided(features, mask, self.config)
        batch, frames, _ = features.shape
        x = self.joint_in(self.joint_tokens(features)) + self.joint_embedding
        x = self.spatial_attention(x.reshape(batch * frames, self.skeleton.num_joints, -1))
        x = self.frame_proj(x.reshape(batch, frames, -1)) + self.positions[:frames]
        return temporal_pooled(self, x, mask)


def strided(
    features: torch.Tensor, mask: torch.Tensor, config: MotionEncoderConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every `frame_stride`-th frame, at most `max_frames` of them (else a ValueError)."""
    stride = config.frame_stride
    features, mask = features[:, ::stride], mask[:, ::stride]
    if features.shape[1] > config.max_frames:
        raise ValueError(
            f"{features.shape[1]} frames after stride {stride} exceed max_frames="
            f"{config.max_frames} of the motion encoder"
        )
    return features, mask


def temporal_pooled(encoder: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The encoder's temporal layers over (B, T, W) frames (padding masked), the mean of the
    valid frames, its output norm and projection: (B, out_width)."""
    padding = ~mask
    for layer in encoder.temporal:
        x = layer(x, src_key_padding_mask=padding)
    weights = mask.to(x.dtype)[..., None]
    pooled = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    return encoder.out_proj(encoder.out_norm(pooled))


def body_parts(skeleton: Skeleton) -> list[tuple[str, tuple[int, ...]]]:
    """The authors' 8 parts, derived from the skeleton's chains: root; torso (the chain that
    reaches neither a hand nor a foot, root included); each arm and each leg (a chain without
    its first joint); both hands with their parents (wrists and elbows, the paper's hand-hand
    link); one foot with its parent and the other side's hand with its parent (hand-foot)."""
    parent = skeleton.parents
    torso, arms, legs = (), [], []
    for chain in skeleton.chains:
        if set(chain) & set(skeleton.hands):
            arms.append(chain[1:])
        elif set(chain) & set(skeleton.feet):
            legs.append(chain[1:])
        else:
            torso = chain
    (left_hand, right_hand), (_, right_foot) = skeleton.hands, skeleton.feet
    return [
        ("root", (0,)),
        ("torso", torso),
        *(("arm", arm) for arm in arms),
        *(("leg", leg) for leg in legs),
        ("hands", (parent[right_hand], right_hand, parent[left_hand], left_hand)),
        ("hand-foot", (parent[right_foot], right_foot, parent[left_hand], left_hand)),
    ]


def part_index(skeleton: Skeleton, joints: tuple[int, ...]) -> torch.Tensor:
    """Feature indices of a part's joints: a joint's root-relative position (3), the root's
    rotation velocity, planar velocity and height (4)."""
    positions = feature_slices(skeleton.num_joints)["positions"].start
    rows = []
    for j in joints:
        rows += [0, 1, 2, 3] if j == 0 else [positions + 3 * (j - 1) + k for k in range(3)]
    return torch.tensor(rows, dtype=torch.long)


def _part_mlp(width_in: int, hidden: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width_in, hidden), nn.Tanh(), nn.Dropout(dropout), nn.Linear(hidden, out), nn.Tanh()
    )


class PartsMotionEncoder(nn.Module):
    """The authors' motion encoder (`kind: parts`): per frame and body part, a two-layer tanh MLP
    over the part's positions and one over their frame-to-frame velocities; the parts'
    features concatenated, projected to temporal_width, a temporal transformer (sinusoidal
    positions), mean pooling over valid frames, a projection to the text width.

    Differs from `models/motion_clip.py` in: positions are the features' (normalised,
    root-relative) joint positions, not global ones recovered from them; padded frames are
    masked in attention and pooling (theirs attend to and average the padding)."""

    def __init__(
        self,
        skeleton: Skeleton,
        out_width: int,
        config: MotionEncoderConfig = MotionEncoderConfig(kind="parts"),
    ) -> None:
        super().__init__()
        self.skeleton, self.config = skeleton, config
        self.parts = body_parts(skeleton)
        for i, (_, joints) in enumerate(self.parts):
            self.register_buffer(f"index_{i}", part_index(skeleton, joints), persistent=False)
        half = config.part_width // 2
        sizes = [len(getattr(self, f"index_{i}")) for i in range(len(self.parts))]
        self.position_mlps = nn.ModuleList(
            _part_mlp(n, config.part_hidden, half, config.dropout) for n in sizes
        )
        self.velocity_mlps = nn.ModuleList(
            _part_mlp(n, config.part_hidden, half, config.dropout) for n in sizes
        )
        self.embed = nn.Linear(len(self.parts) * config.part_width, config.temporal_width)
        self.register_buffer(
            "positions",
            sinusoidal_positions(config.max_frames, config.temporal_width),
            persistent=False,
        )
        self.norm_in = nn.LayerNorm(config.temporal_width)
        self.temporal = nn.ModuleList(
            _layer(config.temporal_width, config.heads, config.ff_mult, config.dropout)
            for _ in range(config.temporal_layers)
        )
        self.out_norm = nn.LayerNorm(config.temporal_width)
        self.out_proj = nn.Linear(config.temporal_width, out_width)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        features, mask = strided(features, mask, self.config)
        frames = features.shape[1]
        per_part = []
        for i, (positions, velocities) in enumerate(zip(self.position_mlps, self.velocity_mlps)):
            x = features[..., getattr(self, f"index_{i}")]
            # velocity of frame t: x_t - x_{t-1}, zero at the first frame
            v = torch.cat((torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]), dim=1)
            per_part += [positions(x), velocities(v)]
        x = self.norm_in(self.embed(torch.cat(per_part, dim=-1))) + self.positions[:frames]
        return temporal_pooled(self, x, mask)


def build_motion_encoder(
    skeleton: Skeleton, out_width: int, config: MotionEncoderConfig = MotionEncoderConfig()
) -> nn.Module:
    """The motion encoder `config.kind` names, for `skeleton`, embedding into `out_width`."""
    cls = PartsMotionEncoder if config.kind == "parts" else MotionEncoder
    return cls(skeleton, out_width, config)
