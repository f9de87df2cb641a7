"""The MSR Action3D action recogniser and the action-generation metrics, on the real
recordings: trained for a few steps, saved and loaded back, and scoring real motions."""

import numpy as np
import pytest
import torch

from moclip.data.action3d import ACTIONS
from moclip.data.dataset import DatasetError
from moclip.evaluation.evaluate import evaluate_actions
from moclip.evaluation.recognizer import (
    RecognizerConfig,
    accuracy_top_k,
    covariance_descriptor,
    labels_of,
    load_recognizer,
    recognizer_figures,
    save_recognizer,
    train_recognizer,
)
from moclip.generation.base import MotionGenerator

FEW_STEPS = RecognizerConfig(steps=30)


@pytest.fixture(scope="module")
def trained(action3d_splits):
    train, test = action3d_splits
    torch.manual_seed(0)
    recognizer, losses = train_recognizer(train, len(ACTIONS), FEW_STEPS, seed=0)
    figures = recognizer_figures(recognizer, train, test)
    return recognizer, losses, figures


def test_accuracy_top_k_counts_the_label_among_the_k_largest():
    logits = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.0, 0.1, 0.2]])
    assert accuracy_top_k(logits, [1, 2, 0], 1) == pytest.approx(1 / 3)
    assert accuracy_top_k(logits, [1, 2, 0], 2) == pytest.approx(2 / 3)
    assert accuracy_top_k(logits, [1, 2, 0], 3) == 1.0


def test_the_descriptor_holds_mean_and_covariance_per_pyramid_segment(action3d_splits):
    item = action3d_splits[0].items[0]
    width = 2 * 20 * 3  # positions and velocities of 20 joints
    per_segment = width + width * (width + 1) // 2
    assert covariance_descriptor(item.features, 20).shape == (7 * per_segment,)
    assert covariance_descriptor(item.features, 20, levels=1, velocities=False).shape == (
        60 + 60 * 61 // 2,
    )
    # a motion shorter than the pyramid's segments still has a finite descriptor
    assert np.all(np.isfinite(covariance_descriptor(item.features[:3], 20)))


def test_held_in_place_the_descriptor_ignores_the_path_and_as_recorded_it_does_not(
    action3d_splits,
):
    """A real recording carried along a 2 m walk: held in place its descriptor is the
    recording's, as recorded (the default) it is far from it; a turn changes both."""
    from moclip.data.features import features_to_positions, positions_to_features
    from moclip.data.quaternion import qrot
    from moclip.skeletons import KINECT

    item = action3d_splits[0].items[0]
    positions = features_to_positions(item.features, 20)
    frames = len(positions)
    walk = np.linspace(0, 2, frames)[:, None, None] * np.array([1.0, 0, 0])
    angle = np.linspace(0, np.pi, frames)[:, None]
    turn = np.concatenate(
        (np.cos(angle / 2), 0 * angle, np.sin(angle / 2), 0 * angle), axis=1
    )  # a yaw about the root, growing to 180 degrees
    root = positions[:, :1].copy()
    turned = qrot(np.broadcast_to(turn[:, None], positions.shape[:-1] + (4,)), positions - root)
    here, carried, turning = (
        positions_to_features(p, KINECT) for p in (positions, positions + walk, turned + root)
    )

    def gap(other, frame):
        a, b = (covariance_descriptor(f, 20, frame=frame) for f in (here, other))
        return np.abs(a - b).max() / np.abs(a).max()

    assert gap(carried, "in_place") < 1e-4
    assert gap(carried, "world") > 0.5
    assert gap(turning, "in_place") > 0.1 and gap(turning, "world") > 0.1
    assert RecognizerConfig().frame == "world"
    with pytest.raises(ValueError, match="frame must be one of"):
        RecognizerConfig(frame="camera")


def test_a_few_steps_recognise_the_test_subjects_far_above_chance(trained, action3d_splits):
    recognizer, losses, figures = trained
    assert losses[-1] < losses[0]
    assert figures["chance_top1"] == 0.05 and figures["num_test_motions"] == 261
    assert figures["accuracy_top1"] > 0.5  # chance 0.05; the full recogniser reaches 0.8
    assert figures["accuracy_top3"] >= figures["accuracy_top1"]
    assert figures["fid_train_vs_test"] > 0 and figures["diversity"] > 0
    # the recogniser was fitted to the training motions: unseen halves lie closer together
    assert 0 < figures["fid_test_halves"] < figures["fid_train_vs_test"]


def test_the_recogniser_saves_and_loads_back_with_its_reference(trained, action3d_splits, tmp_path):
    recognizer, _, figures = trained
    test = action3d_splits[1]
    path = save_recognizer(tmp_path / "recognizer.pt", recognizer, "fingerprint", figures)
    loaded, state = load_recognizer(path)
    assert state["figures"] == figures and state["data_fingerprint"] == "fingerprint"
    motions = [item.features for item in test.items[:40]]
    for a, b in zip(recognizer.encode(motions), loaded.encode(motions)):
        assert np.allclose(a, b)
    assert torch.equal(loaded.reference_sigma, recognizer.reference_sigma)
    with pytest.raises(ValueError, match="not a action recogniser file"):
        torch.save({"format": 99}, tmp_path / "other.pt")
        load_recognizer(tmp_path / "other.pt")


def test_unlabelled_data_is_refused(tiny_corpus):
    from moclip.data.dataset import load_dataset

    with pytest.raises(DatasetError, match="without a class label"):
        labels_of(load_dataset(tiny_corpus, "train"))


class Replay(MotionGenerator):
    """A generator that gives back real test motions (the prompt's index picks which): what a
    perfect generator would draw."""

    def __init__(self, motions, shuffle: bool = False) -> None:
        self.motions = motions
        self.order = np.random.default_rng(0).permutation(len(motions)) if shuffle else None

    def generate(self, prompts, lengths, text_encoder, noise_seeds):
        rows = [int(p) for p in prompts]
        if self.order is not None:
            rows = [int(self.order[r]) for r in rows]
        return [self.motions[r] for r in rows]


def test_real_test_motions_score_the_recognisers_own_figures(trained, action3d_splits):
    recognizer, _, figures = trained
    test = action3d_splits[1]
    motions = [item.features for item in test.items]
    prompts = [str(i) for i in range(len(motions))]
    lengths = [len(m) for m in motions]
    labels = labels_of(test)
    real = evaluate_actions(Replay(motions), None, prompts, lengths, labels, recognizer, 2, 0, 8, 2)
    # the reference is these very motions: FID 0, accuracy the recogniser's test accuracy
    assert real["fid"] == pytest.approx(0.0, abs=1e-6)
    assert real["accuracy_top1"] == pytest.approx(figures["accuracy_top1"])
    assert real["accuracy_top1_ci95"] == 0.0 and real["repeats"] == 2.0
    # the same motions, other random pairs in the second repeat
    assert real["diversity"] == pytest.approx(figures["diversity"], rel=0.05)
    assert real["multimodality"] == 0.0  # every "generation" of a prompt is the same motion
    # motions given to the wrong prompts: the same set (FID still 0), the wrong actions
    wrong = evaluate_actions(
        Replay(motions, shuffle=True), None, prompts, lengths, labels, recognizer, 1, 0, 0
    )
    assert wrong["fid"] == pytest.approx(0.0, abs=1e-6)
    assert wrong["accuracy_top1"] < 0.2 < real["accuracy_top1"]
    with pytest.raises(ValueError, match="need one of each per motion"):
        evaluate_actions(Replay(motions), None, prompts, lengths, labels[:-1], recognizer)
