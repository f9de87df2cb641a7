"""Perturbation recipes built from TextAttack transformations and constraints.

Each recipe is a TextAttack word-level transformation asked for *all* its candidates
(`random_one=False`), so the choice among them is ours and seeded. Character recipes come from
TextAttack; homoglyphs use the project's own table (TextAttack's wheel lacks its data file);
WordNet synonyms are restricted to the word's part of speech and keep its inflection (plain
WordNet swaps turned "walks" into "walkway").
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np

from moclip.attacks.resources import prepare_nltk_data

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


def _wordnet_pos_and_counts(word: str):
    from nltk.corpus import wordnet

    best, best_count = None, -1
    for pos in (wordnet.VERB, wordnet.NOUN, wordnet.ADJ, wordnet.ADV):
        base = wordnet.morphy(word, pos)
        if base is None:
            continue
        count = sum(
            lemma.count() + 1
            for s in wordnet.synsets(base, pos)
            for lemma in s.lemmas()
            if lemma.name() == base
        )
        if count > best_count:
            best, best_count = (pos, base), count
    return best


def inflect_like(original: str, base: str, candidate: str) -> str | None:
    """Give `candidate` (a lemma) the regular ending that turns `base` into `original`
    (walk -> walks, walked, walking); None when the inflection is irregular (ran)."""
    if original == base:
        return candidate
    if original in (base + "s", base + "es"):
        return candidate + ("es" if candidate.endswith(("s", "x", "z", "ch", "sh")) else "s")
    if original in (base + "ed", base + "d"):
        return candidate + ("d" if candidate.endswith("e") else "ed")
    if original in (base + "ing", base[:-1] + "ing"):
        stem = (
            candidate[:-1]
            if candidate.endswith("e") and not candidate.endswith("ee")
            else candidate
        )
        return stem + "ing"
    return None


def wordnet_synonyms(word: str) -> list[str]:
    """Single-word synonyms of `word` in WordNet, from synsets of its most frequent part of
    speech only, inflected like `word`."""
    from nltk.corpus import wordnet

    lower = word.lower()
    found = _wordnet_pos_and_counts(lower)
    if found is None:
        return []
    pos, base = found
    out = []
    for synset in wordnet.synsets(base, pos):
        for lemma in synset.lemmas():
            name = lemma.name().lower()
            if "_" in name or "-" in name or name == base:
                continue
            inflected = inflect_like(lower, base, name)
            if inflected and inflected != lower and inflected not in out:
                out.append(inflected)
    return out


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

    class WordSwapWordNetPOS(t.WordSwap):
        """WordNet synonyms of the word's own part of speech, inflected like it."""

        def _get_replacement_words(self, word: str) -> list[str]:
            return wordnet_synonyms(word)

    character = {
        "char-swap": lambda: t.WordSwapNeighboringCharacterSwap(random_one=False),
        "char-delete": lambda: t.WordSwapRandomCharacterDeletion(random_one=False),
        "char-insert": lambda: t.WordSwapRandomCharacterInsertion(random_one=False),
        "qwerty": lambda: t.WordSwapQWERTY(random_one=False),
        "homoglyph": WordSwapHomoglyphTable,
        "wordnet-synonym": WordSwapWordNetPOS,
    }
    if recipe == "composite":
        return t.CompositeTransformation(
            [character["char-swap"](), character["qwerty"](), WordSwapWordNetPOS()]
        )
    return character[recipe]()
