"""The one evaluation entry point: generate from (possibly perturbed) prompts, score against
the clean ones with the independent evaluator, repeat, and report means with 95 % intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moclip.evaluation.evaluator import Evaluator
from moclip.generation.base import MotionGenerator
from moclip.metrics import (
    diversity,
    frechet_distance,
    gaussian_stats,
    matching_score,
    mean_interval,
    multimodality,
    r_precision,
)
from moclip.text_encoders import TextEmbedder


def noise_seeds(seed: int, repeat: int, count: int) -> list[int]:
    """Per-prompt noise seeds of one repeat: the same for a clean prompt and its perturbed twin."""
    return np.random.default_rng([seed, repeat]).integers(0, 2**31 - 1, count).tolist()


def evaluate(
    generator: MotionGenerator,
    text_encoder: TextEmbedder,
    clean_prompts: Sequence[str],
    used_prompts: Sequence[str],
    lengths: Sequence[int],
    evaluator: Evaluator,
    repeats: int = 3,
    seed: int = 0,
    mm_prompts: int = 32,
    mm_samples: int = 10,
) -> dict[str, float]:
    """Every metric, each as `name` (mean over repeats) and `name_ci95` (1.96 std / sqrt(R)).

    Motions are generated from `used_prompts` (clean or perturbed); the evaluator always reads
    `clean_prompts`, so R-precision and MM-Dist ask whether the motion still matches what the
    user meant. FID is against the real test motions the evaluator was frozen with.
    MultiModality uses `mm_samples` generations for each of the first `mm_prompts` prompts.
    """
    if not len(clean_prompts) == len(used_prompts) == len(lengths):
        raise ValueError(
            f"{len(clean_prompts)} clean prompts, {len(used_prompts)} used prompts "
            f"and {len(lengths)} lengths: need one of each per motion"
        )
    if not float(evaluator.reference_sigma.abs().sum()) > 0:
        raise ValueError(
            "the evaluator has no reference statistics of real motions; train it "
            "with moclip.evaluation.train_evaluator"
        )
    reference = (evaluator.reference_mu.cpu().numpy(), evaluator.reference_sigma.cpu().numpy())
    text_features = evaluator.encode_texts(list(clean_prompts))
    per_repeat: dict[str, list[float]] = {}
    for repeat in range(repeats):
        motions = generator.generate(
            used_prompts, lengths, text_encoder, noise_seeds(seed, repeat, len(used_prompts))
        )
        motion_features = evaluator.encode_motions(motions)
        scores = {
            "fid": frechet_distance(*gaussian_stats(motion_features), *reference),
            **r_precision(text_features, motion_features, seed=seed + repeat),
            "mm_dist": matching_score(text_features, motion_features),
            "diversity": diversity(motion_features, seed=seed + repeat),
        }
        if mm_prompts and mm_samples >= 2:
            count = min(mm_prompts, len(used_prompts))
            prompts = [p for p in used_prompts[:count] for _ in range(mm_samples)]
            seeds = noise_seeds(seed + 10_000, repeat, len(prompts))
            repeated = generator.generate(
                prompts,
                [n for n in lengths[:count] for _ in range(mm_samples)],
                text_encoder,
                seeds,
            )
            features = evaluator.encode_motions(repeated).reshape(count, mm_samples, -1)
            scores["multimodality"] = multimodality(features, seed=seed + repeat)
        for name, value in scores.items():
            per_repeat.setdefault(name, []).append(value)
    result: dict[str, float] = {}
    for name, values in per_repeat.items():
        result[name], result[f"{name}_ci95"] = mean_interval(values)
    result["repeats"] = float(repeats)
    return result
