"""MSR Action3D skeletons (Li, Zhang and Liu 2010) as a text-motion data set.

Files are `aNN_sNN_eNN_skeleton3D.txt` (action, subject, execution): rows of `x y z c`, 20 rows
per frame, the 20 Kinect joints in the order of MSR_ACTION3D_JOINTS, recorded at 15 fps. The
loader maps the joints to the root-first Kinect skeleton, turns the vertical axis into +y and
the units into metres, resamples to 20 fps, computes HumanML3D-style features, and gives each
action its name and paraphrases as captions. Splits follow the cross-subject protocol: odd
subjects train, even subjects test.

Real recordings lose tracking: the Kinect then writes every joint of the frame at exactly
(0, 0, 0). `repair_lost_frames` trims such frames at the ends, fills short gaps inside and
drops what cannot be repaired (see its docstring for the limits); `load_action3d` counts each
repair by reason, with the ids, in `MotionDataset.repairs`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moclip.data.captions import Caption
from moclip.data.dataset import FPS, DatasetError, MotionDataset, MotionItem
from moclip.data.features import positions_to_features
from moclip.data.normalization import feature_stats
from moclip.data.quaternion import qbetween, qrot
from moclip.skeletons import KINECT

SOURCE_FPS = 15
FILE_PATTERN = re.compile(r"a(\d{2})_s(\d{2})_e(\d{2})_skeleton3D\.txt$")

# Joint order of the MSR Action3D files.
MSR_ACTION3D_JOINTS = (
    "left_shoulder",
    "right_shoulder",
    "shoulder_center",
    "spine",
    "left_hip",
    "right_hip",
    "hip_center",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hand",
    "right_hand",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "left_foot",
    "right_foot",
    "head",
)
# FILE_TO_KINECT[k] = index in the file of Kinect joint k.
FILE_TO_KINECT = tuple(MSR_ACTION3D_JOINTS.index(name) for name in KINECT.joint_names)

ACTIONS: dict[int, tuple[str, ...]] = {
    1: (
        "high arm wave",
        "a person waves one arm high above the head",
        "someone raises an arm overhead and waves it",
    ),
    2: (
        "horizontal arm wave",
        "a person waves an arm from side to side in front of the body",
        "someone sweeps an arm horizontally back and forth",
    ),
    3: (
        "hammer",
        "a person hammers downward with one hand",
        "someone swings a hand up and down as if hammering a nail",
    ),
    4: (
        "hand catch",
        "a person reaches out and catches something with one hand",
        "someone grabs an object out of the air",
    ),
    5: (
        "forward punch",
        "a person punches straight forward",
        "someone throws a punch in front of them",
    ),
    6: (
        "high throw",
        "a person throws something high overhead",
        "someone throws an object upward with one arm",
    ),
    7: (
        "draw x",
        "a person draws an x in the air with one hand",
        "someone traces a cross shape in the air",
    ),
    8: (
        "draw tick",
        "a person draws a tick mark in the air",
        "someone traces a check mark with one hand",
    ),
    9: (
        "draw circle",
        "a person draws a circle in the air with one hand",
        "someone traces a circle in front of the body",
    ),
    10: ("hand clap", "a person claps both hands together", "someone claps in front of the chest"),
    11: (
        "two hand wave",
        "a person waves both hands above the head",
        "someone raises both arms and waves them",
    ),
    12: ("side-boxing", "a person punches out to the side", "someone boxes sideways with one fist"),
    13: (
        "bend",
        "a person bends forward at the waist and stands back up",
        "someone bows down and straightens up",
    ),
    14: ("forward kick", "a person kicks forward with one leg", "someone kicks straight ahead"),
    15: ("side kick", "a person kicks out to the side", "someone raises a leg sideways in a kick"),
    16: ("jogging", "a person jogs in place", "someone runs on the spot"),
    17: (
        "tennis swing",
        "a person swings an imaginary tennis racket",
        "someone makes a forehand tennis stroke",
    ),
    18: (
        "tennis serve",
        "a person serves a tennis ball overhead",
        "someone tosses a ball and serves as in tennis",
    ),
    19: ("golf swing", "a person swings a golf club", "someone takes a golf swing"),
    20: (
        "pick up and throw",
        "a person picks something up from the floor and throws it",
        "someone bends down, grabs an object and throws it",
    ),
}

SPLIT_SUBJECTS = {"train": (1, 3, 5, 7, 9), "test": (2, 4, 6, 8, 10), "all": tuple(range(1, 11))}


def read_skeleton_file(path: Path | str) -> np.ndarray:
    """Raw joints (frames, 20, 3) of one file in its own axes and units; confidence dropped."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read skeleton file ({err})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4:
            raise DatasetError(
                f"{path}:{number}: expected 4 numbers 'x y z c', got "
                f"{len(fields)} field(s): {line.strip()[:60]!r}"
            )
        try:
            row = [float(v) for v in fields[:3]]
        except ValueError:
            raise DatasetError(f"{path}:{number}: not a number in {line.strip()[:60]!r}") from None
        if not all(math.isfinite(v) for v in row):
            raise DatasetError(
                f"{path}:{number}: NaN or infinite coordinate in {line.strip()[:60]!r}"
            )
        rows.append(row)
    if not rows or len(rows) % 20:
        raise DatasetError(
            f"{path}: {len(rows)} joint rows, expected a positive multiple of 20 "
            f"(20 joints per frame)"
        )
    return np.asarray(rows).reshape(-1, 20, 3)


