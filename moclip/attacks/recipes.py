"""Perturbation recipes built from TextAttack transformations and constraints.

Each recipe is a TextAttack word-level transformation asked for *all* its candidates
(`random_one=False`), so the choice among them is ours and seeded. Character recipes come from
TextAttack; homoglyphs use the project's own table (TextAttack's wheel lacks its data file);
WordNet synonyms follow the word's part of speech in its sentence and keep its inflection
(`moclip.attacks.words`). `ProtectedWords`, the pre-transformation constraint of every
recipe, keeps stopwords (in any case), numbers and non-words as they are.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np

from moclip.attacks.resources import prepare_nltk_data
from moclip.attacks.words import article_agrees, protected, synonyms, tag_words

RECIPES = (
    "char-swap",
    "char-delete",
    "char-insert",
    "qwerty",
    "homoglyph",
    "wordnet-synonym",
    "composite",
)
CHARACTER_RECIPES = {"char-swap", "char-delete", "char-insert", "qwerty", "homoglyph"}

# Latin letters and look-alikes from other scripts (Unicode confusables).
HOMOGLYPHS = {
    "a": "\u0430",
    "c": "\u0441",
    "d": "\u0501",
    "e": "\u0435",
    "h": "\u04bb",
    "i": "\u0456",
    "j": "\u0458",
    "k": "\u03ba",
    "l": "\u04cf",
    "n": "\u0578",
    "o": "\u043e",
    "p": "\u0440",
    "q": "\u051b",
    "s": "\u0455",
    "u": "\u057d",
    "v": "\u03bd",
    "w": "\u0461",
    "x": "\u0445",
    "y": "\u0443",
}


@contextlib.contextmanager
def seeded_global_random(seed: int) -> Iterator[None]:
    """Some TextAttack transformations draw letters from `random`/`np.random`; seed both for
    the call and restore their previous state afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def build_transformation(recipe: str):
    """The TextAttack transformation of a recipe, enumerating all its candidates."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    prepare_nltk_data(require_wordnet=recipe in ("wordnet-synonym", "composite"))
    from textattack import transformations as t

    class WordSwapHomoglyphTable(t.WordSwap):
        """Each letter with a look-alike, replaced by it, one letter at a time."""

        def _get_replacement_words(self, word: str) -> list[str]:
            return [
                word[:i] + HOMOGLYPHS[c] + word[i + 1 :]
                for i, c in enumerate(word)
                if c in HOMOGLYPHS
            ]

    class WordSwapSynonymInContext(t.WordSwap):
        """WordNet synonyms of each word's part of speech in its sentence, inflected like it.
        `tags`: the caption file's parts of speech of the prompt's words, where it has them
        (set per prompt; None: the tagger reads them)."""

        tags: list[str] | None = None

        def _get_transformations(self, current_text, indices_to_modify):
            words = current_text.words
            tags = self.tags if self.tags and len(self.tags) == len(words) else tag_words(words)
            out = []
            for i in sorted(indices_to_modify):
                for synonym in synonyms(words[i], tags[i]):
                    if not article_agrees(words[i - 1] if i else "", synonym):
                        continue
                    candidate = current_text.replace_word_at_index(i, synonym)
                    # kept only if the new sentence reads it as the same part of speech
                    if tag_words(candidate.words)[i] == tags[i]:
                        out.append(candidate)
            return out

    character = {
        "char-swap": lambda: t.WordSwapNeighboringCharacterSwap(random_one=False),
        "char-delete": lambda: t.WordSwapRandomCharacterDeletion(random_one=False),
        "char-insert": lambda: t.WordSwapRandomCharacterInsertion(random_one=False),
        "qwerty": lambda: t.WordSwapQWERTY(random_one=False),
        "homoglyph": WordSwapHomoglyphTable,
        "wordnet-synonym": WordSwapSynonymInContext,
    }
    if recipe == "composite":
        return t.CompositeTransformation(
            [character["char-swap"](), character["qwerty"](), WordSwapSynonymInContext()]
        )
    return character[recipe]()


def build_protection():
    """The pre-transformation constraint of every recipe: a word stays as it is when
    `moclip.attacks.words.protected` says so (a stopword in any case, a number, a non-word)."""
    prepare_nltk_data(require_wordnet=False)  # TextAttack reads NLTK's stopwords at import
    from textattack.constraints import PreTransformationConstraint

    class ProtectedWords(PreTransformationConstraint):
        """Stopwords (case-insensitive), numbers and tokens that are not words stay."""

        def _get_modifiable_indices(self, current_text):
            return {i for i, word in enumerate(current_text.words) if not protected(word)}

    return ProtectedWords()


def set_tags(transformation, tags: list[str] | None) -> None:
    """Hand a synonym transformation (alone or in a composite) the prompt's file tags."""
    parts = getattr(transformation, "transformations", [transformation])
    for part in parts:
        if hasattr(part, "tags"):
            part.tags = tags
