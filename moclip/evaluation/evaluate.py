"""The evaluation entry points: generate from (possibly perturbed) prompts, score against the
clean ones with the independent evaluator (`evaluate`, text-to-motion) or the action
recogniser (`evaluate_actions`, action-conditioned generation), repeat, and report means with
95 % intervals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from moclip.evaluation.evaluator import Evaluator
from moclip.evaluation.recognizer import ActionRecognizer, accuracy_top_k
from moclip.generation.base import MotionGenerator
from moclip.metrics import (
    diversity,
    frechet_distance,
    gaussian_stats,
    kid,
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
    reference: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric, each as `name` (mean over repeats) and `name_ci95` (Student-t over the R
    repeats), the per-repeat values of the headline metrics as `name_r{i}` (`PER_REPEAT`).

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
    gaussian = _reference_gaussian(evaluator, reference)
    text_features = evaluator.encode_texts(list(clean_prompts))
    per_repeat: dict[str, list[float]] = {}
    for repeat in range(repeats):
        motions = generator.generate(
            used_prompts, lengths, text_encoder, noise_seeds(seed, repeat, len(used_prompts))
        )
        motion_features = evaluator.encode_motions(motions)
        scores = {
            **_distribution_scores(motion_features, gaussian, reference),
            # R-precision needs one batch of 32; a smaller set (a small validation split) has none
            **(
                r_precision(text_features, motion_features, seed=seed + repeat)
                if len(text_features) >= 32
                else {}
            ),
            "mm_dist": matching_score(text_features, motion_features),
            "diversity": diversity(motion_features, seed=seed + repeat),
        }
        if mm_prompts and mm_samples >= 2:
            repeated = _multimodality_motions(
                generator, text_encoder, used_prompts, lengths, mm_prompts, mm_samples, seed, repeat
            )
            features = evaluator.encode_motions(repeated)
            features = features.reshape(-1, mm_samples, features.shape[1])
            scores["multimodality"] = multimodality(features, seed=seed + repeat)
        for name, value in scores.items():
            per_repeat.setdefault(name, []).append(value)
    return _summarise(per_repeat, repeats)


def _multimodality_motions(
    generator, text_encoder, used_prompts, lengths, mm_prompts, mm_samples, seed, repeat
) -> list[np.ndarray]:
    """`mm_samples` generations for each of the first `mm_prompts` prompts, grouped by prompt."""
    count = min(mm_prompts, len(used_prompts))
    prompts = [p for p in used_prompts[:count] for _ in range(mm_samples)]
    seeds = noise_seeds(seed + 10_000, repeat, len(prompts))
    return generator.generate(
        prompts, [n for n in lengths[:count] for _ in range(mm_samples)], text_encoder, seeds
    )


def _reference_gaussian(scorer, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The real motions' Gaussian: of `reference` features, else the one `scorer` stores."""
    if reference is not None:
        return gaussian_stats(reference)
    return scorer.reference_mu.cpu().numpy(), scorer.reference_sigma.cpu().numpy()


def _distribution_scores(features, gaussian, reference) -> dict[str, float]:
    """FID against the real motions' Gaussian, and KID where their features are given."""
    scores = {"fid": frechet_distance(*gaussian_stats(features), *gaussian)}
    if reference is not None:
        scores["kid"] = kid(features, reference)
    return scores


# the metrics whose value in each generation repeat is kept (`name_r{i}`): what paired
# differences and intervals over repeats are computed from
PER_REPEAT = ("fid", "kid", "r_precision_top3", "accuracy_top1")


def _summarise(per_repeat: dict[str, list[float]], repeats: int) -> dict[str, float]:
    """Each metric's mean over repeats and its interval, the headline metrics' value in each
    repeat, and the number of repeats."""
    result: dict[str, float] = {}
    for name, values in per_repeat.items():
        result[name], result[f"{name}_ci95"] = mean_interval(values)
        if name in PER_REPEAT:
            result.update({f"{name}_r{i}": float(v) for i, v in enumerate(values)})
    result["repeats"] = float(repeats)
    return result


def evaluate_actions(
    generator: MotionGenerator,
    text_encoder: TextEmbedder,
    used_prompts: Sequence[str],
    lengths: Sequence[int],
    labels: Sequence[int],
    recognizer: ActionRecognizer,
    repeats: int = 3,
    seed: int = 0,
    mm_prompts: int = 32,
    mm_samples: int = 10,
    reference: np.ndarray | None = None,
    convert: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, float]:
    """The action-generation protocol (Action2Motion, ACTOR): every metric in the action
    recogniser's feature space, each as `name` (mean over repeats) and `name_ci95`.
    `convert` maps each generated motion onto the recogniser's skeleton first (the transfer
    protocol: `moclip.data.retarget.retarget_features`).

    Motions are generated from `used_prompts` (clean or perturbed); `labels` are the actions
    the clean prompts name, so accuracy_top1/top3 ask whether the motion is still recognised
    as what the user meant. FID is against the real test motions the recogniser was frozen
    with (or the real motions' features `reference`, which also give KID); Diversity over the generated set; MultiModality over `mm_samples` generations of
    each of the first `mm_prompts` prompts. R-precision is left out: with a few actions, a
    batch holds several motions of the same action whose captions are as right as its own.
    """
    if not len(used_prompts) == len(lengths) == len(labels):
        raise ValueError(
            f"{len(used_prompts)} prompts, {len(lengths)} lengths and {len(labels)} labels: "
            f"need one of each per motion"
        )
    if not float(recognizer.reference_sigma.abs().sum()) > 0:
        raise ValueError(
            "the recogniser has no reference statistics of real motions; train it "
            "with moclip.evaluation.recognizer"
        )
    gaussian = _reference_gaussian(recognizer, reference)

    def encode(motions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return recognizer.encode([convert(m) for m in motions] if convert else motions)

    per_repeat: dict[str, list[float]] = {}
    for repeat in range(repeats):
        motions = generator.generate(
            used_prompts, lengths, text_encoder, noise_seeds(seed, repeat, len(used_prompts))
        )
        features, logits = encode(motions)
        scores = {
            **_distribution_scores(features, gaussian, reference),
            "accuracy_top1": accuracy_top_k(logits, labels, 1),
            "accuracy_top3": accuracy_top_k(logits, labels, 3),
            "diversity": diversity(features, seed=seed + repeat),
        }
        if mm_prompts and mm_samples >= 2:
            repeated = _multimodality_motions(
                generator, text_encoder, used_prompts, lengths, mm_prompts, mm_samples, seed, repeat
            )
            grouped = encode(repeated)[0].reshape(-1, mm_samples, features.shape[1])
            scores["multimodality"] = multimodality(grouped, seed=seed + repeat)
        for name, value in scores.items():
            per_repeat.setdefault(name, []).append(value)
    return _summarise(per_repeat, repeats)
