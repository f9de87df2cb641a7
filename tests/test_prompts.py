"""Hostile prompts: empty, 10 kB long, non-ASCII, emoji and control characters are cleaned or
rejected clearly, and what is left goes through every real encoder and the evaluator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from moclip.data.captions import CaptionError, parse_caption_line
from moclip.evaluation.evaluator import Evaluator, EvaluatorConfig, Vocabulary
from moclip.prompts import MAX_PROMPT_CHARS, PromptError, clean_prompt, clean_prompts
from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder

HOSTILE = [
    "a person walks forward",
    "a person\twalks\x00 forward\x1b[31m then\r\nturns\u200b left",
    "ein Mensch geht vorwärts und dreht sich nach links",
    "人が前に歩いて左に曲がる",
    "a person 🏃 runs then 🙋 waves",
    "wave " * 2048,  # 10 kB
    "x" * 10_000,  # 10 kB without a space
]


def test_control_characters_go_and_whitespace_collapses():
    cleaned = clean_prompt(HOSTILE[1])
    assert cleaned == "a person walks forward [31m then turns left"
    assert all(ch.isprintable() for ch in cleaned)


def test_letters_of_any_script_and_emoji_are_kept():
    for text in HOSTILE[2:5]:
        assert clean_prompt(text) == text


def test_long_prompts_are_cut_at_a_word_boundary():
    words = clean_prompt(HOSTILE[5])
    assert len(words) <= MAX_PROMPT_CHARS and words.endswith("wave")
    assert len(clean_prompt(HOSTILE[6])) == MAX_PROMPT_CHARS


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01\t\n", "\u200b\u200d"])
def test_empty_prompts_are_rejected_naming_their_index(text):
    with pytest.raises(PromptError, match="empty"):
        clean_prompt(text)
    with pytest.raises(PromptError, match="prompt 1: "):
        clean_prompts(["a person walks", text])


def test_caption_files_clean_their_text():
    caption = parse_caption_line("a person\x07 walks  forward#a/DET#0.0#0.0", "texts/000001.txt:1")
    assert caption.text == "a person walks forward"
    with pytest.raises(CaptionError, match="texts/000001.txt:2: the caption text is empty"):
        parse_caption_line("\x00\x00#a/DET#0.0#0.0", "texts/000001.txt:2")


@pytest.mark.parametrize(
    "spec",
    [TextEncoderSpec(kind="tiny", width=32, layers=1, heads=2), TextEncoderSpec(kind="hf")],
    ids=["tiny-open_clip", "minilm"],
)
def test_every_encoder_embeds_hostile_prompts(spec):
    encoder, tokenizer, width = build_text_encoder(spec)
    embeddings = TextEmbedder(encoder, tokenizer)(HOSTILE)
    assert embeddings.shape == (len(HOSTILE), width) and torch.isfinite(embeddings).all()
    # the 10 kB prompts were cut, not fed whole: they embed like their first 1,000 characters
    cut = TextEmbedder(encoder, tokenizer)([HOSTILE[5][:MAX_PROMPT_CHARS]])
    assert torch.allclose(embeddings[5], cut[0], atol=1e-5)
    with pytest.raises(PromptError, match="prompt 0"):
        TextEmbedder(encoder, tokenizer)(["\x00"])


def test_the_evaluator_reads_hostile_prompts():
    vocab = Vocabulary.from_captions(["a person walks forward", "a person runs then waves"])
    config = EvaluatorConfig(word_width=8, hidden=8, out_width=8, conv_width=8)
    evaluator = Evaluator(vocab, 12, np.zeros(12), np.ones(12), config)
    features = evaluator.encode_texts(HOSTILE)
    assert features.shape == (len(HOSTILE), 8) and np.isfinite(features).all()
    with pytest.raises(PromptError, match="prompt 0"):
        evaluator.encode_texts([" "])
