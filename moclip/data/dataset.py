"""Text-motion data sets in memory, and the loader for HumanML3D-layout folders.

The layout (HumanML3D, KIT-ML, and the synthetic corpus alike):

    ROOT/new_joint_vecs/ID.npy   features, T x D (263 for 22 joints, 251 for 21)
    ROOT/new_joints/ID.npy       joint positions, T x J x 3 (optional, for rendering)
    ROOT/texts/ID.txt            caption lines `caption#word/POS ...#start#end`
    ROOT/{train,val,test,all}.txt  one motion id per line
    ROOT/Mean.npy, ROOT/Std.npy  per-dimension statistics of the training split (optional)

A caption with non-zero start/end (seconds) describes that sub-clip only, which becomes an item
of its own, as in HumanML3D's loader.
"""

from __future__ import annotations

import hashlib
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moclip.data.captions import Caption, CaptionError, parse_caption_line
from moclip.skeletons import Skeleton, skeleton_for_feature_dim

FPS = 20
MIN_FRAMES = 40
SPLITS = ("train", "val", "test", "all")


class DatasetError(ValueError):
    """A data folder or file that does not hold what the loader expects; the message names it."""


@dataclass(frozen=True)
class MotionItem:
    """One motion (or sub-clip) with the captions that describe it."""

    item_id: str  # the motion id, or "ID#start-end" for a sub-clip
    motion_id: str
    features: np.ndarray = field(repr=False)  # (T, D) float32
    captions: tuple[Caption, ...]
    label: int | None = None  # a class (MSR Action3D's action, 0-19) where the data has one

    @property
    def num_frames(self) -> int:
        return len(self.features)


@dataclass
class MotionDataset:
    """The items of one split, their skeleton, normalisation statistics and what was dropped."""

    name: str
    split: str
    skeleton: Skeleton
    items: list[MotionItem]
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    dropped: Counter = field(default_factory=Counter)
    # what the loader repaired or dropped, by reason with the ids (MSR Action3D's lost frames)
    repairs: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> MotionItem:
        return self.items[index]

    @property
    def motion_ids(self) -> list[str]:
        """Distinct motion ids in item order."""
        return list(dict.fromkeys(item.motion_id for item in self.items))

    @property
    def num_pairs(self) -> int:
        """Number of (caption, motion) pairs."""
        return sum(len(item.captions) for item in self.items)

    def subset(self, motion_ids: list[str] | set[str]) -> "MotionDataset":
        """The items whose motion id is in `motion_ids` (all captions of a motion stay together)."""
        keep = set(motion_ids)
        unknown = keep - set(self.motion_ids)
        if unknown:
            raise KeyError(
                f"{len(unknown)} motion id(s) not in {self.name}/{self.split}, "
                f"e.g. {sorted(unknown)[:3]}"
            )
        items = [item for item in self.items if item.motion_id in keep]
        return MotionDataset(
            self.name,
            self.split,
            self.skeleton,
            items,
            self.mean,
            self.std,
            Counter(self.dropped),
            self.repairs,
        )

    def fingerprint(self) -> str:
        """sha256 over ids, caption lines and feature bytes: equal data, equal fingerprint."""
        digest = hashlib.sha256(f"{self.skeleton.name}:{self.split}".encode())
        for item in self.items:
            digest.update(item.item_id.encode())
            digest.update(np.ascontiguousarray(item.features, dtype=np.float32).tobytes())
            for caption in item.captions:
                digest.update(f"{caption.text}#{caption.start}#{caption.end}".encode())
        return digest.hexdigest()


