"""Skeletons as data: joint names, parents, rest offsets, kinematic chains, feet and limb ends.

Conventions shared by every skeleton here: y is up, the rest pose faces +z, the body's left side
is +x, lengths are metres, and joint 0 is the root (pelvis / hip centre), so the HumanML3D
feature layout (root first, then the J-1 other joints) applies unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Skeleton:
    """A kinematic tree with the joint roles the motion features and MoCLIP need.

    `chains` run from the root (or a branching joint) to an end effector; every non-root joint
    appears in exactly one chain after its first element. `face_joints` is (right hip, left hip,
    right shoulder, left shoulder), whose across-vector defines the facing direction.
    `foot_joints` is ((left ankle, left toe), (right ankle, right toe)) for contact labels.
    `hands` and `feet` are (left, right) end effectors for MoCLIP's cross-limb links.
    """

    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    offsets: np.ndarray = field(repr=False)  # (J, 3) rest offset of each joint from its parent
    chains: tuple[tuple[int, ...], ...]
    face_joints: tuple[int, int, int, int]
    foot_joints: tuple[tuple[int, int], tuple[int, int]]
    hands: tuple[int, int]
    feet: tuple[int, int]

    def __post_init__(self) -> None:
        j = len(self.joint_names)
        offsets = np.asarray(self.offsets, dtype=np.float64)
        object.__setattr__(self, "offsets", offsets)
        if len(self.parents) != j or offsets.shape != (j, 3):
            raise ValueError(
                f"skeleton {self.name!r}: {j} joint names but {len(self.parents)} parents "
                f"and offsets of shape {offsets.shape}; expected {j} parents and ({j}, 3)"
            )
        if self.parents[0] != -1 or any(not 0 <= p < i for i, p in enumerate(self.parents) if i):
            raise ValueError(
                f"skeleton {self.name!r}: joint 0 must be the root (parent -1) and every other "
                f"joint's parent must come before it; got parents {self.parents}"
            )
        seen = set()
        for chain in self.chains:
            if chain[0] != 0 and chain[0] not in seen:
                raise ValueError(
                    f"skeleton {self.name!r}: chain {chain} starts at joint {chain[0]}, which no "
                    f"earlier chain reaches; list the chain through it first"
                )
            for parent, child in zip(chain[:-1], chain[1:]):
                if self.parents[child] != parent:
                    raise ValueError(
                        f"skeleton {self.name!r}: chain {chain} links {parent}->{child} but the "
                        f"parent of {child} is {self.parents[child]}"
                    )
                seen.add(child)
        if seen != set(range(1, j)):
            raise ValueError(
                f"skeleton {self.name!r}: chains must cover joints 1..{j - 1} once; "
                f"missing {sorted(set(range(1, j)) - seen)}"
            )
        roles = [*self.face_joints, *sum(self.foot_joints, ()), *self.hands, *self.feet]
        if any(not 0 <= r < j for r in roles):
            raise ValueError(f"skeleton {self.name!r}: a role joint is out of range 0..{j - 1}")

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def feature_dim(self) -> int:
        """Width of the HumanML3D-style features: 4 + (J-1)*9 + J*3 + 4."""
        return feature_dim(self.num_joints)

    @property
    def bones(self) -> list[tuple[int, int]]:
        """(parent, child) pairs, the skeletal adjacency."""
        return [(p, c) for c, p in enumerate(self.parents) if p >= 0]

    def index(self, name: str) -> int:
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise KeyError(f"skeleton {self.name!r} has no joint {name!r}") from None

    def cross_limb_links(self, hand_foot: bool = False) -> list[tuple[int, int]]:
        """Extra attention links of MoCLIP: hand<->hand and foot<->foot, optionally hand<->foot."""
        links = [self.hands, self.feet]
        if hand_foot:
            links += [(h, f) for h in self.hands for f in self.feet]
        return [tuple(sorted(link)) for link in links]

    def rest_positions(self) -> np.ndarray:
        """(J, 3) global joint positions of the rest pose, feet on the floor (min y = 0)."""
        pos = np.zeros((self.num_joints, 3))
        for j, p in enumerate(self.parents):
            if p >= 0:
                pos[j] = pos[p] + self.offsets[j]
        pos[:, 1] -= pos[:, 1].min()
        return pos


def feature_dim(num_joints: int) -> int:
    """Per-frame feature width for J joints: 4 + (J-1)*9 + J*3 + 4."""
    return 4 + (num_joints - 1) * 9 + num_joints * 3 + 4


def _parents_from_chains(num_joints: int, chains: tuple[tuple[int, ...], ...]) -> tuple[int, ...]:
    parents = [-1] * num_joints
    for chain in chains:
        for parent, child in zip(chain[:-1], chain[1:]):
            parents[child] = parent
    return tuple(parents)


# HumanML3D's 22 SMPL body joints, in the order of its new_joints files.
_SMPL_NAMES = (
    "pelvis",
    "left_hip",
    "right_hip",
    "spine1",
    "left_knee",
    "right_knee",
    "spine2",
    "left_ankle",
    "right_ankle",
    "spine3",
    "left_foot",
    "right_foot",
    "neck",
    "left_collar",
    "right_collar",
    "head",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
)
_SMPL_CHAINS = (
    (0, 2, 5, 8, 11),
    (0, 1, 4, 7, 10),
    (0, 3, 6, 9, 12, 15),
    (9, 14, 17, 19, 21),
    (9, 13, 16, 18, 20),
)
# An adult of about 1.70 m, arms hanging at the sides (the zero pose of the synthetic programs).
_SMPL_OFFSETS = (
    (0.0, 0.0, 0.0),
    (0.06, -0.09, 0.0),
    (-0.06, -0.09, 0.0),
    (0.0, 0.11, -0.01),
    (0.01, -0.38, 0.0),
    (-0.01, -0.38, 0.0),
    (0.0, 0.14, 0.01),
    (0.0, -0.40, -0.03),
    (0.0, -0.40, -0.03),
    (0.0, 0.06, 0.0),
    (0.0, -0.05, 0.12),
    (0.0, -0.05, 0.12),
    (0.0, 0.21, -0.02),
    (0.07, 0.12, 0.0),
    (-0.07, 0.12, 0.0),
    (0.0, 0.09, 0.05),
    (0.11, 0.03, -0.01),
    (-0.11, 0.03, -0.01),
    (0.0, -0.27, 0.0),
    (0.0, -0.27, 0.0),
    (0.0, -0.25, 0.0),
    (0.0, -0.25, 0.0),
)

HUMANML3D = Skeleton(
    name="humanml3d",
    joint_names=_SMPL_NAMES,
    parents=_parents_from_chains(22, _SMPL_CHAINS),
    offsets=np.array(_SMPL_OFFSETS),
    chains=_SMPL_CHAINS,
    face_joints=(2, 1, 17, 16),
    foot_joints=((7, 10), (8, 11)),
    hands=(20, 21),
    feet=(10, 11),
)

# KIT-ML's 21 MMM markers-derived joints. The T2M preprocessing of KIT-ML treats the chain that
# starts at joint 11 (MMM's "L*" names) and the arm at joint 5 as the body's right side; the
# roles below follow it so features computed here match the released KIT-ML vectors.
_KIT_NAMES = (
    "root",
    "BP",
    "BT",
    "BLN",
    "BUN",
    "LS",
    "LE",
    "LW",
    "RS",
    "RE",
    "RW",
    "LH",
    "LK",
    "LA",
    "LMrot",
    "LF",
    "RH",
    "RK",
    "RA",
    "RMrot",
    "RF",
)
_KIT_CHAINS = (
    (0, 11, 12, 13, 14, 15),
    (0, 16, 17, 18, 19, 20),
    (0, 1, 2, 3, 4),
    (3, 5, 6, 7),
    (3, 8, 9, 10),
)
_KIT_OFFSETS = (
    (0.0, 0.0, 0.0),
    (0.0, 0.10, 0.0),
    (0.0, 0.20, 0.0),
    (0.0, 0.20, 0.0),
    (0.0, 0.16, 0.0),
    (-0.18, -0.02, 0.0),
    (0.0, -0.28, 0.0),
    (0.0, -0.25, 0.0),
    (0.18, -0.02, 0.0),
    (0.0, -0.28, 0.0),
    (0.0, -0.25, 0.0),
    (-0.09, -0.05, 0.0),
    (0.0, -0.42, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.05, 0.08),
    (0.0, 0.0, 0.06),
    (0.09, -0.05, 0.0),
    (0.0, -0.42, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.05, 0.08),
    (0.0, 0.0, 0.06),
)

KIT = Skeleton(
    name="kit",
    joint_names=_KIT_NAMES,
    parents=_parents_from_chains(21, _KIT_CHAINS),
    offsets=np.array(_KIT_OFFSETS),
    chains=_KIT_CHAINS,
    face_joints=(11, 16, 5, 8),
    foot_joints=((19, 20), (14, 15)),
    hands=(10, 7),
    feet=(20, 15),
)

# The 20-joint Kinect (v1) skeleton, root first. MSR Action3D files list the same joints in
# another order; moclip.data.action3d maps them.
_KINECT_NAMES = (
    "hip_center",
    "spine",
    "shoulder_center",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "left_hand",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
    "right_hand",
    "left_hip",
    "left_knee",
    "left_ankle",
    "left_foot",
    "right_hip",
    "right_knee",
    "right_ankle",
    "right_foot",
)
_KINECT_CHAINS = (
    (0, 1, 2, 3),
    (2, 4, 5, 6, 7),
    (2, 8, 9, 10, 11),
    (0, 12, 13, 14, 15),
    (0, 16, 17, 18, 19),
)
_KINECT_OFFSETS = (
    (0.0, 0.0, 0.0),
    (0.0, 0.08, 0.0),
    (0.0, 0.36, 0.0),
    (0.0, 0.17, 0.0),
    (0.17, -0.04, 0.0),
    (0.0, -0.27, 0.0),
    (0.0, -0.24, 0.0),
    (0.0, -0.08, 0.0),
    (-0.17, -0.04, 0.0),
    (0.0, -0.27, 0.0),
    (0.0, -0.24, 0.0),
    (0.0, -0.08, 0.0),
    (0.08, -0.07, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.05, 0.10),
    (-0.08, -0.07, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.40, 0.0),
    (0.0, -0.05, 0.10),
)

KINECT = Skeleton(
    name="kinect",
    joint_names=_KINECT_NAMES,
    parents=_parents_from_chains(20, _KINECT_CHAINS),
    offsets=np.array(_KINECT_OFFSETS),
    chains=_KINECT_CHAINS,
    face_joints=(16, 12, 8, 4),
    foot_joints=((14, 15), (18, 19)),
    hands=(7, 11),
    feet=(15, 19),
)

SKELETONS: dict[str, Skeleton] = {s.name: s for s in (HUMANML3D, KIT, KINECT)}


def get_skeleton(name: str) -> Skeleton:
    """The skeleton called `name` (humanml3d, kit or kinect)."""
    try:
        return SKELETONS[name]
    except KeyError:
        raise KeyError(f"unknown skeleton {name!r}; expected one of {sorted(SKELETONS)}") from None


def skeleton_for_feature_dim(dim: int) -> Skeleton:
    """The skeleton whose feature width is `dim` (263 humanml3d, 251 kit, 239 kinect)."""
    for skeleton in SKELETONS.values():
        if skeleton.feature_dim == dim:
            return skeleton
    widths = {s.name: s.feature_dim for s in SKELETONS.values()}
    raise ValueError(f"no skeleton has feature width {dim}; known widths are {widths}")


def skeleton_for_num_joints(num_joints: int) -> Skeleton:
    """The skeleton with `num_joints` joints (22 humanml3d, 21 kit, 20 kinect)."""
    for skeleton in SKELETONS.values():
        if skeleton.num_joints == num_joints:
            return skeleton
    counts = {s.name: s.num_joints for s in SKELETONS.values()}
    raise ValueError(f"no skeleton has {num_joints} joints; known counts are {counts}")
