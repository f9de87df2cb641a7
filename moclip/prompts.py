"""Prompt text as every encoder and the evaluator receive it: Unicode-normalised, without
control characters, bounded in length, never empty."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

MAX_PROMPT_CHARS = 1000  # HumanML3D's longest caption is ~400 characters; CLIP reads 77 tokens
_SPACE = re.compile(r"\s+")


class PromptError(ValueError):
    """A prompt with nothing left to read; the message says which one."""


def clean_prompt(text: str, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """NFC form, control and format characters (Unicode category C*) turned into spaces,
    whitespace runs collapsed, cut to `max_chars` (at a word boundary where one is near); any
    script's letters and emoji are kept (tokenizers map what they do not know to unknown tokens).
    Raises PromptError when nothing readable is left."""
    if not isinstance(text, str):
        raise PromptError(f"a prompt must be text, got {type(text).__name__}")
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(c).startswith("C") else c for c in text)
    text = _SPACE.sub(" ", text).strip()
    if not text:
        raise PromptError("the prompt is empty (or only spaces and control characters)")
    if len(text) > max_chars:
        cut = text[: max_chars + 1]
        boundary = cut.rfind(" ")
        # a word boundary in the second half, else a hard cut (one very long "word")
        text = cut[:boundary] if boundary > max_chars // 2 else text[:max_chars]
    return text


def clean_prompts(texts: Sequence[str], max_chars: int = MAX_PROMPT_CHARS) -> list[str]:
    """`clean_prompt` of each; a PromptError names the index of the prompt that failed."""
    cleaned = []
    for index, text in enumerate(texts):
        try:
            cleaned.append(clean_prompt(text, max_chars))
        except PromptError as err:
            raise PromptError(f"prompt {index}: {err}") from None
    return cleaned