def to_kinect_metres(raw: np.ndarray, units: str = "auto") -> np.ndarray:
    """File joints to the root-first Kinect skeleton, y up, metres.

    The vertical axis is the one along which head and feet are farthest apart, signed so the
    head is above; units are inferred from the body's height (mm, cm or m) unless given.
    """
    joints = raw[:, FILE_TO_KINECT].astype(np.float64)
    head = joints[:, KINECT.index("head")]
    feet = joints[:, [KINECT.index("left_foot"), KINECT.index("right_foot")]].mean(1)
    up = np.median(head - feet, axis=0)
    height = float(np.linalg.norm(up))
    if height == 0.0:
        raise ValueError("head and feet coincide; cannot find the vertical axis")
    axis = int(np.argmax(np.abs(up)))
    vertical = np.zeros(3)
    vertical[axis] = np.sign(up[axis])
    joints = qrot(
        np.broadcast_to(qbetween(vertical, np.array([0.0, 1.0, 0.0])), joints.shape[:-1] + (4,)),
        joints,
    )
    scale = {"m": 1.0, "cm": 0.01, "mm": 0.001}
    if units == "auto":
        units = "mm" if height > 30 else "cm" if height > 3 else "m"
    if units not in scale:
        raise ValueError(f"units must be one of auto, m, cm, mm; got {units!r}")
    return joints * scale[units]


def resample(positions: np.ndarray, source_fps: float, target_fps: float = FPS) -> np.ndarray:
    """Linear interpolation of positions (T, J, 3) from source_fps to target_fps."""
    if len(positions) < 2 or source_fps == target_fps:
        return positions
    duration = (len(positions) - 1) / source_fps
    t_new = np.arange(0.0, duration + 1e-9, 1.0 / target_fps)
    t_old = np.arange(len(positions)) / source_fps
    flat = positions.reshape(len(positions), -1)
    out = np.stack([np.interp(t_new, t_old, flat[:, k]) for k in range(flat.shape[1])], axis=1)
    return out.reshape(len(t_new), *positions.shape[1:])


def action_captions(action: int) -> tuple[Caption, ...]:
    """The action's name and paraphrases as captions (tokens left untagged: `word/X`)."""
    if action not in ACTIONS:
        raise DatasetError(f"unknown MSR Action3D action a{action:02d}; expected a01..a20")
    return tuple(Caption(text, tuple(f"{w}/X" for w in text.split())) for text in ACTIONS[action])


