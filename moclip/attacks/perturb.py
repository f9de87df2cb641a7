"""Perturbed prompt sets: seeded random perturbation under a word budget, cached as versioned
JSON-lines files keyed by data fingerprint, recipe, budget, seed and encoder id."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from moclip.attacks.meaning import DEFAULT_THRESHOLD, build_meaning_constraint, judge_similarity
from moclip.attacks.recipes import (
    CHARACTER_RECIPES,
    build_protection,
    build_transformation,
    seeded_global_random,
    set_tags,
)
from moclip.progress import progress_bar

SET_FORMAT = 2  # 2: protected words, synonyms in context, the meaning check


@dataclass(frozen=True)
class Budget:
    """At most `words` words, or a `share` of the prompt's words (at least one), may change."""

    words: int | None = None
    share: float | None = None

    def __post_init__(self) -> None:
        if (self.words is None) == (self.share is None):
            raise ValueError("a budget is a number of words or a share of them, not both")
        if self.words is not None and self.words < 1:
            raise ValueError(f"budget words must be >= 1, got {self.words}")
        if self.share is not None and not 0 < self.share <= 1:
            raise ValueError(f"budget share must be in (0, 1], got {self.share}")

    @classmethod
    def parse(cls, value: int | float | str) -> "Budget":
        """1, 2, 3 -> words; 0.2 -> a share."""
        number = float(value)
        if number >= 1 and number.is_integer():
            return cls(words=int(number))
        return cls(share=number)

    def max_words(self, num_words: int) -> int:
        if self.words is not None:
            return self.words
        return max(1, math.floor(self.share * num_words + 0.5))

    def __str__(self) -> str:
        return f"{self.words}w" if self.words is not None else f"{self.share:g}share"


@dataclass(frozen=True)
class PerturbedPrompt:
    original: str
    perturbed: str
    words_changed: int
    edit_distance: int
    success: bool
    # cos(J(x'), J(x)) under the meaning check's judge (1 for an unchanged prompt)
    similarity: float | None = None


def levenshtein(a: str, b: str) -> int:
    """Edit distance: insertions, deletions and substitutions, each costing 1."""
    # the C implementation TextAttack depends on: a Python dynamic programme over every
    # candidate was a sixth of an evaluation trial's time (benchmarks/bench_cost.py)
    import Levenshtein

    return Levenshtein.distance(a, b)


def _perturb_one(
    text: str,
    transformation,
    constraints: list,
    budget: Budget,
    seed: int,
    max_edit_distance: int | None,
    meaning=None,
) -> PerturbedPrompt:
    """Change up to the budget's words, visited in a seeded order: at each, one candidate
    drawn (seeded) among those that pass the meaning check against the original."""
    from textattack.shared import AttackedText

    original = AttackedText(text)
    current = original
    limit = budget.max_words(len(original.words))
    rng = np.random.default_rng(seed)
    changed = 0
    for index in rng.permutation(len(original.words)).tolist():
        if changed >= limit:
            break
        with seeded_global_random(seed * 1000 + index):
            candidates = transformation(
                current, pre_transformation_constraints=constraints, indices_to_modify={index}
            )
        if max_edit_distance is not None:
            candidates = [
                c for c in candidates if levenshtein(original.text, c.text) <= max_edit_distance
            ]
        order = rng.permutation(len(candidates)).tolist()
        chosen = _first_meaningful([candidates[i] for i in order], original, meaning)
        if chosen is None:
            continue
        current = chosen
        changed += 1
    return make_record(text, current.text)


def _first_meaningful(candidates: list, original, meaning, chunk: int = 8):
    """The first of `candidates` (in their order) that passes `meaning` against the original,
    judged a few at a time; without a check, the first."""
    if meaning is None or not candidates:
        return candidates[0] if candidates else None
    for start in range(0, len(candidates), chunk):
        kept = meaning.call_many(candidates[start : start + chunk], original)
        if kept:
            return kept[0]
    return None


