"""The keys that name a sweep's results, without Ray: a short stable hash (`digest`) of
everything that decides a number, so a finished trial or a trained model is found again by
any later sweep over the same data and settings."""

from __future__ import annotations

import hashlib
import json

from sweeps.config import StudyConfig
from sweeps.data import scored_name, uses_recognizer


def digest(value) -> str:
    """A short, stable hash of any JSON-able value (dict keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sweep_key(config: StudyConfig) -> str:
    """A hash of everything that decides the sweep's numbers (not where or how it runs)."""
    tree = config.to_dict()
    for name in ("workdir", "ray", "tracking"):
        tree.pop(name)
    # where MSR Action3D lies is not what it holds: its fingerprints key the recogniser and
    # the prompts (sweeps.plan.scoring_key); in-domain studies keep the keys they had
    tree["data"].pop("eval_root")
    if not config.data.eval_kind:
        tree["data"].pop("eval_kind")
    # the generator's sampling settings change no number: evaluations sample with
    # evaluation.ddim_steps and evaluation.guidance, in batches of generator.sample_batch
    tree["generator"] = config.generator.weights_dict()
    tree["evaluation"] = config.evaluation_key()
    tree["evaluation"].update(config.adaptation())  # which arms, how the adapted one trains
    return digest(tree)


def model_keys(config: StudyConfig, fingerprints: dict[str, str]) -> tuple[str, str]:
    """The cache keys of the evaluator and the generator: the data (the splits'
    `fingerprints`; the scoring model's are those of the data it scores on, MSR Action3D's in
    a transfer study) and what shapes each one's weights. How the generator samples (DDIM
    steps, guidance, batch) is left out: a sweep that changes it reuses the trained generator."""
    data_key = digest([fingerprints["train"], fingerprints["test"]])
    scored_key = digest([fingerprints[scored_name(config, s)] for s in ("train", "test")])
    evaluator_key = digest([data_key, config.evaluation.evaluator_steps, config.evaluation.seed])
    if uses_recognizer(config):
        recognizer = config.evaluation.recognizer.to_dict()
        evaluator_key = digest([scored_key, "recognizer", recognizer, config.evaluation.seed])
    generator_key = digest(
        [
            data_key,
            config.encoder.to_dict(),
            config.generator.weights_dict(),
            config.evaluation.generator_steps,
            config.evaluation.seed,
        ]
    )
    return evaluator_key, generator_key
