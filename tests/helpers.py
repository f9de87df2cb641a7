"""Motions for tests that need data on any skeleton."""

from __future__ import annotations

import numpy as np

from moclip.data.kinematics import forward_kinematics
from moclip.data.quaternion import from_axis_angle, qmul, yaw_quat
from moclip.skeletons import Skeleton


def random_motion(skeleton: Skeleton, frames: int = 50, seed: int = 0) -> np.ndarray:
    """World positions (T, J, 3) of a smooth random motion on `skeleton`: turning, travelling."""
    rng = np.random.default_rng(seed)
    rotvecs = np.cumsum(rng.normal(0.0, 0.05, (frames, skeleton.num_joints, 3)), axis=0)
    local = from_axis_angle(rotvecs * 0.5)
    yaw = rng.uniform(-np.pi, np.pi) + np.linspace(0.0, rng.uniform(-2, 2), frames)
    local[:, 0] = qmul(yaw_quat(yaw), local[:, 0])
    root = np.stack(
        [
            np.linspace(0, rng.uniform(-1, 1), frames),
            np.full(frames, 1.0),
            np.linspace(0, rng.uniform(-1, 1), frames),
        ],
        axis=-1,
    )
    return forward_kinematics(local, root, skeleton)
