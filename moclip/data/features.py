"""HumanML3D-style motion features (Guo et al. 2022) from joint positions, and back.

Per frame, for J joints, the feature vector is, in order:

    root rotation velocity about y      1        of the world-to-body turn, half-angle per frame
                                                 as HumanML3D stores it (a left turn is negative)
    root linear velocity on xz          2        in the root's facing frame
    root height                         1
    root-relative joint positions       (J-1)*3  in the facing frame (y is height above floor)
    joint rotations, continuous 6D      (J-1)*6  local rotations from inverse kinematics
    joint velocities                    J*3      in the facing frame
    foot contacts                       4        left ankle, left toe, right ankle, right toe

A clip of T position frames gives T-1 feature frames (velocities need a next frame). Joint
positions are T x J x 3, y up, metres, 20 fps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moclip.data.quaternion import qbetween, qinv, qmul, qrot, to_cont6d, yaw_quat
from moclip.skeletons import Skeleton, feature_dim

_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class ContactThresholds:
    """A foot joint is in contact when its squared displacement per frame is below `velocity`
    (m^2; 0.002 as in HumanML3D) and its height above the floor is below `height` (m)."""

    velocity: float = 0.002
    height: float = 0.12


def facing_directions(positions: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Unit forward vectors on the floor plane: normalise(y x ((r_hip - l_hip) + (r_sh - l_sh)))."""
    r_hip, l_hip, r_sh, l_sh = skeleton.face_joints
    across = positions[..., r_hip, :] - positions[..., l_hip, :]
    across = across + positions[..., r_sh, :] - positions[..., l_sh, :]
    forward = np.cross(_UP, across)
    norm = np.linalg.norm(forward, axis=-1, keepdims=True)
    if np.any(norm < 1e-8):
        raise ValueError(
            "cannot tell which way the body faces: hips and shoulders are aligned vertically "
            "in at least one frame"
        )
    return forward / norm


