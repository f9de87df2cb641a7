"""HumanML3D caption lines: `caption#word/POS word/POS ...#start#end`, parsed and written."""

from __future__ import annotations

import re
from dataclasses import dataclass

from moclip.prompts import PromptError, clean_prompt


@dataclass(frozen=True)
class Caption:
    """One description of a motion; `start`/`end` in seconds, both 0 for the whole clip."""

    text: str
    tokens: tuple[str, ...]  # "word/POS" pairs, lemmatised as HumanML3D stores them
    start: float = 0.0
    end: float = 0.0

    @property
    def whole_clip(self) -> bool:
        return self.start == 0.0 and self.end == 0.0

    @property
    def parts_of_speech(self) -> list[str] | None:
        """The file's part-of-speech tag of each word (HumanML3D's `word/POS`), or None where
        the file has none (`X`, or no tag)."""
        tags = [token.rpartition("/")[2] for token in self.tokens]
        if not tags or any(not tag or tag == "X" or "/" not in token
                           for tag, token in zip(tags, self.tokens)):
            return None
        return tags


class CaptionError(ValueError):
    """A caption line that does not follow the HumanML3D format."""


def parse_caption_line(line: str, where: str = "caption") -> Caption:
    """Parse `text#tokens#start#end`; `where` names the file and line in errors."""
    parts = line.rstrip("\n").split("#")
    if len(parts) != 4:
        raise CaptionError(
            f"{where}: expected 'caption#word/POS ...#start#end' (4 fields separated by '#'), "
            f"got {len(parts)} field(s): {line.strip()[:80]!r}"
        )
    text, tokens, start, end = parts
    try:
        text = clean_prompt(text)
    except PromptError:
        raise CaptionError(f"{where}: the caption text is empty") from None
    try:
        t0 = 0.0 if start.strip().lower() in ("", "nan") else float(start)
        t1 = 0.0 if end.strip().lower() in ("", "nan") else float(end)
    except ValueError:
        raise CaptionError(
            f"{where}: start/end must be seconds, got {start!r} and {end!r}"
        ) from None
    if t0 < 0 or t1 < 0 or (t1 and t1 <= t0):
        raise CaptionError(f"{where}: need 0 <= start < end (or both 0), got {t0} and {t1}")
    return Caption(text, tuple(tokens.split()), t0, t1)


def format_caption_line(caption: Caption) -> str:
    """The HumanML3D text-file line of a caption."""
    return f"{caption.text}#{' '.join(caption.tokens)}#{caption.start:.1f}#{caption.end:.1f}"


_WORD = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")


def tokenize(text: str) -> list[str]:
    """Lower-case words, numbers and punctuation marks."""
    return _WORD.findall(text.lower())


def tag_caption(text: str, lexicon: dict[str, tuple[str, str]]) -> tuple[str, ...]:
    """`lemma/POS` tokens of a caption from a word -> (lemma, POS) lexicon; raises on unknowns,
    so a template word missing from the lexicon is caught where it is written."""
    tokens = []
    for word in tokenize(text):
        if word not in lexicon:
            raise KeyError(f"word {word!r} of caption {text!r} is missing from the lexicon")
        lemma, pos = lexicon[word]
        tokens.append(f"{lemma}/{pos}")
    return tuple(tokens)
