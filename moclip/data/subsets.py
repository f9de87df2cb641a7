"""Nested fine-tuning subsets, drawn by motion id."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def nested_subset(ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The first round(fraction * n) (half up, at least 1) of a seeded permutation of the distinct ids.

    One permutation per (ids, seed) makes the subsets nested: the 10 % subset is a prefix of the
    25 % one. The ids are sorted before permuting, so their input order does not matter, and
    repeated ids (several captions of one motion) count once. Returned in sorted order.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)):
        raise TypeError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    distinct = sorted(set(ids))
    if not distinct:
        raise ValueError("cannot take a subset of an empty list of motion ids")
    size = max(1, math.floor(float(fraction) * len(distinct) + 0.5))  # round half up
    order = np.random.default_rng(seed).permutation(len(distinct))
    return sorted(distinct[i] for i in order[:size])