def make_record(original: str, perturbed: str) -> PerturbedPrompt:
    """The record of one perturbation; words are compared position by position. Its judge
    similarity is filled in for the whole set at once (`_judged`)."""
    from textattack.shared import AttackedText

    before, after = AttackedText(original).words, AttackedText(perturbed).words
    changed = sum(a != b for a, b in zip(before, after)) + abs(len(before) - len(after))
    return PerturbedPrompt(
        original, perturbed, changed, levenshtein(original, perturbed), perturbed != original
    )


def _judged(records: list[PerturbedPrompt]) -> list[PerturbedPrompt]:
    """`records` with their judge similarity (1 for an unchanged prompt), the changed ones
    judged in one batch rather than a call per prompt."""
    from dataclasses import replace

    changed = [i for i, r in enumerate(records) if r.success]
    values = judge_similarity(
        [records[i].original for i in changed], [records[i].perturbed for i in changed]
    )
    out = [replace(r, similarity=1.0) for r in records]
    for i, value in zip(changed, values):
        out[i] = replace(records[i], similarity=float(value))
    return out


def _attack_all(
    prompts: Sequence[str],
    seeds: list[int],
    encoder: Callable,
    transformation,
    budget: Budget,
    max_edit_distance: int | None,
    motions: tuple[torch.Tensor, Sequence[int]] | None,
    threshold: float | None,
    tags: Sequence[list[str] | None],
) -> list[PerturbedPrompt]:
    """White-box sets: the greedy search per prompt, one Attack per distinct word limit."""
    from textattack.shared import AttackedText

    from moclip.attacks.adversarial import attack_prompt, build_attack

    gallery, true_rows = motions if motions is not None else (None, [None] * len(prompts))
    if len(true_rows) != len(prompts):
        raise ValueError(f"{len(true_rows)} true motion rows for {len(prompts)} prompts")
    attacks: dict[int, object] = {}
    records = []
    for text, seed, row, prompt_tags in zip(prompts, seeds, true_rows, tags):
        limit = budget.max_words(len(AttackedText(text).words))
        if limit not in attacks:
            attacks[limit] = build_attack(
                encoder, transformation, limit, max_edit_distance, gallery=gallery,
                threshold=threshold,
            )
        set_tags(transformation, prompt_tags)
        with seeded_global_random(seed):
            records.append(make_record(text, attack_prompt(attacks[limit], text, row)))
    return records


def set_key(
    data_fingerprint: str,
    recipe: str,
    budget: Budget,
    seed: int,
    encoder_id: str | None,
    threshold: float | None = DEFAULT_THRESHOLD,
) -> str:
    """The file name of a perturbed set: readable parts and a short hash of all of them."""
    parts = f"{data_fingerprint}|{recipe}|{budget}|{seed}|{encoder_id or 'random'}|v{SET_FORMAT}"
    parts += f"|meaning{threshold}"
    digest = hashlib.sha256(parts.encode()).hexdigest()[:12]
    return f"{recipe}-{budget}-s{seed}-{encoder_id or 'random'}-{digest}"