# Limits of the lost-frame repair (see repair_lost_frames).
MAX_GAP_S = 0.5
MAX_LOST_SHARE = 0.5
MIN_SOURCE_FRAMES = 10


def lost_frames(raw: np.ndarray) -> np.ndarray:
    """(T,) bool: frames where tracking was lost, every joint exactly at (0, 0, 0)."""
    return np.all(raw == 0.0, axis=(1, 2))


def repair_lost_frames(
    raw: np.ndarray,
    source_fps: float = SOURCE_FPS,
    max_gap_s: float = MAX_GAP_S,
    max_lost_share: float = MAX_LOST_SHARE,
    min_frames: int = MIN_SOURCE_FRAMES,
) -> tuple[np.ndarray | None, dict[str, int], str | None]:
    """(repaired joints or None, {"trimmed": n, "filled": n}, reason dropped or None).

    Lost frames at the start and end are trimmed; a run of lost frames inside the sequence is
    filled by linear interpolation between the frames around it if it lasts at most
    `max_gap_s` (0.5 s, 7 frames at 15 fps). The limits, from the real recordings: the
    actions last 1-3 s (median 39 frames), and the long gaps (9-33 frames) all fall where the
    body bends out of the sensor's view (bend, pick up and throw), so a straight line across
    one would replace the bottom of the bend by a shallower motion that nobody performed: such
    a sequence is dropped ("gap_too_long") rather than invented. Half a second is shorter than
    any action's main stroke, so a filled gap smooths a stretch of it without removing it. A
    recording with more than `max_lost_share` (half) of its frames lost ("mostly_lost") keeps
    less than half of the action performed, and one with fewer than `min_frames` (10, 0.67 s)
    tracked frames left ("too_short") is too short to carry an action: both are dropped.
    """
    lost = lost_frames(raw)
    total = len(raw)
    if lost.all():
        return None, {}, "all_lost"
    if lost.sum() > max_lost_share * total:
        return None, {}, "mostly_lost"
    kept = np.flatnonzero(~lost)
    first, last = int(kept[0]), int(kept[-1])
    joints, inner = raw[first : last + 1], lost[first : last + 1]
    counts = {"trimmed": total - len(joints), "filled": int(inner.sum())}
    if len(joints) - counts["filled"] < min_frames:
        return None, counts, "too_short"
    if inner.any():
        edges = np.flatnonzero(np.diff(np.concatenate(([0], inner.astype(np.int8), [0]))))
        longest = int(np.max(edges[1::2] - edges[::2]))
        if longest > max_gap_s * source_fps:
            return None, counts, "gap_too_long"
        frames = np.arange(len(joints))
        flat = joints.reshape(len(joints), -1).copy()
        good = ~inner
        for k in range(flat.shape[1]):
            flat[inner, k] = np.interp(frames[inner], frames[good], flat[good, k])
        joints = flat.reshape(joints.shape)
    return joints, counts, None


@dataclass
class RepairLog:
    """What the loader did to the recordings, by reason, with the ids: `trimmed` and `filled`
    map an id to its number of source frames, `dropped` a reason to its ids."""

    trimmed: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def add(self, motion_id: str, counts: dict[str, int], reason: str | None) -> None:
        if reason is not None:
            self.dropped.setdefault(reason, []).append(motion_id)
            return
        for name, log in (("trimmed", self.trimmed), ("filled", self.filled)):
            if counts.get(name):
                log[motion_id] = counts[name]

    def to_dict(self) -> dict:
        """Plain values (JSON, MLflow) with the counts beside the ids."""
        return {
            "trimmed": dict(self.trimmed),
            "filled": dict(self.filled),
            "dropped": {reason: list(ids) for reason, ids in sorted(self.dropped.items())},
            "counts": self.counts(),
        }

    def counts(self) -> dict[str, int]:
        """Sequences per repair: trimmed, filled, and dropped by reason."""
        out = {"trimmed": len(self.trimmed), "filled": len(self.filled)}
        out.update({f"dropped_{r}": len(ids) for r, ids in sorted(self.dropped.items())})
        return out


