"""Forward kinematics over a Skeleton."""

from __future__ import annotations

import numpy as np

from moclip.data.quaternion import qmul, qrot
from moclip.skeletons import Skeleton


def forward_kinematics(
    local_rotations: np.ndarray, root_positions: np.ndarray, skeleton: Skeleton
) -> np.ndarray:
    """Joint positions (T, J, 3) from local rotations (T, J, 4) and root positions (T, 3).

    G_j = G_parent(j) * L_j and p_j = p_parent(j) + G_parent(j) offset_j: a joint's rotation
    turns the bones of its children, the root's turns the whole body.
    """
    num_frames = local_rotations.shape[0]
    global_rot = np.empty_like(local_rotations)
    positions = np.empty((num_frames, skeleton.num_joints, 3))
    global_rot[:, 0] = local_rotations[:, 0]
    positions[:, 0] = root_positions
    for j, p in enumerate(skeleton.parents[1:], start=1):
        positions[:, j] = positions[:, p] + qrot(global_rot[:, p], skeleton.offsets[j])
        global_rot[:, j] = qmul(global_rot[:, p], local_rotations[:, j])
    return positions
