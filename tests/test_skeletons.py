import numpy as np
import pytest

from moclip.skeletons import (
    HUMANML3D,
    KINECT,
    KIT,
    SKELETONS,
    Skeleton,
    feature_dim,
    get_skeleton,
    skeleton_for_feature_dim,
)


@pytest.mark.parametrize(
    "skeleton, joints, width", [(HUMANML3D, 22, 263), (KIT, 21, 251), (KINECT, 20, 239)]
)
def test_joint_counts_and_feature_widths(skeleton, joints, width):
    assert skeleton.num_joints == joints
    assert skeleton.feature_dim == width == feature_dim(joints)
    assert skeleton_for_feature_dim(width) is skeleton


@pytest.mark.parametrize("skeleton", list(SKELETONS.values()), ids=list(SKELETONS))
def test_structure_is_consistent(skeleton):
    assert skeleton.parents[0] == -1
    assert len(skeleton.bones) == skeleton.num_joints - 1
    # Every non-root joint is reached by exactly one chain.
    reached = [c for chain in skeleton.chains for c in chain[1:]]
    assert sorted(reached) == list(range(1, skeleton.num_joints))
    # Rest pose stands on the floor with the head on top and faces +z (left side at +x).
    rest = skeleton.rest_positions()
    assert rest[:, 1].min() == pytest.approx(0.0)
    assert 1.2 < rest[:, 1].max() < 2.0
    r_hip, l_hip, r_sh, l_sh = skeleton.face_joints
    assert rest[l_hip, 0] > rest[r_hip, 0] and rest[l_sh, 0] > rest[r_sh, 0]
    (l_ankle, l_toe), (r_ankle, r_toe) = skeleton.foot_joints
    assert rest[l_toe, 2] > rest[l_ankle, 2] and rest[r_toe, 2] > rest[r_ankle, 2]
    left_hand, right_hand = skeleton.hands
    assert rest[left_hand, 0] > 0 > rest[right_hand, 0]
    # The hands and feet are leaves of the tree.
    for end in (*skeleton.hands, *skeleton.feet):
        assert end not in skeleton.parents


def test_cross_limb_links_join_both_hands_and_both_feet():
    links = HUMANML3D.cross_limb_links()
    names = {tuple(HUMANML3D.joint_names[j] for j in link) for link in links}
    assert names == {("left_wrist", "right_wrist"), ("left_foot", "right_foot")}
    assert len(HUMANML3D.cross_limb_links(hand_foot=True)) == 6
    # None of them is a bone already.
    assert not set(links) & {tuple(sorted(b)) for b in HUMANML3D.bones}


def test_lookup_errors_name_what_is_known():
    with pytest.raises(KeyError, match="humanml3d"):
        get_skeleton("smplx")
    with pytest.raises(ValueError, match="263"):
        skeleton_for_feature_dim(100)
    with pytest.raises(KeyError, match="no joint 'tail'"):
        HUMANML3D.index("tail")


def test_invalid_skeleton_is_rejected():
    with pytest.raises(ValueError, match="chain"):
        Skeleton(
            "bad",
            ("a", "b", "c"),
            (-1, 0, 1),
            np.zeros((3, 3)),
            ((0, 2),),
            (0, 0, 0, 0),
            ((0, 0), (0, 0)),
            (0, 0),
            (0, 0),
        )
    with pytest.raises(ValueError, match="parent"):
        Skeleton(
            "bad",
            ("a", "b"),
            (-1, 5),
            np.zeros((2, 3)),
            ((0, 1),),
            (0, 0, 0, 0),
            ((0, 0), (0, 0)),
            (0, 0),
            (0, 0),
        )
