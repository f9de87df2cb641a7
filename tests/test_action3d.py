import numpy as np
import pytest

from moclip.data.action3d import (
    ACTIONS,
    FILE_TO_KINECT,
    MSR_ACTION3D_JOINTS,
    load_action3d,
    read_skeleton_file,
    resample,
)
from moclip.data.dataset import DatasetError
from moclip.data.features import canonicalize, features_to_positions
from moclip.skeletons import KINECT
from tests.helpers import random_motion


def write_action3d_file(path, positions_m, z_up=True, millimetres=True):
    """Write Kinect positions (T, 20, 3), y up, metres, as an MSR Action3D skeleton3D file."""
    file_order = np.empty_like(positions_m)
    file_order[:, list(FILE_TO_KINECT)] = positions_m
    if z_up:  # (x, y, z) -> (x, -z, y): a proper rotation that puts height on the third axis
        file_order = np.stack([file_order[..., 0], -file_order[..., 2], file_order[..., 1]], -1)
    if millimetres:
        file_order = file_order * 1000.0
    rows = [f"{x:.6f} {y:.6f} {z:.6f} 1" for x, y, z in file_order.reshape(-1, 3)]
    path.write_text("\n".join(rows) + "\n")


@pytest.fixture()
def action3d_root(tmp_path):
    root = tmp_path / "MSRAction3D"
    root.mkdir()
    motions = {}
    for action in (1, 5, 19):
        for subject in (1, 2, 3, 4):
            motion = random_motion(KINECT, frames=46, seed=action * 10 + subject)
            name = f"a{action:02d}_s{subject:02d}_e01_skeleton3D.txt"
            write_action3d_file(root / name, motion)
            motions[name] = motion
    return root, motions


def test_file_joint_order_is_a_permutation_of_the_kinect_skeleton():
    assert sorted(FILE_TO_KINECT) == list(range(20))
    assert MSR_ACTION3D_JOINTS[FILE_TO_KINECT[0]] == "hip_center"
    assert len(ACTIONS) == 20 and ACTIONS[19][0] == "golf swing"


def test_cross_subject_splits_captions_and_features(action3d_root):
    root, motions = action3d_root
    train = load_action3d(root, "train")
    test = load_action3d(root, "test")
    assert {m.split("_")[1] for m in train.motion_ids} == {"s01", "s03"}
    assert {m.split("_")[1] for m in test.motion_ids} == {"s02", "s04"}
    assert len(load_action3d(root, "all")) == 12
    item = next(i for i in test.items if i.motion_id.startswith("a19"))
    assert item.captions[0].text == "golf swing" and len(item.captions) == 3
    # 46 frames at 15 fps last 3 s: 61 frames at 20 fps, 60 feature frames of width 239.
    assert item.features.shape == (60, 239)
    assert train.mean.shape == (239,) and np.allclose(test.mean, train.mean)


def test_axes_units_and_frame_rate_are_converted(action3d_root):
    root, motions = action3d_root
    data = load_action3d(root, "all")
    item = next(i for i in data.items if i.motion_id == "a05_s02_e01")
    original = resample(motions["a05_s02_e01_skeleton3D.txt"], 15, 20)
    expected = canonicalize(original, KINECT)[:-1]
    assert np.abs(features_to_positions(item.features, 20) - expected).max() < 1e-3


def test_resample_keeps_duration_and_endpoints():
    positions = np.linspace(0, 1, 16)[:, None, None] * np.ones((1, 2, 3))
    out = resample(positions, 15, 20)
    assert len(out) == 21 and np.allclose(out[0], 0) and np.allclose(out[-1], 1)
    assert np.allclose(np.diff(out[:, 0, 0]), 0.05)


def test_bad_files_are_named(tmp_path):
    bad = tmp_path / "a01_s01_e01_skeleton3D.txt"
    bad.write_text("1 2 3 1\n" * 30)
    with pytest.raises(DatasetError, match="30 joint rows, expected a positive multiple of 20"):
        read_skeleton_file(bad)
    bad.write_text("1 2 3\n" * 20)
    with pytest.raises(DatasetError, match=r"skeleton3D.txt:1: expected 4 numbers"):
        read_skeleton_file(bad)
    bad.write_text("1 2 x 1\n" * 20)
    with pytest.raises(DatasetError, match="not a number"):
        read_skeleton_file(bad)
    with pytest.raises(DatasetError, match="no MSR Action3D files"):
        load_action3d(tmp_path / "empty", "train")
    with pytest.raises(DatasetError, match="unknown MSR Action3D split 'val'"):
        load_action3d(tmp_path, "val")
