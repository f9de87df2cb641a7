"""The sweep's trials as plain dicts, each with a key: a hash of everything that determines its
result, so a finished trial is recognised again by any later sweep."""

from __future__ import annotations

from dataclasses import asdict
from itertools import product

from sweeps.config import StudyConfig
from sweeps.stage0 import Stage0, digest


def finetune_jobs(config: StudyConfig, stage0: Stage0) -> list[dict]:
    """One fine-tune per fraction x w_contrastive x w_distill x seed."""
    grid = config.grid
    jobs = []
    for fraction, w_c, w_d, seed in product(
        grid.fractions, grid.w_contrastive, grid.w_distill, grid.seeds
    ):
        params = {"fraction": fraction, "w_contrastive": w_c, "w_distill": w_d, "seed": seed}
        key = "ft-" + digest(
            [
                stage0.train_fingerprint,
                config.encoder.to_dict(),
                config.motion_encoder.to_dict(),
                config.finetune.to_dict(),
                params,
            ]
        )
        motions, pairs = stage0.subset_sizes[(fraction, seed)]
        name = f"finetune f{fraction:g} wd{w_d:g} s{seed}"
        jobs.append({"key": key, "name": name, "n_pairs": pairs, "n_motions": motions, **params})
    return jobs


def baseline_encoder(config: StudyConfig) -> dict:
    """The fraction-0 row: the original encoder, not fine-tuned."""
    return {
        "key": "base-" + digest(config.encoder.to_dict()),
        "name": "original encoder",
        "fraction": 0.0,
        "w_contrastive": None,
        "w_distill": None,
        "seed": None,
        "n_pairs": 0,
        "checkpoint": None,
    }


def conditions(config: StudyConfig) -> list[tuple[str, int]]:
    """(recipe, budget): clean ('none', 0), every transfer recipe and, if on, the greedy
    white-box attack, at every budget."""
    attacks = config.attacks
    out = [("none", 0)] + [(r, b) for r in attacks.recipes for b in attacks.budgets]
    if attacks.greedy:
        out += [("greedy", b) for b in attacks.budgets]
    return out


def evaluation_jobs(config: StudyConfig, stage0: Stage0, encoders: list[dict]) -> list[dict]:
    """One evaluation per encoder x condition."""
    shared = digest(
        [
            stage0.evaluator_path.name,
            stage0.generator_path.name,
            stage0.prompts,
            config.attacks.seed,
            config.attacks.greedy_recipe,
            asdict(config.evaluation),
        ]
    )
    jobs = []
    for encoder, (recipe, budget) in product(encoders, conditions(config)):
        label = "clean" if recipe == "none" else f"{recipe} b{budget}"
        jobs.append(
            {
                "key": "ev-" + digest([shared, encoder["key"], recipe, budget]),
                "name": f"eval {encoder['name']} | {label}",
                "encoder_key": encoder["key"],
                "checkpoint": encoder["checkpoint"],
                "fraction": encoder["fraction"],
                "w_contrastive": encoder["w_contrastive"],
                "w_distill": encoder["w_distill"],
                "seed": encoder["seed"],
                "n_pairs": encoder["n_pairs"],
                "recipe": recipe,
                "budget": budget,
            }
        )
    return jobs
