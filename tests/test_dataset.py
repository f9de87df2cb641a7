import shutil

import numpy as np
import pytest

from moclip.data.captions import Caption, CaptionError, format_caption_line, parse_caption_line
from moclip.data.dataset import DatasetError, load_dataset, load_joints
from moclip.data.features import positions_to_features
from moclip.skeletons import KIT
from tests.helpers import random_motion


@pytest.fixture()
def corpus(tiny_corpus, tmp_path):
    """A private copy of the tiny corpus that a test may break."""
    return shutil.copytree(tiny_corpus, tmp_path / "copy")


def first_id(root, split="train"):
    return (root / f"{split}.txt").read_text().split()[0]


def test_loads_each_split_with_captions_and_stats(tiny_corpus):
    train = load_dataset(tiny_corpus, "train")
    test = load_dataset(tiny_corpus, "test")
    assert train.skeleton.name == "humanml3d"
    assert len(train) == 48 and len(test) == 9 and train.num_pairs == 144
    assert not set(train.motion_ids) & set(test.motion_ids)
    item = train[0]
    assert item.features.dtype == np.float32 and item.features.shape[1] == 263
    assert len(item.captions) == 3 and item.captions[0].text.endswith(".")
    assert train.mean.shape == (263,) and np.all(train.std > 0)
    joints = load_joints(tiny_corpus, item.motion_id)
    assert joints.shape == (item.num_frames, 22, 3)
    assert train.fingerprint() == load_dataset(tiny_corpus, "train").fingerprint()
    assert train.fingerprint() != test.fingerprint()


def test_subset_keeps_all_captions_of_a_motion(tiny_corpus):
    train = load_dataset(tiny_corpus, "train")
    ids = train.motion_ids[:5]
    part = train.subset(ids)
    assert part.motion_ids == ids and part.num_pairs == 15
    with pytest.raises(KeyError, match="not in"):
        train.subset(["nope"])


def test_sub_clip_captions_become_items_and_short_motions_are_dropped(corpus):
    motion_id = first_id(corpus)
    frames = len(np.load(corpus / "new_joint_vecs" / f"{motion_id}.npy"))
    text = corpus / "texts" / f"{motion_id}.txt"
    text.write_text(
        text.read_text() + "a person waves.#a/DET person/NOUN wave/VERB#0.0#2.0\n"
        "a person nods.#a/DET person/NOUN nod/VERB#0.5#1.0\n"
    )
    short_id = (corpus / "train.txt").read_text().split()[1]
    feats = np.load(corpus / "new_joint_vecs" / f"{short_id}.npy")
    np.save(corpus / "new_joint_vecs" / f"{short_id}.npy", feats[:39])
    data = load_dataset(corpus, "train")
    items = {item.item_id: item for item in data.items}
    sub = items[f"{motion_id}#0-2"]
    assert sub.motion_id == motion_id and sub.num_frames == min(40, frames)
    assert np.array_equal(sub.features, items[motion_id].features[:40])
    assert f"{motion_id}#0.5-1" not in items  # 10 frames: too short
    assert short_id not in items
    assert data.dropped == {"too_short": 1, "subclip_too_short": 1}


def test_kit_width_folder_loads_on_the_kit_skeleton(tmp_path):
    root = tmp_path / "KIT-ML"
    (root / "new_joint_vecs").mkdir(parents=True)
    (root / "texts").mkdir()
    for k in range(3):
        feats = positions_to_features(random_motion(KIT, frames=60, seed=k), KIT)
        np.save(root / "new_joint_vecs" / f"{k:05d}.npy", feats)
        (root / "texts" / f"{k:05d}.txt").write_text(
            "a man walks.#a/DET man/NOUN walk/VERB#0.0#0.0\n"
        )
    (root / "train.txt").write_text("00000\n00001\n00002\n")
    data = load_dataset(root, "train")
    assert data.skeleton is KIT and data[0].features.shape == (59, 251) and data.mean is None


def test_missing_split_file(corpus):
    (corpus / "val.txt").unlink()
    with pytest.raises(DatasetError, match=r"val\.txt: split file not found"):
        load_dataset(corpus, "val")
    with pytest.raises(DatasetError, match="unknown split"):
        load_dataset(corpus, "validation")
    with pytest.raises(DatasetError, match="data folder not found"):
        load_dataset(corpus / "nowhere", "train")