def perturb(
    prompts: Sequence[str],
    recipe: str,
    budget: Budget | int | float,
    seed: int,
    encoder: Callable | None = None,
    cache_dir: Path | str | None = None,
    data_fingerprint: str = "",
    max_edit_distance: int | None = None,
    motions: tuple[torch.Tensor, Sequence[int]] | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
    tags: Sequence[list[str] | None] | None = None,
) -> list[PerturbedPrompt]:
    """Perturb every prompt within `budget` words.

    Without an encoder: seeded random perturbations (transfer sets, one per recipe, budget and
    seed). With an encoder (texts -> embeddings; its `identity` names the set): TextAttack's
    greedy word-importance search maximising the embedding drift (white-box sets), or, with
    `motions` = (motion embeddings, each prompt's true row), pushing the true motion down the
    text-to-motion ranking.

    Stopwords (in any case), numbers, non-words and already-changed words are never touched
    (`recipes.build_protection`, TextAttack's RepeatModification); character recipes keep the
    whole prompt within a Levenshtein distance of 2 per allowed word unless
    `max_edit_distance` says otherwise. Every change passes the meaning check
    (`moclip.attacks.meaning`: judge similarity >= `threshold`, no antonym swap; None: no
    check). `tags`: per prompt, the caption file's parts of speech of its words, or None. With
    a `cache_dir`, the set is stored as JSON lines under its key and read back on the next
    call.
    """
    budget = budget if isinstance(budget, Budget) else Budget.parse(budget)
    encoder_id = getattr(encoder, "identity", "custom-encoder") if encoder is not None else None
    if motions is not None:
        if encoder is None:
            raise ValueError("motions= needs an encoder: the rank attack is white-box")
        encoder_id += "-rank"
    path = None
    if cache_dir is not None:
        key = set_key(data_fingerprint, recipe, budget, seed, encoder_id, threshold)
        path = Path(cache_dir) / f"{key}.jsonl"
        if path.is_file():
            return read_set(path)
    transformation = build_transformation(recipe)
    if max_edit_distance is None and recipe in CHARACTER_RECIPES and budget.words is not None:
        max_edit_distance = 2 * budget.words
    seeds = [int(np.random.default_rng([seed, i]).integers(2**31)) for i in range(len(prompts))]
    tags = list(tags) if tags is not None else [None] * len(prompts)
    if len(tags) != len(prompts):
        raise ValueError(f"{len(tags)} tag lists for {len(prompts)} prompts")
    if encoder is None:
        from textattack.constraints.pre_transformation import RepeatModification

        constraints = [RepeatModification(), build_protection()]
        meaning = build_meaning_constraint(threshold) if threshold is not None else None
        bar = progress_bar(len(prompts), f"{recipe} budget {budget}")
        records = []
        for text, s, prompt_tags in zip(prompts, seeds, tags):
            set_tags(transformation, prompt_tags)
            records.append(
                _perturb_one(
                    text, transformation, constraints, budget, s, max_edit_distance, meaning
                )
            )
            bar.update(1)
        bar.close()
    else:
        records = _attack_all(
            prompts,
            seeds,
            encoder,
            transformation,
            budget,
            max_edit_distance,
            motions,
            threshold,
            tags,
        )
    records = _judged(records)
    if path is not None:
        write_set(
            path,
            records,
            {
                "recipe": recipe,
                "budget": str(budget),
                "seed": seed,
                "encoder": encoder_id,
                "data_fingerprint": data_fingerprint,
                "format": SET_FORMAT,
                "meaning_threshold": threshold,
            },
        )
    return records


def write_set(path: Path, records: list[PerturbedPrompt], header: dict) -> None:
    """JSON lines, a header line first; written to a temporary name, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(json.dumps({"header": header}) + "\n")
        for record in records:
            f.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_set(path: Path) -> list[PerturbedPrompt]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or "header" not in json.loads(lines[0]):
        raise ValueError(f"{path}: not a perturbed prompt set (no header line)")
    return [PerturbedPrompt(**json.loads(line)) for line in lines[1:]]


def set_statistics(
    records: Sequence[PerturbedPrompt], encoder: Callable[[list[str]], torch.Tensor] | None = None
) -> dict[str, float]:
    """Success rate, mean words changed, mean edit distance, the judge similarity of the
    changed prompts (mean, 5th percentile, minimum), and with an encoder (texts ->
    embeddings) the mean drift 1 - cos(E(x'), E(x))."""
    stats = {
        "success_rate": float(np.mean([r.success for r in records])),
        "mean_words_changed": float(np.mean([r.words_changed for r in records])),
        "mean_edit_distance": float(np.mean([r.edit_distance for r in records])),
    }
    judged = [r.similarity for r in records if r.success and r.similarity is not None]
    if judged:
        stats.update(
            similarity_mean=float(np.mean(judged)),
            similarity_p05=float(np.percentile(judged, 5)),
            similarity_min=float(np.min(judged)),
        )
    if encoder is not None:
        a = encoder([r.original for r in records]).float()
        b = encoder([r.perturbed for r in records]).float()
        stats["mean_drift"] = float((1 - torch.nn.functional.cosine_similarity(a, b)).mean())
    return stats
