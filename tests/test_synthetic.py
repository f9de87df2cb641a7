import filecmp
import json
import subprocess
import sys

import numpy as np
import pytest

from moclip.data.captions import parse_caption_line
from moclip.data.dataset import load_dataset
from moclip.data.features import canonicalize
from moclip.data.normalization import feature_stats
from moclip.data.synthetic import LEXICON, build_corpus, make_motion, main
from moclip.data.synthetic_actions import ACTIONS
from moclip.skeletons import HUMANML3D

J = HUMANML3D.index


def test_layout_and_manifest(tiny_corpus):
    for name in ("train.txt", "val.txt", "test.txt", "all.txt", "Mean.npy", "Std.npy"):
        assert (tiny_corpus / name).is_file(), name
    ids = (tiny_corpus / "all.txt").read_text().split()
    assert len(ids) == 60
    splits = {
        s: set((tiny_corpus / f"{s}.txt").read_text().split()) for s in ("train", "val", "test")
    }
    assert set.union(*splits.values()) == set(ids)
    assert sum(len(v) for v in splits.values()) == 60  # disjoint
    assert len(splits["train"]) == 48 and len(splits["test"]) == 9
    for motion_id in ids:
        joints = np.load(tiny_corpus / "new_joints" / f"{motion_id}.npy")
        vecs = np.load(tiny_corpus / "new_joint_vecs" / f"{motion_id}.npy")
        assert joints.shape == (len(vecs), 22, 3) and vecs.shape[1] == 263
        assert 40 <= len(vecs) <= 196
        lines = (tiny_corpus / "texts" / f"{motion_id}.txt").read_text().splitlines()
        captions = [parse_caption_line(line) for line in lines]
        assert len(captions) == 3 and len({c.text for c in captions}) == 3
        for caption in captions:
            assert caption.whole_clip
            assert len(caption.tokens) == len(
                caption.text.replace(",", " ,").replace(".", " .").split()
            )
            assert all("/" in token for token in caption.tokens)
    manifest = json.loads((tiny_corpus / "corpus.json").read_text())
    assert manifest["num_motions"] == 60 and manifest["seed"] == 7


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path, tiny_corpus):
    other = tmp_path / "again"
    build_corpus(other, 60, seed=7, workers=1, progress=False)
    files = sorted(p.relative_to(tiny_corpus) for p in tiny_corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(other) for p in other.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(
        tiny_corpus, other, [str(f) for f in files], shallow=False
    )
    assert mismatch == [] and errors == []
    different = tmp_path / "seed8"
    build_corpus(different, 10, seed=8, workers=1, progress=False)
    assert (different / "texts" / "000000.txt").read_text() != (
        tiny_corpus / "texts" / "000000.txt"
    ).read_text()


def test_the_builders_workers_are_not_forks_of_its_caller(tmp_path):
    """A child forked from a process that runs threads (Ray's outlive ray.shutdown()) can die
    or hang on state one of them left, and a forked pool then waits for good (CI, stop 24);
    the workers start from a clean server instead. A fork of the caller would run the
    caller's at-fork hook, which leaves a file."""
    forked, out = tmp_path / "forked", tmp_path / "corpus"
    code = (
        "import os\n"
        "from moclip.data.synthetic import build_corpus\n"
        f"os.register_at_fork(after_in_child=lambda: open({str(forked)!r}, 'a').close())\n"
        f"build_corpus({str(out)!r}, 8, seed=1, workers=2, progress=False)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert (out / "corpus.json").is_file() and len(list((out / "texts").iterdir())) == 8
    assert not forked.exists()


def test_mean_and_std_are_those_of_the_training_split(tiny_corpus):
    train = load_dataset(tiny_corpus, "train")
    mean, std = feature_stats(item.features for item in train.items)
    assert np.allclose(train.mean, mean, atol=1e-5)
    assert np.allclose(train.std, std, rtol=1e-4, atol=1e-6)


def test_corpus_covers_the_action_families_and_compositions():
    motions = [make_motion(3, i) for i in range(300)]
    families = {f for m in motions for f in m.families}
    assert len(ACTIONS) >= 15 and families == set(ACTIONS)
    pairs = [m for m in motions if len(m.families) == 2]
    assert len(pairs) > 40
    assert all(
        ", then" in c.text or "then" in c.text or "after that" in c.text
        for m in pairs
        for c in m.captions
    )
    # Standing up only follows sitting down.
    assert all(m.families[1] != "stand up" or m.families[0] == "sit down" for m in pairs)


@pytest.mark.parametrize("index", range(0, 200, 7))
def test_motions_look_like_people(index):
    motion = make_motion(11, index)
    pos = motion.positions.astype(np.float64)
    # No stretching: every bone keeps its rest length.
    bones = np.linalg.norm(pos[:, 1:] - pos[:, list(HUMANML3D.parents[1:])], axis=-1)
    assert np.abs(bones - np.linalg.norm(HUMANML3D.offsets[1:], axis=-1)).max() < 1e-4
    # Feet on the floor: the lowest foot joint touches it in most frames, never goes under it.
    lowest = pos[:, [J("left_ankle"), J("left_foot"), J("right_ankle"), J("right_foot")], 1].min(1)
    assert lowest.min() > -1e-6
    assert np.mean(lowest < 0.03) > 0.6
    # Plausible speeds: root under 5 m/s, any joint under 12 m/s (a fast punch or kick).
    speed = np.linalg.norm(np.diff(pos, axis=0), axis=-1) * 20
    assert speed[:, 0].max() < 5.0 and speed.max() < 12.0
    # The head stays above the pelvis.
    assert np.all(pos[:, J("head"), 1] > pos[:, 0, 1])


def _find(predicate, seed=5, limit=600):
    for index in range(limit):
        motion = make_motion(seed, index)
        if predicate(motion):
            return motion
    raise AssertionError("no such motion")


@pytest.mark.parametrize("side", ["left", "right"])
def test_wave_uses_the_hand_the_caption_names(side):
    motion = _find(lambda m: m.families == ("wave",) and f"the {side} " in m.captions[0].text)
    wrist, other = J(f"{side}_wrist"), J(f"{'right' if side == 'left' else 'left'}_wrist")
    middle = motion.positions[len(motion.positions) // 2]
    assert middle[wrist, 1] > middle[other, 1] + 0.4


def test_walking_direction_and_turns_follow_the_caption():
    backward = _find(lambda m: m.families == ("walk",) and "backward" in m.captions[0].text)
    pos = canonicalize(backward.positions, HUMANML3D)
    assert pos[-1, 0, 2] < -0.5  # facing +z at the start, it ends up behind where it started
    left = _find(
        lambda m: (
            m.families == ("turn",)
            and m.params[0]["side"] == "left"
            and m.params[0]["degrees"] == 180
        )
    )
    assert all("left" in c.text or "around" in c.text for c in left.captions)
    # The stored root rotation is the world-to-body turn in half-angles: a left turn is negative.
    turned = -2 * left.features[:, 0].sum()
    assert turned == pytest.approx(np.pi, abs=0.05)


def test_every_caption_word_is_tagged():
    for index in range(100):
        for caption in make_motion(2, index).captions:
            lemmas = [t.rsplit("/", 1) for t in caption.tokens]
            assert all(
                pos
                in {
                    "DET",
                    "PRON",
                    "NOUN",
                    "ADV",
                    "ADJ",
                    "ADP",
                    "NUM",
                    "CCONJ",
                    "INTJ",
                    "PUNCT",
                    "VERB",
                }
                for _, pos in lemmas
            )
    assert LEXICON["walks"] == ("walk", "VERB")


def test_cli_writes_a_corpus_and_rejects_too_few_motions(tmp_path, capsys):
    assert (
        main(["--out", str(tmp_path / "c"), "--num-motions", "5", "--seed", "1", "--workers", "1"])
        == 0
    )
    assert len((tmp_path / "c" / "all.txt").read_text().split()) == 5
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "d"), "--num-motions", "2"])
    assert "at least 3" in capsys.readouterr().err