def read_split(root: Path, split: str) -> list[str]:
    """Motion ids listed in ROOT/SPLIT.txt, blank lines ignored."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    path = root / f"{split}.txt"
    if not path.is_file():
        present = sorted(p.name for p in root.glob("*.txt")) if root.is_dir() else []
        raise DatasetError(
            f"{path}: split file not found; expected one motion id per line "
            f"(text files in {root}: {present or 'none'})"
        )
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"{path}: split file lists no motion ids")
    return ids


def load_array(path: Path, what: str) -> np.ndarray:
    """np.load with errors that name the file; rejects NaN and inf."""
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise DatasetError(
            f"{path}: cannot read {what} as a .npy array ({err}); the file may be truncated "
            f"or not written by numpy.save"
        ) from None
    if not np.issubdtype(array.dtype, np.number):
        raise DatasetError(f"{path}: {what} must be numeric, got dtype {array.dtype}")
    if not np.all(np.isfinite(array)):
        bad = np.argwhere(~np.isfinite(array))[0]
        raise DatasetError(
            f"{path}: {what} contains NaN or infinite values (first at index "
            f"{tuple(int(i) for i in bad)})"
        )
    return array


def read_captions(path: Path) -> list[Caption]:
    """All caption lines of a texts/ID.txt file; an empty line or caption is an error."""
    if not path.is_file():
        raise DatasetError(f"{path}: caption file not found")
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not a caption
    if not lines:
        raise DatasetError(f"{path}: no caption lines")
    captions = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise DatasetError(f"{path}:{number}: empty caption line")
        try:
            captions.append(parse_caption_line(line, f"{path}:{number}"))
        except CaptionError as err:
            raise DatasetError(str(err)) from None
    return captions


def items_from_captions(
    motion_id: str,
    features: np.ndarray,
    captions: list[Caption],
    min_frames: int,
    fps: int,
    dropped: Counter,
) -> list[MotionItem]:
    """One item for the whole-clip captions and one per distinct (start, end) sub-clip."""
    groups: dict[tuple[float, float], list[Caption]] = defaultdict(list)
    for caption in captions:
        groups[(caption.start, caption.end)].append(caption)
    items = []
    for (start, end), group in groups.items():
        if start == 0.0 and end == 0.0:
            clip, item_id = features, motion_id
        else:
            clip = features[int(start * fps) : int(end * fps)]
            item_id = f"{motion_id}#{start:g}-{end:g}"
        if len(clip) < min_frames:
            dropped["too_short" if clip is features else "subclip_too_short"] += 1
            continue
        items.append(MotionItem(item_id, motion_id, clip, tuple(group)))
    return items


def load_dataset(
    root: Path | str,
    split: str,
    skeleton: Skeleton | None = None,
    min_frames: int = MIN_FRAMES,
    fps: int = FPS,
) -> MotionDataset:
    """Load SPLIT of a HumanML3D-layout folder (HumanML3D, KIT-ML or the synthetic corpus).

    The skeleton follows from the feature width (of Mean.npy if present, else of the first
    motion) unless given. Motions (and sub-clips) shorter
    than `min_frames` are dropped and counted in `dataset.dropped`.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: data folder not found")
    ids = read_split(root, split)
    mean = std = None
    if (root / "Mean.npy").is_file() and (root / "Std.npy").is_file():
        # The statistics fix the feature width before any motion is read, so one bad motion
        # file is blamed on itself rather than on every file after it.
        mean = load_array(root / "Mean.npy", "mean").astype(np.float32)
        std = load_array(root / "Std.npy", "std").astype(np.float32)
        if skeleton is None and mean.ndim == 1:
            try:
                skeleton = skeleton_for_feature_dim(mean.shape[0])
            except ValueError as err:
                raise DatasetError(f"{root / 'Mean.npy'}: {err}") from None
        for path, array in ((root / "Mean.npy", mean), (root / "Std.npy", std)):
            if skeleton is not None and array.shape != (skeleton.feature_dim,):
                raise DatasetError(
                    f"{path}: expected shape ({skeleton.feature_dim},), got {array.shape}"
                )
        if np.any(std <= 0):
            raise DatasetError(f"{root / 'Std.npy'}: standard deviations must be positive")
    items: list[MotionItem] = []
    dropped: Counter = Counter()
    for motion_id in ids:
        feat_path = root / "new_joint_vecs" / f"{motion_id}.npy"
        text_path = root / "texts" / f"{motion_id}.txt"
        if not feat_path.is_file():
            raise DatasetError(
                f"{feat_path}: no motion features for id {motion_id!r} listed in "
                f"{root / (split + '.txt')}"
            )
        if not text_path.is_file():
            raise DatasetError(
                f"{text_path}: no captions for id {motion_id!r} listed in {root / (split + '.txt')}"
            )
        features = load_array(feat_path, "motion features")
        if features.ndim != 2:
            raise DatasetError(
                f"{feat_path}: motion features must be frames x dims, got shape {features.shape}"
            )
        if skeleton is None:
            try:
                skeleton = skeleton_for_feature_dim(features.shape[1])
            except ValueError as err:
                raise DatasetError(f"{feat_path}: {err}") from None
        if features.shape[1] != skeleton.feature_dim:
            raise DatasetError(
                f"{feat_path}: features have width {features.shape[1]}, expected "
                f"{skeleton.feature_dim} for the {skeleton.name} skeleton "
                f"({skeleton.num_joints} joints)"
            )
        captions = read_captions(text_path)
        items += items_from_captions(
            motion_id, features.astype(np.float32, copy=False), captions, min_frames, fps, dropped
        )
    return MotionDataset(root.name, split, skeleton, items, mean, std, dropped)


def load_joints(root: Path | str, motion_id: str) -> np.ndarray:
    """Joint positions (T, J, 3) of one motion from ROOT/new_joints/ID.npy."""
    path = Path(root) / "new_joints" / f"{motion_id}.npy"
    joints = load_array(path, "joint positions")
    if joints.ndim != 3 or joints.shape[-1] != 3:
        raise DatasetError(
            f"{path}: joint positions must be frames x joints x 3, got shape {joints.shape}"
        )
    return joints
