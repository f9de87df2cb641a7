import numpy as np
import pytest

from moclip.data.features import (
    canonicalize,
    facing_directions,
    feature_slices,
    features_to_positions,
    foot_contacts,
    inverse_kinematics,
    positions_to_features,
)
from moclip.data.quaternion import qmul, qrot, to_matrix, yaw_quat
from moclip.data.synthetic import make_motion
from moclip.skeletons import HUMANML3D, KINECT, KIT, SKELETONS
from tests.helpers import random_motion

ALL = list(SKELETONS.values())


@pytest.mark.parametrize("skeleton", ALL, ids=[s.name for s in ALL])
def test_round_trip_positions_features_positions(skeleton):
    positions = random_motion(skeleton, frames=80, seed=3)
    features = positions_to_features(positions, skeleton)
    assert features.shape == (79, skeleton.feature_dim)
    assert features.dtype == np.float32
    recovered = features_to_positions(features, skeleton.num_joints)
    expected = canonicalize(positions, skeleton)[:-1]
    assert np.abs(recovered - expected).max() < 1e-4


def test_canonical_frame_is_on_the_floor_at_the_origin_facing_z():
    positions = random_motion(HUMANML3D, seed=5)
    pos = canonicalize(positions, HUMANML3D)
    assert pos[..., 1].min() == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(pos[0, 0, [0, 2]], 0.0, atol=1e-12)
    assert np.allclose(facing_directions(pos[0], HUMANML3D), [0, 0, 1], atol=1e-9)


def test_features_ignore_where_the_motion_starts_and_faces():
    positions = random_motion(HUMANML3D, seed=9)
    turn = yaw_quat(np.array(1.1))
    moved = qrot(np.broadcast_to(turn, positions.shape[:-1] + (4,)), positions) + [3.0, 0.5, -2.0]
    assert np.allclose(
        positions_to_features(positions, HUMANML3D),
        positions_to_features(moved, HUMANML3D),
        atol=1e-5,
    )


@pytest.mark.parametrize("skeleton", ALL, ids=[s.name for s in ALL])
def test_rotations_rebuild_the_bones(skeleton):
    """The 6D rotations are real: re-posing the rest skeleton with them gives the motion back."""
    pos = canonicalize(random_motion(skeleton, seed=11), skeleton)
    quats = inverse_kinematics(pos, skeleton)
    swing = np.zeros_like(quats)
    swing[:, 0] = quats[:, 0]
    rebuilt = np.zeros_like(pos)
    rebuilt[:, 0] = pos[:, 0]
    for chain in skeleton.chains:
        for parent, child in zip(chain[:-1], chain[1:]):
            swing[:, child] = qmul(swing[:, parent], quats[:, child])
            rebuilt[:, child] = rebuilt[:, parent] + qrot(swing[:, child], skeleton.offsets[child])
    assert np.abs(rebuilt - pos).max() < 1e-6
    # And the stored 6D values are the first two columns of those rotation matrices.
    features = positions_to_features(pos, skeleton)
    six = features[:, feature_slices(skeleton.num_joints)["rotations"]].reshape(
        len(features), -1, 6
    )
    matrices = to_matrix(quats[:-1, 1:])
    assert np.allclose(six[..., :3], matrices[..., :, 0], atol=1e-6)
    assert np.allclose(six[..., 3:], matrices[..., :, 1], atol=1e-6)


def test_root_channels_match_the_trajectory():
    positions = random_motion(HUMANML3D, frames=60, seed=2)
    features = positions_to_features(positions, HUMANML3D)
    slices = feature_slices(22)
    pos = canonicalize(positions, HUMANML3D)
    assert np.allclose(features[:, slices["root_height"]][:, 0], pos[:-1, 0, 1], atol=1e-5)
    speed = np.linalg.norm(features[:, slices["root_lin_vel"]], axis=1)
    assert np.allclose(speed, np.linalg.norm(np.diff(pos[:, 0, [0, 2]], axis=0), axis=1), atol=1e-5)
    assert slices["contacts"].stop == HUMANML3D.feature_dim


def _family_motion(family: str) -> np.ndarray:
    for index in range(500):
        motion = make_motion(1, index)
        if motion.families == (family,):
            return motion
    raise AssertionError(f"no single {family!r} motion in the first 500")


def test_foot_contacts_standing_versus_walking():
    still = np.repeat(HUMANML3D.rest_positions()[None], 30, axis=0)
    assert foot_contacts(still, HUMANML3D).min() == 1.0

    walk = _family_motion("walk")
    contacts = walk.features[:, feature_slices(22)["contacts"]]
    middle = contacts[20:-20]
    # Each foot alternates: sometimes planted, sometimes swinging; never both feet airborne.
    for toe in (1, 3):
        assert 0.2 < middle[:, toe].mean() < 0.95
    assert np.all(middle[:, [1, 3]].max(axis=1) == 1.0)
    assert contacts.mean() < 0.9


def test_contacts_drop_when_the_feet_leave_the_floor():
    jump = _family_motion("jump")
    contacts = jump.features[:, -4:]
    heights = jump.positions[:, [7, 10, 8, 11], 1].min(axis=1)
    assert contacts[heights > 0.15].sum() == 0
    assert contacts[heights < 0.05].mean() > 0.5


def test_bad_shapes_are_rejected_with_the_expected_shape():
    with pytest.raises(ValueError, match=r"\(T, 22, 3\)"):
        positions_to_features(np.zeros((10, 21, 3)), HUMANML3D)
    with pytest.raises(ValueError, match="at least 2 frames"):
        positions_to_features(np.zeros((1, 22, 3)) + HUMANML3D.rest_positions(), HUMANML3D)
    with pytest.raises(ValueError, match="expected width 251"):
        features_to_positions(np.zeros((5, 263)), KIT.num_joints)
    with pytest.raises(ValueError, match="which way the body faces"):
        positions_to_features(np.zeros((5, 20, 3)), KINECT)
