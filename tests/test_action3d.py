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
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no MSR Action3D files"):
        load_action3d(tmp_path / "empty", "train")
    with pytest.raises(DatasetError, match="unknown MSR Action3D split 'val'"):
        load_action3d(tmp_path, "val")


# --- the real recordings, and corrupted copies of them ------------------------------------


def test_the_real_recordings_load_with_their_lost_frames_repaired_or_dropped(action3d_splits):
    train, test = action3d_splits
    assert (len(train), len(test)) == (288, 261)
    assert {item.label for item in train.items} == set(range(20))
    assert all(item.label == int(item.motion_id[1:3]) - 1 for item in test.items)
    repairs = train.repairs
    assert repairs["trimmed"] == {"a13_s09_e01": 12}  # 12 lost frames at its end
    assert repairs["filled"] == {"a20_s07_e03": 7}  # a 7-frame gap inside: 0.47 s
    assert repairs["dropped"]["all_lost"] == ["a13_s09_e02"]
    assert repairs["dropped"]["mostly_lost"] == ["a13_s09_e03"]  # 740 of 936 frames
    assert sorted(test.repairs["dropped"]["gap_too_long"])[:2] == ["a13_s02_e02", "a13_s02_e03"]
    assert test.repairs["counts"] == {
        "trimmed": 0,
        "filled": 0,
        "dropped_gap_too_long": 9,
        "dropped_mostly_lost": 5,
    }
    assert train.dropped == {"all_lost": 1, "mostly_lost": 1, "gap_too_long": 2}
    kept = {item.motion_id for item in train.items + test.items}
    dropped = {i for part in (train, test) for ids in part.repairs["dropped"].values() for i in ids}
    assert not kept & dropped and len(kept) + len(dropped) == 567
    for item in train.items + test.items:
        assert np.all(np.isfinite(item.features)) and item.features.shape[1] == 239


def test_a_filled_gap_is_a_straight_line_between_the_frames_around_it(msr_action3d):
    from moclip.data.action3d import repair_lost_frames

    raw = read_skeleton_file(msr_action3d / "a20_s07_e03_skeleton3D.txt")
    lost = np.flatnonzero(np.all(raw == 0, axis=(1, 2)))
    repaired, counts, reason = repair_lost_frames(raw)
    assert reason is None and counts == {"trimmed": 0, "filled": 7} and len(repaired) == len(raw)
    before, after = repaired[lost[0] - 1], repaired[lost[-1] + 1]
    middle = repaired[lost[3]]  # 4 of 8 steps from the frame before to the frame after
    assert np.allclose(middle, before + (after - before) * 4 / 8)


def copy_real(msr_action3d, tmp_path, names):
    root = tmp_path / "MSRAction3D"
    root.mkdir(exist_ok=True)
    for name in names:
        (root / name).write_bytes((msr_action3d / name).read_bytes())
    return root


def test_corrupted_copies_of_real_files_are_named_with_their_line(msr_action3d, tmp_path):
    name = "a01_s01_e01_skeleton3D.txt"
    lines = (msr_action3d / name).read_text().splitlines()
    cases = {
        "columns": (lambda ls: ls[:6] + ["0.1 0.2 0.3"] + ls[7:], r":7: expected 4 numbers"),
        "number": (lambda ls: ls[:9] + ["0.1 abc 0.3 1"] + ls[10:], r":10: not a number"),
        "nan": (lambda ls: ls[:41] + ["nan 0.2 0.3 1"] + ls[42:], r":42: NaN or infinite"),
        "inf": (lambda ls: ls[:2] + ["0.1 inf 0.3 1"] + ls[3:], r":3: NaN or infinite"),
        "rows": (lambda ls: ls[:-3], r": \d+ joint rows, expected a positive multiple of 20"),
    }
    for case, (corrupt, message) in cases.items():
        root = tmp_path / case
        root.mkdir()
        (root / name).write_text("\n".join(corrupt(list(lines))) + "\n")
        with pytest.raises(DatasetError, match=f"{name}{message}") as err:
            load_action3d(root, "train")
        assert "\n" not in str(err.value)


def test_geometry_errors_name_the_file_and_defects_of_one_recording_spare_the_others(
    msr_action3d, tmp_path
):
    names = ["a01_s01_e01_skeleton3D.txt", "a05_s03_e02_skeleton3D.txt"]
    root = copy_real(msr_action3d, tmp_path, names)
    raw = read_skeleton_file(root / names[0])
    # every joint at one point that is not the origin: no vertical axis can be found
    collapsed = root / "a02_s01_e01_skeleton3D.txt"
    collapsed.write_text("0.5 0.5 2.5 1\n" * (20 * 30))
    with pytest.raises(DatasetError, match=r"a02_s01_e01_skeleton3D.txt: head and feet"):
        load_action3d(root, "train")
    collapsed.unlink()

    def write(name, joints):
        rows = [f"{x} {y} {z} 1" for x, y, z in joints.reshape(-1, 3)]
        (root / name).write_text("\n".join(rows) + "\n")

    lost = raw.copy()
    lost[:] = 0.0  # tracking lost throughout
    write("a03_s01_e01_skeleton3D.txt", lost)
    gap = raw.copy()
    gap[10:20] = 0.0  # 10 frames (0.67 s) inside: more than the 0.5 s a fill may span
    write("a04_s01_e01_skeleton3D.txt", gap)
    short_gap = raw.copy()
    short_gap[10:14] = 0.0
    short_gap[:3] = 0.0
    write("a06_s01_e01_skeleton3D.txt", short_gap)
    data = load_action3d(root, "train")
    assert sorted(data.motion_ids) == ["a01_s01_e01", "a05_s03_e02", "a06_s01_e01"]
    assert data.repairs["dropped"] == {
        "all_lost": ["a03_s01_e01"],
        "gap_too_long": ["a04_s01_e01"],
    }
    assert data.repairs["trimmed"] == {"a06_s01_e01": 3}
    assert data.repairs["filled"] == {"a06_s01_e01": 4}
    repaired = next(i for i in data.items if i.motion_id == "a06_s01_e01")
    assert np.all(np.isfinite(repaired.features))


def test_a_missing_folder_says_where_to_get_the_data(tmp_path):
    with pytest.raises(DatasetError, match="MSR Action3D folder not found; get the skeleton"):
        load_action3d(tmp_path / "nowhere", "train")