def action_of(motion_id: str) -> int:
    """The action number (1-20) of an id `aNN_sNN_eNN`."""
    match = re.match(r"a(\d{2})_s\d{2}_e\d{2}", motion_id)
    if not match:
        raise DatasetError(f"{motion_id!r} is not an MSR Action3D id aNN_sNN_eNN")
    return int(match.group(1))


def load_action3d(
    root: Path | str,
    split: str,
    units: str = "auto",
    source_fps: float = SOURCE_FPS,
    min_frames: int = MIN_SOURCE_FRAMES,
    max_gap_s: float = MAX_GAP_S,
    max_lost_share: float = MAX_LOST_SHARE,
) -> MotionDataset:
    """MSR Action3D skeleton files under ROOT as a MotionDataset on the Kinect skeleton.

    Lost frames are repaired or the sequence dropped (`repair_lost_frames`; what was done is
    in `dataset.repairs`, the drops also counted in `dataset.dropped`), so a defect of one
    recording never stops the others; a file not in the format still raises DatasetError
    naming it. Normalisation statistics come from the training subjects, whichever split is
    loaded. Each item's `label` is its action, 0-19 (a01 is 0).
    """
    root = Path(root)
    if split not in SPLIT_SUBJECTS:
        raise DatasetError(
            f"unknown MSR Action3D split {split!r}; expected one of "
            f"{', '.join(SPLIT_SUBJECTS)} (cross-subject: odd subjects train)"
        )
    if not root.is_dir():
        raise DatasetError(
            f"{root}: MSR Action3D folder not found; get the skeleton files from the data set's "
            f"authors (see docs/USAGE.md, 'MSR Action3D') and set data.root to their folder"
        )
    files = sorted(p for p in root.rglob("*_skeleton3D.txt") if FILE_PATTERN.search(p.name))
    if not files:
        raise DatasetError(f"{root}: no MSR Action3D files named aNN_sNN_eNN_skeleton3D.txt")
    items: dict[str, list[MotionItem]] = {"train": [], "test": []}
    repairs = {"train": RepairLog(), "test": RepairLog()}
    for path in files:
        action, subject, _ = (int(g) for g in FILE_PATTERN.search(path.name).groups())
        part = "train" if subject in SPLIT_SUBJECTS["train"] else "test"
        motion_id = path.name[: -len("_skeleton3D.txt")]
        raw, counts, reason = repair_lost_frames(
            read_skeleton_file(path), source_fps, max_gap_s, max_lost_share, min_frames
        )
        repairs[part].add(motion_id, counts, reason)
        if raw is None:
            continue
        try:
            positions = resample(to_kinect_metres(raw, units), source_fps)
            features = positions_to_features(positions, KINECT)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as err:
            raise DatasetError(f"{path}: {err}") from None
        if not np.all(np.isfinite(features)):
            raise DatasetError(f"{path}: the skeleton's geometry gives NaN or infinite features")
        captions = action_captions(action)
        items[part].append(
            MotionItem(motion_id, motion_id, features, captions, label=action - 1)
        )
    if not items["train"]:
        raise DatasetError(f"{root}: no usable training files (odd subjects s01, s03, ...)")
    mean, std = feature_stats(item.features for item in items["train"])
    parts = ("train", "test") if split == "all" else (split,)
    chosen = [item for part in parts for item in items[part]]
    log = RepairLog()
    for part in parts:
        log.trimmed.update(repairs[part].trimmed)
        log.filled.update(repairs[part].filled)
        for reason, ids in repairs[part].dropped.items():
            log.dropped.setdefault(reason, []).extend(ids)
    dropped = Counter({reason: len(ids) for reason, ids in log.dropped.items()})
    return MotionDataset(root.name, split, KINECT, chosen, mean, std, dropped, log.to_dict())
