"""Which words of a prompt a recipe may change, and which synonyms keep its meaning.

A word is never changed when it is a stopword (in any case: "A" is "a"), a number (digits, or a
number word: "two", "1,5"), or not a word at all (punctuation stays where it was: TextAttack's
words carry none, and a swap replaces the word inside the text around it). A synonym swap
reads the word's part of speech in its sentence (an averaged-perceptron tagger trained on UD
English-EWT, `denckring-en-pos`, offline; or the caption file's own tags where it has them),
takes WordNet synonyms from the senses of that part of speech that occur in SemCor, keeps only
common ones, and inflects them as the word was (lemminflect): "waves" -> "beckons".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from moclip.attacks.resources import STOPWORDS

NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand once twice thrice half quarter first second third fourth "
    "fifth sixth seventh eighth ninth tenth single double triple couple".split()
)
# WordNet lists these as synonyms of "person", but they take no article ("a someone")
PRONOUNS = frozenset("someone somebody anyone anybody everyone everybody nobody".split())
# the parts of speech (Universal Dependencies) whose words a synonym may replace
CONTENT = {"NOUN": "n", "VERB": "v", "ADJ": "a", "ADV": "r"}
# the Penn tags lemminflect inflects to, by part of speech
PENN = {
    "NOUN": ("NN", "NNS"),
    "VERB": ("VB", "VBD", "VBG", "VBN", "VBP", "VBZ"),
    "ADJ": ("JJ", "JJR", "JJS"),
    "ADV": ("RB", "RBR", "RBS"),
}
MAX_SENSES = 1  # the most frequent sense of the word's part of speech (WordNet's first)
MIN_COUNT = 3  # SemCor occurrences a synonym needs in its sense: rare and archaic ones are out
# HumanML3D's caption files tag each word with spaCy's coarse tags
SPACY_TO_UD = {"NOUN": "NOUN", "VERB": "VERB", "ADJ": "ADJ", "ADV": "ADV", "PROPN": "PROPN"}


def protected(word: str) -> bool:
    """Whether no recipe may change `word`: a stopword in any case, a number (digits or a
    number word), or anything but letters (and inner hyphens or apostrophes)."""
    lower = word.lower()
    if lower in STOPWORDS or lower in NUMBER_WORDS or any(c.isdigit() for c in word):
        return True
    return not word.replace("-", "").replace("'", "").isalpha()


@lru_cache(maxsize=1)
def _tagger():
    from denckring_en_pos import tagger

    return tagger()


def tag_words(words: Sequence[str]) -> list[str]:
    """Universal part-of-speech tags of `words` read in their sentence."""
    if not words:
        return []
    return [label.partition("|")[0] for label in _tagger().tag(list(words))]


def inflection(word: str, upos: str) -> tuple[str, str] | None:
    """(lemma, Penn tag) of `word` as `upos`: the form lemminflect makes of the lemma that
    equals the word; None when none does (an irregular or unknown form)."""
    from lemminflect import getAllInflections, getLemma

    lower = word.lower()
    for lemma in getLemma(lower, upos=upos, lemmatize_oov=False) or (lower,):
        forms = getAllInflections(lemma, upos=upos)
        for tag in PENN[upos]:
            if lower in forms.get(tag, ()) or (tag in ("NN", "VB", "JJ", "RB") and lower == lemma):
                return lemma, tag
    return None


def _inflect(lemma: str, tag: str) -> str | None:
    from lemminflect import getInflection

    if tag in ("NN", "VB", "VBP", "JJ", "RB"):
        return lemma
    forms = getInflection(lemma, tag=tag)
    return forms[0] if forms else None


def _cased_like(original: str, word: str) -> str:
    return word.capitalize() if original[:1].isupper() else word


def synonyms(word: str, upos: str) -> list[str]:
    """Common WordNet synonyms of `word` read as `upos` (NOUN, VERB, ADJ or ADV), inflected
    and capitalised as the word is; none for a protected word or another part of speech."""
    from nltk.corpus import wordnet

    if upos not in CONTENT or protected(word):
        return []
    found = inflection(word, upos)
    if found is None:
        return []
    lemma, tag = found
    out: list[str] = []
    for synset in wordnet.synsets(lemma, CONTENT[upos])[:MAX_SENSES]:
        own = [entry for entry in synset.lemmas() if entry.name().lower() == lemma]
        if not own or own[0].count() < 1:  # a sense of the word no one used in SemCor
            continue
        for entry in synset.lemmas():
            name = entry.name().lower()
            if name == lemma or not name.isalpha() or name in PRONOUNS or len(name) < 3:
                continue
            if entry.count() < MIN_COUNT:
                continue
            inflected = _inflect(name, tag)
            if inflected and inflected != word.lower() and inflected not in out:
                out.append(inflected)
    return [_cased_like(word, w) for w in out]


def antonyms(word: str) -> set[str]:
    """Every WordNet antonym of any sense of `word` (lower-case lemmas)."""
    from nltk.corpus import wordnet

    lower = word.lower()
    out = set()
    for synset in wordnet.synsets(lower):
        for entry in synset.lemmas():
            out.update(a.name().lower() for a in entry.antonyms())
    return out


def article_agrees(previous: str, word: str) -> bool:
    """Whether `word` may follow `previous`: "a" before a consonant, "an" before a vowel (by
    the first letter: "a individual" is refused)."""
    article = previous.lower()
    vowel = word[:1].lower() in "aeio"
    return not ((article == "a" and vowel) or (article == "an" and not vowel))
