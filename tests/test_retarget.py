"""Retargeting SMPL's 22 joints onto MSR Action3D's Kinect skeleton: on written motions (the
synthetic corpus's action programs), against the real recordings' mean body, and scored by
the action recogniser trained on the real training subjects."""

import functools
from collections import Counter

import numpy as np
import pytest

from moclip.data.action3d import ACTIONS
from moclip.data.features import (
    canonicalize,
    facing_directions,
    features_to_positions,
    positions_to_features,
)
from moclip.data.retarget import (
    SMPL22_TO_KINECT,
    Retargeting,
    action3d_body,
    bone_lengths,
    mean_body,
    retarget_features,
)
from moclip.data.synthetic import make_motion
from moclip.evaluation.recognizer import RecognizerConfig, train_recognizer
from moclip.skeletons import HUMANML3D, KINECT

FAMILIES = ("walk", "jump", "wave", "kick", "throw", "sit down", "turn", "clap")


@functools.cache
def corpus_motions(count: int = 900) -> tuple:
    """The first `count` motions of the seed-0 synthetic corpus, written once per session."""
    return tuple(make_motion(0, i) for i in range(count))


def written(family: str, count: int = 1) -> list:
    """The first `count` single-action motions of `family` in the seed-0 corpus."""
    found = [m for m in corpus_motions() if m.families == (family,)][:count]
    assert len(found) == count, f"{len(found)} {family!r} motions, wanted {count}"
    return found


@pytest.fixture(scope="module")
def body(action3d_splits) -> np.ndarray:
    return action3d_body(action3d_splits[0])


def test_the_joint_map_names_every_kinect_joint_and_only_hands_lack_a_source():
    assert list(SMPL22_TO_KINECT) == list(KINECT.joint_names)
    missing = [k for k, v in SMPL22_TO_KINECT.items() if v is None]
    assert missing == ["left_hand", "right_hand"]
    for source in filter(None, SMPL22_TO_KINECT.values()):
        HUMANML3D.index(source)
    # each side maps to the same side
    for kinect, smpl in SMPL22_TO_KINECT.items():
        if smpl and kinect.startswith(("left_", "right_")):
            assert smpl.split("_")[0] == kinect.split("_")[0]


def test_mean_body_takes_medians_then_subjects_then_sides():
    rest = KINECT.rest_positions()
    lengths = bone_lengths(rest, KINECT)

    def recording(scale: float, frames: int = 9) -> np.ndarray:
        clip = np.repeat(rest[None] * scale, frames, axis=0)
        clip[0] *= 5.0  # one wild frame: the median ignores it
        return clip

    # subject A twice (1.0 and 1.2: mean 1.1), subject B once (0.8): the mean body is 0.95
    body = mean_body([recording(1.0), recording(1.2), recording(0.8)], ["s01", "s01", "s03"])
    assert np.allclose(body[1:], 0.95 * lengths[1:])
    lopsided = rest.copy()
    lopsided[7] = lopsided[6] + 2 * (lopsided[7] - lopsided[6])  # a left hand twice as long
    sided = mean_body([np.repeat(lopsided[None], 3, axis=0)], ["s01"])
    left, right = KINECT.index("left_hand"), KINECT.index("right_hand")
    assert sided[left] == pytest.approx(sided[right]) == pytest.approx(1.5 * lengths[right])
    with pytest.raises(ValueError, match="one subject per recording"):
        mean_body([rest[None]], [])


def test_the_action3d_body_is_an_adult_of_the_recordings(body):
    thigh, shin = body[KINECT.index("left_knee")], body[KINECT.index("left_ankle")]
    forearm = body[KINECT.index("left_wrist")]
    assert 0.75 < thigh + shin < 1.1, body
    assert 0.2 < forearm < 0.35, body
    for left, right in [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19)]:
        assert body[left] == body[right]


