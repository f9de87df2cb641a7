"""Unit-quaternion helpers in NumPy, (w, x, y, z) order, broadcasting over leading axes."""

from __future__ import annotations

import numpy as np

_EPS = 1e-9


def qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product a*b (apply b, then a)."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def qinv(q: np.ndarray) -> np.ndarray:
    """Inverse of a unit quaternion: its conjugate (w, -x, -y, -z)."""
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors v by q: v + 2w(u x v) + 2u x (u x v), u = (x, y, z)."""
    u = q[..., 1:]
    t = 2.0 * np.cross(u, v)
    return v + q[..., :1] * t + np.cross(u, t)


def qbetween(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shortest-arc rotation taking direction u to direction v: normalise(|u||v| + u.v, u x v)."""
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), _EPS)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)
    w = 1.0 + np.sum(u * v, axis=-1, keepdims=True)
    axis = np.cross(u, v)
    # Opposite directions: any axis orthogonal to u works; pick one deterministically.
    opposite = w[..., 0] < 1e-8
    if np.any(opposite):
        ub = np.broadcast_to(u, axis.shape)
        ortho = np.cross(ub, np.array([1.0, 0.0, 0.0]))
        fallback = np.cross(ub, np.array([0.0, 1.0, 0.0]))
        ortho = np.where(np.linalg.norm(ortho, axis=-1, keepdims=True) < 1e-6, fallback, ortho)
        axis = np.where(opposite[..., None], ortho, axis)
    q = np.concatenate((w, axis), axis=-1)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def from_axis_angle(rotvec: np.ndarray) -> np.ndarray:
    """Quaternion of a rotation vector r: (cos(|r|/2), sin(|r|/2) r/|r|)."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 as a -> 0; the series keeps it exact near zero.
    scale = np.where(angle < 1e-6, 0.5 - angle**2 / 48.0, np.sin(half) / np.maximum(angle, _EPS))
    return np.concatenate((np.cos(half), rotvec * scale), axis=-1)


def yaw_quat(angle: np.ndarray) -> np.ndarray:
    """Rotation by `angle` radians about +y: (cos(a/2), 0, sin(a/2), 0)."""
    angle = np.asarray(angle, dtype=np.float64)
    zeros = np.zeros_like(angle)
    return np.stack((np.cos(angle / 2), zeros, np.sin(angle / 2), zeros), axis=-1)


def to_matrix(q: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion."""
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack(
        (
            np.stack((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)), -1),
            np.stack((2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)), -1),
            np.stack((2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)), -1),
        ),
        axis=-2,
    )


def to_cont6d(q: np.ndarray) -> np.ndarray:
    """Continuous 6D rotation (Zhou et al. 2019): the first two columns of the matrix, (..., 6)."""
    m = to_matrix(q)
    return np.concatenate((m[..., :, 0], m[..., :, 1]), axis=-1)
