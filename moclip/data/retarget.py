"""Retargeting SMPL's 22 joints (HumanML3D, the synthetic corpus) onto the 20-joint Kinect
skeleton of MSR Action3D, so that motions generated on the one are scored by the action
recogniser trained on the other (the transfer study, docs/USAGE.md).

The rule, frame by frame (`Retargeting.apply`):

1. **Joint map** (`SMPL22_TO_KINECT`): every Kinect joint stands for one SMPL joint: hip centre
   = pelvis, spine = spine1, shoulder centre = neck, head = head, and the shoulders, elbows,
   wrists, hips, knees and ankles by name; Kinect's foot = SMPL's foot (the ball of the foot).
2. **Directions from the source, lengths from the target**: the Kinect bone (parent, child)
   points where the source's segment from map(parent) to map(child) points, and is as long as
   that bone of the target body. So the target's bone lengths are constant whatever the source
   does.
3. **Hands**: SMPL's 22 joints end at the wrists; the Kinect hand continues the forearm
   (elbow to wrist) past the wrist by the target's hand length. (The feet need no rule: SMPL
   has a foot joint.)
4. **Target body**: `mean_body` of MSR Action3D's training subjects: per bone the median
   length over each recording's frames, averaged per subject, then over subjects; left and
   right averaged, so that the body is symmetric and the facing (from hips and shoulders) is
   the source's.
5. **Root and floor**: the hip centre follows the pelvis on the floor plane, scaled by the
   ratio of leg lengths (thigh + shin, target over source); its height is set per frame so
   that the lowest foot joint is as high above the floor as the source's, times that ratio:
   a foot on the floor stays on it, a jump keeps its flight.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from moclip.data.features import features_to_positions, positions_to_features
from moclip.skeletons import HUMANML3D, KINECT, Skeleton

# Kinect joint -> the SMPL joint it stands for (None: placed by the hand rule).
SMPL22_TO_KINECT: dict[str, str | None] = {
    "hip_center": "pelvis",
    "spine": "spine1",
    "shoulder_center": "neck",
    "head": "head",
    "left_shoulder": "left_shoulder",
    "left_elbow": "left_elbow",
    "left_wrist": "left_wrist",
    "left_hand": None,
    "right_shoulder": "right_shoulder",
    "right_elbow": "right_elbow",
    "right_wrist": "right_wrist",
    "right_hand": None,
    "left_hip": "left_hip",
    "left_knee": "left_knee",
    "left_ankle": "left_ankle",
    "left_foot": "left_foot",
    "right_hip": "right_hip",
    "right_knee": "right_knee",
    "right_ankle": "right_ankle",
    "right_foot": "right_foot",
}


def bone_lengths(positions: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """(..., J) length of the bone that ends at each joint, |p_j - p_parent(j)| (0 at the root)."""
    parents = np.array([max(p, 0) for p in skeleton.parents])
    return np.linalg.norm(positions - positions[..., parents, :], axis=-1)


def mirror_pairs(skeleton: Skeleton) -> list[tuple[int, int]]:
    """(left, right) joint pairs by name (left_x and right_x)."""
    return [
        (j, skeleton.index("right_" + name[len("left_") :]))
        for j, name in enumerate(skeleton.joint_names)
        if name.startswith("left_")
    ]


def mean_body(
    recordings: Sequence[np.ndarray], subjects: Sequence[str], skeleton: Skeleton = KINECT
) -> np.ndarray:
    """(J,) bone lengths of the mean body: per recording (T, J, 3) the median length of each
    bone over its frames, averaged per subject, then over subjects, then left and right
    averaged."""
    if not recordings or len(recordings) != len(subjects):
        raise ValueError(
            f"need one subject per recording and at least one recording; got "
            f"{len(recordings)} recordings and {len(subjects)} subjects"
        )
    by_subject: dict[str, list[np.ndarray]] = defaultdict(list)
    for positions, subject in zip(recordings, subjects):
        by_subject[subject].append(np.median(bone_lengths(positions, skeleton), axis=0))
    lengths = np.mean([np.mean(rows, axis=0) for rows in by_subject.values()], axis=0)
    for left, right in mirror_pairs(skeleton):
        lengths[left] = lengths[right] = (lengths[left] + lengths[right]) / 2
    return lengths


def action3d_body(train) -> np.ndarray:
    """`mean_body` of an MSR Action3D training split (a MotionDataset on the Kinect skeleton;
    ids aNN_sNN_eNN name the subject)."""
    recordings = [
        features_to_positions(item.features, train.skeleton.num_joints) for item in train.items
    ]
    subjects = [item.motion_id.split("_")[1] for item in train.items]
    return mean_body(recordings, subjects, train.skeleton)


@dataclass(frozen=True)
class Retargeting:
    """Joint positions on `source` to joint positions on `target` with the target body's
    bone `lengths` (J_target,), by the rule of this module's docstring."""

    lengths: np.ndarray
    source: Skeleton = HUMANML3D
    target: Skeleton = KINECT
    joint_map: tuple[tuple[str, str | None], ...] = tuple(SMPL22_TO_KINECT.items())

    def __post_init__(self) -> None:
        lengths = np.asarray(self.lengths, dtype=np.float64)
        if lengths.shape != (self.target.num_joints,) or np.any(lengths[1:] <= 0):
            raise ValueError(
                f"bone lengths must be ({self.target.num_joints},) and positive for "
                f"{self.target.name!r}; got shape {lengths.shape}"
            )
        object.__setattr__(self, "lengths", lengths)
        names = dict(self.joint_map)
        if set(names) != set(self.target.joint_names):
            raise ValueError(
                f"the joint map must name every {self.target.name} joint once; missing "
                f"{sorted(set(self.target.joint_names) - set(names))}"
            )
        for name, source in names.items():
            if source is None and not name.endswith("_hand"):
                raise ValueError(f"{name}: only hands may lack a source joint")
            if source is not None:
                self.source.index(source)  # a KeyError naming it if the source has none

    def _source_index(self) -> list[int | None]:
        names = dict(self.joint_map)
        return [
            None if names[name] is None else self.source.index(names[name])
            for name in self.target.joint_names
        ]

    @staticmethod
    def _leg(positions: np.ndarray, skeleton: Skeleton, hip: str, ankle: str) -> float:
        """Median over frames of thigh + shin length, both sides averaged."""
        total = 0.0
        for side in ("left", "right"):
            h, a = skeleton.index(f"{side}_{hip}"), skeleton.index(f"{side}_{ankle}")
            k = skeleton.parents[a]
            total += np.median(
                np.linalg.norm(positions[:, k] - positions[:, h], axis=-1)
                + np.linalg.norm(positions[:, a] - positions[:, k], axis=-1)
            )
        return total / 2

    def scale(self, positions: np.ndarray) -> float:
        """Target leg length over the source's in this motion (root travel scales by it)."""
        target = self.target
        knee = {side: target.index(f"{side}_knee") for side in ("left", "right")}
        ankle = {side: target.index(f"{side}_ankle") for side in ("left", "right")}
        target_leg = np.mean([self.lengths[knee[s]] + self.lengths[ankle[s]] for s in knee])
        return float(target_leg / self._leg(positions, self.source, "hip", "ankle"))

    def apply(self, positions: np.ndarray) -> np.ndarray:
        """(T, J_source, 3) positions (y up, floor at y = 0) -> (T, J_target, 3)."""
        positions = np.asarray(positions, dtype=np.float64)
        if positions.ndim != 3 or positions.shape[1:] != (self.source.num_joints, 3):
            raise ValueError(
                f"positions must be (T, {self.source.num_joints}, 3) for "
                f"{self.source.name!r}; got {positions.shape}"
            )
        source_of = self._source_index()
        parents = self.target.parents
        frames = len(positions)
        out = np.zeros((frames, self.target.num_joints, 3))
        for j in range(1, self.target.num_joints):  # parents come first
            p = parents[j]
            if source_of[j] is None:  # a hand: the forearm continued past the wrist
                segment = positions[:, source_of[p]] - positions[:, source_of[parents[p]]]
            else:
                segment = positions[:, source_of[j]] - positions[:, source_of[p]]
            norm = np.linalg.norm(segment, axis=-1, keepdims=True)
            direction = segment / np.maximum(norm, 1e-9)
            out[:, j] = out[:, p] + self.lengths[j] * direction
        scale = self.scale(positions)
        feet = [j for pair in self.target.foot_joints for j in pair]
        source_feet = [j for pair in self.source.foot_joints for j in pair]
        clearance = positions[:, source_feet, 1].min(axis=1) - positions[..., 1].min()
        root = positions[:, source_of[0]] * scale
        root[:, 1] = scale * clearance - out[:, feet, 1].min(axis=1)
        return out + root[:, None, :]


def retarget_features(features: np.ndarray, retargeting: Retargeting) -> np.ndarray:
    """Source-skeleton features (T, D_source) -> target-skeleton features (T - 1, D_target):
    positions, retargeted, then the target's features (one frame fewer: velocities)."""
    positions = features_to_positions(features, retargeting.source.num_joints)
    return positions_to_features(retargeting.apply(positions), retargeting.target)