@pytest.mark.parametrize("family", FAMILIES)
def test_a_retargeted_written_motion_keeps_its_bones_floor_and_facing(family, body):
    source = written(family)[0].positions.astype(np.float64)
    retargeting = Retargeting(body)
    out = retargeting.apply(source)
    assert out.shape == (len(source), 20, 3)
    # bone lengths: the target body's, every frame
    assert np.abs(bone_lengths(out, KINECT)[:, 1:] - body[1:]).max() < 1e-9
    # feet: the lowest foot joint is as high as the source's, scaled (0 where it stands)
    scale = retargeting.scale(source)
    feet = [j for pair in KINECT.foot_joints for j in pair]
    source_feet = [j for pair in HUMANML3D.foot_joints for j in pair]
    lowest, source_lowest = out[:, feet, 1].min(1), source[:, source_feet, 1].min(1)
    assert np.allclose(lowest, scale * source_lowest, atol=1e-9)
    assert lowest.min() == pytest.approx(0.0, abs=1e-9)
    assert out[..., 1].min() > -1e-9  # nothing below the floor
    # root travel on the floor scales with the legs
    travel = np.linalg.norm(out[-1, 0, [0, 2]] - out[0, 0, [0, 2]])
    assert travel == pytest.approx(scale * np.linalg.norm(source[-1, 0, [0, 2]] - source[0, 0, [0, 2]]))
    # facing: the hips' across-vector is the source's exactly; the facing read from hips plus
    # shoulders within a few degrees (the two bodies weigh hips and shoulders differently, so
    # a torso twisted against the hips, as in a throw, reads a little apart)
    hips = out[:, KINECT.index("right_hip")] - out[:, KINECT.index("left_hip")]
    source_hips = source[:, HUMANML3D.index("right_hip")] - source[:, HUMANML3D.index("left_hip")]
    assert np.abs(np.cross(hips, source_hips)).max() < 1e-9
    cosine = (facing_directions(out, KINECT) * facing_directions(source, HUMANML3D)).sum(-1)
    angles = np.degrees(np.arccos(np.clip(cosine, -1, 1)))
    assert np.median(angles) < 3.0 and angles.max() < 8.0, angles.max()


def test_a_hand_continues_its_forearm(body):
    out = Retargeting(body).apply(written("wave")[0].positions)
    for elbow, wrist, hand in [(5, 6, 7), (9, 10, 11)]:
        forearm = out[:, wrist] - out[:, elbow]
        hand_bone = out[:, hand] - out[:, wrist]
        assert np.abs(np.cross(forearm, hand_bone)).max() < 1e-9
        assert np.all((forearm * hand_bone).sum(-1) > 0)


def test_features_to_positions_round_trips_a_retargeted_motion(body):
    motion = written("throw")[0]
    retargeting = Retargeting(body)
    out = retargeting.apply(features_to_positions(motion.features, 22))
    features = positions_to_features(out, KINECT)
    assert features.shape == (len(out) - 1, KINECT.feature_dim)
    recovered = features_to_positions(features, KINECT.num_joints)
    assert np.abs(recovered - canonicalize(out, KINECT)[:-1]).max() < 1e-4
    # the features of a generated motion go straight to the recogniser's skeleton
    assert np.array_equal(retarget_features(motion.features, retargeting), features)


def test_bad_input_is_named(body):
    with pytest.raises(ValueError, match=r"positions must be \(T, 22, 3\)"):
        Retargeting(body).apply(np.zeros((5, 20, 3)))
    with pytest.raises(ValueError, match=r"bone lengths must be \(20,\)"):
        Retargeting(body[:-1])
    with pytest.raises(KeyError, match="no joint 'left_toe'"):
        Retargeting(body, joint_map=tuple({**SMPL22_TO_KINECT, "left_foot": "left_toe"}.items()))


def test_the_recogniser_recognises_retargeted_written_motions(action3d_splits, body):
    """Motions the corpus and MSR Action3D share, written on SMPL's skeleton and retargeted,
    are recognised as their action by the recogniser trained on the real recordings: the
    conversion keeps what the recogniser reads (sides, axes, scale)."""
    train, _ = action3d_splits
    recognizer, _ = train_recognizer(train, len(ACTIONS), RecognizerConfig(steps=60))
    retargeting = Retargeting(body)
    names = [ACTIONS[k][0] for k in sorted(ACTIONS)]
    for family, action in [("clap", "hand clap"), ("bend and pick up", "bend"), ("jog in place", "jogging")]:
        motions = [retarget_features(m.features, retargeting) for m in written(family, 6)]
        features, logits = recognizer.encode(motions)
        assert features.shape == (6, recognizer.config.feature_width)
        assert np.all(np.isfinite(features))
        top = Counter(names[i] for i in logits.argmax(1))
        assert top[action] >= 5, (family, top)