def test_id_without_motion_or_text(corpus):
    motion_id = first_id(corpus)
    (corpus / "texts" / f"{motion_id}.txt").unlink()
    with pytest.raises(DatasetError, match=f"no captions for id '{motion_id}'"):
        load_dataset(corpus, "train")
    (corpus / "new_joint_vecs" / f"{motion_id}.npy").unlink()
    with pytest.raises(DatasetError, match=f"{motion_id}.npy: no motion features"):
        load_dataset(corpus, "train")


def test_wrong_feature_width(corpus):
    motion_id = first_id(corpus)
    path = corpus / "new_joint_vecs" / f"{motion_id}.npy"
    np.save(path, np.zeros((50, 251), dtype=np.float32))
    with pytest.raises(
        DatasetError, match=f"{motion_id}.npy: features have width 251, expected 263"
    ):
        load_dataset(corpus, "train")
    np.save(path, np.zeros((50, 100), dtype=np.float32))
    with pytest.raises(DatasetError, match="width 100, expected 263"):
        load_dataset(corpus, "train")
    (corpus / "Mean.npy").unlink()  # without statistics the first motion sets the width
    with pytest.raises(DatasetError, match="no skeleton has feature width 100"):
        load_dataset(corpus, "train")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_values(corpus, bad):
    motion_id = first_id(corpus, "test")
    path = corpus / "new_joint_vecs" / f"{motion_id}.npy"
    feats = np.load(path)
    feats[3, 10] = bad
    np.save(path, feats)
    with pytest.raises(DatasetError, match=r"NaN or infinite values \(first at index \(3, 10\)\)"):
        load_dataset(corpus, "test")


def test_truncated_or_unreadable_npy(corpus):
    motion_id = first_id(corpus)
    path = corpus / "new_joint_vecs" / f"{motion_id}.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        DatasetError, match=f"{motion_id}.npy: cannot read motion features.*truncated"
    ):
        load_dataset(corpus, "train")
    path.write_bytes(b"not numpy at all")
    with pytest.raises(DatasetError, match="cannot read motion features"):
        load_dataset(corpus, "train")


def test_empty_or_malformed_caption_lines(corpus):
    motion_id = first_id(corpus)
    path = corpus / "texts" / f"{motion_id}.txt"
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n")
    with pytest.raises(DatasetError, match=f"{motion_id}.txt:2: empty caption line"):
        load_dataset(corpus, "train")
    path.write_text("#a/DET#0.0#0.0\n")
    with pytest.raises(DatasetError, match=f"{motion_id}.txt:1: the caption text is empty"):
        load_dataset(corpus, "train")
    path.write_text("a man walks\n")
    with pytest.raises(DatasetError, match="4 fields"):
        load_dataset(corpus, "train")
    path.write_text("")
    with pytest.raises(DatasetError, match="no caption lines"):
        load_dataset(corpus, "train")


def test_bad_normalisation_files(corpus):
    np.save(corpus / "Std.npy", np.ones(10, dtype=np.float32))
    with pytest.raises(DatasetError, match=r"Std\.npy: expected shape \(263,\)"):
        load_dataset(corpus, "train")
    np.save(corpus / "Std.npy", np.zeros(263, dtype=np.float32))
    with pytest.raises(DatasetError, match=r"Std\.npy: standard deviations must be positive"):
        load_dataset(corpus, "train")
    np.save(corpus / "Mean.npy", np.zeros(10, dtype=np.float32))
    with pytest.raises(DatasetError, match=r"Mean\.npy: no skeleton has feature width 10"):
        load_dataset(corpus, "train")


def test_caption_parsing():
    caption = parse_caption_line(
        "a man kicks something.#a/DET man/NOUN kick/VERB something/PRON#1.5#4.0"
    )
    assert caption == Caption(
        "a man kicks something.", ("a/DET", "man/NOUN", "kick/VERB", "something/PRON"), 1.5, 4.0
    )
    assert not caption.whole_clip
    assert parse_caption_line(format_caption_line(caption)) == caption
    assert parse_caption_line("a man walks.#a/DET man/NOUN walk/VERB#nan#nan").whole_clip
    with pytest.raises(CaptionError, match="start < end"):
        parse_caption_line("x#x/X#3.0#1.0")
    with pytest.raises(CaptionError, match="seconds"):
        parse_caption_line("x#x/X#soon#1.0")