def canonicalize(positions: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Put the clip on the floor (min y = 0), root xz at the origin and facing +z at frame 0."""
    pos = np.array(positions, dtype=np.float64)
    pos[..., 1] -= pos[..., 1].min()
    pos[..., 0] -= pos[0, 0, 0]
    pos[..., 2] -= pos[0, 0, 2]
    turn = qbetween(facing_directions(pos[0], skeleton), _FORWARD)
    return qrot(np.broadcast_to(turn, pos.shape[:-1] + (4,)), pos)


def inverse_kinematics(positions: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Local joint rotations (T, J, 4) that turn each rest bone onto the observed bone.

    Joint 0 holds the root's facing rotation (world to facing frame), identity at frame 0.
    Along each chain: R_loc(child) = G(parent)^-1 * between(rest offset, observed bone), where G
    of a joint is the swing of the bone that ends at it (the facing rotation at the root), so
    a branching chain continues from its first joint rather than restarting at the root.
    """
    num_frames = positions.shape[0]
    quats = np.zeros((num_frames, skeleton.num_joints, 4))
    quats[..., 0] = 1.0
    root = qbetween(facing_directions(positions, skeleton), _FORWARD)
    root[0] = (1.0, 0.0, 0.0, 0.0)
    quats[:, 0] = root
    rest = skeleton.offsets
    # global_rot[j] maps the rest bone that ends at j onto the observed one (the root: facing).
    global_rot = np.zeros_like(quats)
    global_rot[:, 0] = root
    for chain in skeleton.chains:
        for parent, child in zip(chain[:-1], chain[1:]):
            bone = positions[:, child] - positions[:, parent]
            swing = qbetween(np.broadcast_to(rest[child], bone.shape), bone)
            quats[:, child] = qmul(qinv(global_rot[:, parent]), swing)
            global_rot[:, child] = swing
    return quats


def foot_contacts(
    positions: np.ndarray, skeleton: Skeleton, thresholds: ContactThresholds = ContactThresholds()
) -> np.ndarray:
    """(T-1, 4) contact labels: |p[t+1] - p[t]|^2 < velocity and p[t].y < height, per foot joint."""
    joints = [j for pair in skeleton.foot_joints for j in pair]
    feet = positions[:, joints]
    still = np.sum((feet[1:] - feet[:-1]) ** 2, axis=-1) < thresholds.velocity
    low = feet[:-1, :, 1] < thresholds.height
    return (still & low).astype(np.float64)


def positions_to_features(
    positions: np.ndarray,
    skeleton: Skeleton,
    thresholds: ContactThresholds = ContactThresholds(),
) -> np.ndarray:
    """(T, J, 3) joint positions to (T-1, 4 + (J-1)*9 + J*3 + 4) features, float32."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 3 or positions.shape[1:] != (skeleton.num_joints, 3):
        raise ValueError(
            f"positions must be (T, {skeleton.num_joints}, 3) for skeleton {skeleton.name!r}; "
            f"got {positions.shape}"
        )
    if positions.shape[0] < 2:
        raise ValueError(f"need at least 2 frames to compute velocities; got {positions.shape[0]}")
    pos = canonicalize(positions, skeleton)
    quats = inverse_kinematics(pos, skeleton)
    facing = quats[:, 0]
    n = pos.shape[0] - 1

    turn = qmul(facing[1:], qinv(facing[:-1]))
    turn *= np.where(turn[:, :1] < 0, -1.0, 1.0)  # q and -q are the same turn; keep w >= 0
    rot_vel = np.arcsin(np.clip(turn[:, 2], -1.0, 1.0))
    lin_vel = qrot(facing[1:], pos[1:, 0] - pos[:-1, 0])[:, [0, 2]]
    root_y = pos[:-1, 0, 1]

    rel = pos.copy()
    rel[..., 0] -= pos[:, :1, 0]
    rel[..., 2] -= pos[:, :1, 2]
    rel = qrot(np.broadcast_to(facing[:, None], rel.shape[:-1] + (4,)), rel)
    ric = rel[:-1, 1:].reshape(n, -1)
    rot6d = to_cont6d(quats[:-1, 1:]).reshape(n, -1)
    step = pos[1:] - pos[:-1]
    vel = qrot(np.broadcast_to(facing[:-1, None], step.shape[:-1] + (4,)), step).reshape(n, -1)

    features = np.concatenate(
        (
            rot_vel[:, None],
            lin_vel,
            root_y[:, None],
            ric,
            rot6d,
            vel,
            foot_contacts(pos, skeleton, thresholds),
        ),
        axis=1,
    )
    assert features.shape[1] == skeleton.feature_dim
    return features.astype(np.float32)


def root_trajectory(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Facing rotations (..., T, 4) and root positions (..., T, 3) integrated from the features.

    a_t = sum_{i<t} rot_vel_i;  q_t = (cos a_t, 0, sin a_t, 0);  p_t = sum_{i<t} q_i^-1 (v_x, 0, v_z)
    with p_t.y = root height.
    """
    rot_vel = features[..., 0]
    angle = np.zeros_like(rot_vel, dtype=np.float64)
    angle[..., 1:] = np.cumsum(rot_vel[..., :-1], axis=-1)
    facing = yaw_quat(2.0 * angle)  # stored values are half-angles
    step = np.zeros(features.shape[:-1] + (3,))
    step[..., 1:, 0] = features[..., :-1, 1]
    step[..., 1:, 2] = features[..., :-1, 2]
    root = np.cumsum(qrot(qinv(facing), step), axis=-2)
    root[..., 1] = features[..., 3]
    return facing, root


def features_to_positions(features: np.ndarray, num_joints: int) -> np.ndarray:
    """(..., T, D) features to (..., T, J, 3) joint positions, from root motion and the
    root-relative positions: p_j = q_t^-1 ric_j + (root_x, 0, root_z)."""
    features = np.asarray(features, dtype=np.float64)
    if features.shape[-1] != feature_dim(num_joints):
        raise ValueError(
            f"features of width {features.shape[-1]} do not fit {num_joints} joints "
            f"(expected width {feature_dim(num_joints)})"
        )
    facing, root = root_trajectory(features)
    ric = features[..., 4 : 4 + (num_joints - 1) * 3]
    ric = ric.reshape(features.shape[:-1] + (num_joints - 1, 3))
    joints = qrot(np.broadcast_to(qinv(facing)[..., None, :], ric.shape[:-1] + (4,)), ric)
    joints[..., 0] += root[..., None, 0]
    joints[..., 2] += root[..., None, 2]
    return np.concatenate((root[..., None, :], joints), axis=-2)


def in_place_positions(features: np.ndarray, num_joints: int) -> np.ndarray:
    """(..., T, J, 3) joint positions with the root held over the origin: p_j - (root_x, 0,
    root_z) of `features_to_positions`, so its height, pose and turns are kept, its path is not."""
    positions = features_to_positions(features, num_joints)
    positions[..., [0, 2]] -= positions[..., :1, [0, 2]]
    return positions


def feature_slices(num_joints: int) -> dict[str, slice]:
    """Where each feature group lies in the per-frame vector."""
    sizes = {
        "root_rot_vel": 1,
        "root_lin_vel": 2,
        "root_height": 1,
        "positions": (num_joints - 1) * 3,
        "rotations": (num_joints - 1) * 6,
        "velocities": num_joints * 3,
        "contacts": 4,
    }
    slices, start = {}, 0
    for name, size in sizes.items():
        slices[name] = slice(start, start + size)
        start += size
    return slices
