import pytest

from moclip.data.subsets import nested_subset

IDS = [f"{i:06d}" for i in range(237)]


def test_sizes_and_determinism():
    for fraction, size in ((0.1, 24), (0.25, 59), (0.5, 119), (1.0, 237)):
        subset = nested_subset(IDS, fraction, seed=3)
        assert len(subset) == size == len(set(subset))
        assert subset == nested_subset(list(reversed(IDS)), fraction, seed=3)
    assert nested_subset(IDS, 0.1, seed=3) != nested_subset(IDS, 0.1, seed=4)
    assert nested_subset(IDS, 0.001, seed=0) and len(nested_subset(IDS, 0.001, seed=0)) == 1


def test_subsets_are_nested_as_the_fraction_grows():
    fractions = [0.05, 0.1, 0.25, 0.5, 0.75, 1.0]
    for seed in range(5):
        subsets = [set(nested_subset(IDS, f, seed)) for f in fractions]
        assert all(small < large for small, large in zip(subsets, subsets[1:]))


def test_captions_of_a_motion_stay_together():
    pairs = [motion for motion in IDS[:20] for _ in range(3)]  # three captions each
    subset = nested_subset(pairs, 0.5, seed=1)
    assert len(subset) == 10 and len(set(subset)) == 10


@pytest.mark.parametrize("fraction", [0, -0.1, 1.01, float("nan")])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        nested_subset(IDS, fraction, seed=0)


def test_bad_inputs():
    with pytest.raises(ValueError, match="empty"):
        nested_subset([], 0.5, seed=0)
    with pytest.raises(TypeError, match="number"):
        nested_subset(IDS, "half", seed=0)
