"""The sweep's trials, without Ray: typed jobs (`sweeps.records`), each with a key, a hash of
everything that determines its result, so a finished trial is recognised again by any later
sweep."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict
from itertools import product
from typing import TYPE_CHECKING

from moclip.attacks.perturb import SET_FORMAT
from sweeps.config import StudyConfig
from sweeps.keys import digest
from sweeps.records import EvaluationJob, FinetuneJob, SearchJob

if TYPE_CHECKING:
    from moclip.training import FinetuneConfig
    from sweeps.stage0 import Stage0

SEARCHED = ("w_distill", "lr_text", "lr_motion")
TRANSFER_GREEDY = "greedy-transfer"  # the greedy set crafted once against the surrogate  # what Optuna mode samples per trial


def job_settings(study: StudyConfig, job: FinetuneJob | SearchJob) -> FinetuneConfig:
    """The study's fine-tuning settings with this trial's seed, loss weights and rates (its
    length still in `epochs`: `moclip.finetune.build_finetune` resolves it on the subset)."""
    overrides = {
        name: getattr(job, name)
        for name in ("seed", "w_contrastive", *SEARCHED)
        if getattr(job, name) is not None
    }
    return dataclasses.replace(study.finetune, **overrides)


def finetune_config(study: StudyConfig, job: FinetuneJob | SearchJob) -> FinetuneConfig:
    """`job_settings` with the steps resolved from `finetune.epochs` and the job's pairs
    (split over the Ray Train workers), so that every fraction makes the same number of passes
    over its subset: what the fine-tune trains, as its key hashes it."""
    return job_settings(study, job).resolved(job.n_pairs, max(1, study.ray.num_workers))


def finetune_job(
    config: StudyConfig,
    stage0: Stage0,
    fraction: float,
    seed: int,
    w_contrastive: float,
    w_distill: float,
    lr_text: float | None = None,
    lr_motion: float | None = None,
    subset_seed: int = 0,
) -> FinetuneJob:
    """One fine-tune on subset draw `subset_seed` with training seed `seed`; its key hashes
    the data, the subset draw, the models and the effective fine-tuning settings, so a grid
    point and an Optuna sample with the same values share it."""
    motions, pairs = stage0.subset_sizes[(fraction, subset_seed)]
    tuned = "" if lr_text is None else " tuned"
    draw = f" d{subset_seed}" if len(config.grid.subset_seeds) > 1 else ""
    job = FinetuneJob(
        key="",
        name=f"finetune f{fraction:g} wd{w_distill:.3g}{tuned}{draw} s{seed}",
        fraction=fraction,
        seed=seed,
        w_contrastive=w_contrastive,
        w_distill=w_distill,
        n_pairs=pairs,
        n_motions=motions,
        lr_text=lr_text,
        lr_motion=lr_motion,
        subset_seed=subset_seed,
    )
    effective = finetune_config(config, job)
    key = "ft-" + digest(
        [
            stage0.train_fingerprint,
            config.encoder.to_dict(),
            config.motion_encoder.to_dict(),
            effective.to_dict(),
            fraction,
            subset_seed,
        ]
    )
    return dataclasses.replace(job, key=key)


def finetune_jobs(
    config: StudyConfig, stage0: Stage0, tuned: dict[float, dict] | None = None
) -> list[FinetuneJob]:
    """One fine-tune per fraction x w_contrastive x w_distill x subset seed x seed, or, with
    `tuned` (fraction -> the values Optuna found), one per fraction x subset seed x seed with
    those values."""
    grid = config.grid
    if tuned is not None:
        return [
            finetune_job(
                config, stage0, fraction, seed, grid.w_contrastive[0], **tuned[fraction],
                subset_seed=draw,
            )
            for fraction, draw, seed in product(grid.fractions, grid.subset_seeds, grid.seeds)
        ]
    return [
        finetune_job(config, stage0, fraction, seed, w_c, w_d, subset_seed=draw)
        for fraction, w_c, w_d, draw, seed in product(
            grid.fractions, grid.w_contrastive, grid.w_distill, grid.subset_seeds, grid.seeds
        )
    ]


def baseline_encoder(config: StudyConfig) -> FinetuneJob:
    """The fraction-0 row: the original encoder, not fine-tuned (a job that trains nothing)."""
    return FinetuneJob(
        key="base-" + digest(config.encoder.to_dict()),
        name="original encoder",
        fraction=0.0,
        seed=None,
        w_contrastive=None,
        w_distill=None,
        n_pairs=0,
    )


def search_job(config: StudyConfig, stage0: Stage0, fraction: float) -> SearchJob:
    """The Optuna search of one fraction, on the first subset draw, seed and w_contrastive."""
    seed, draw = config.grid.seeds[0], config.grid.subset_seeds[0]
    motions, pairs = stage0.subset_sizes[(fraction, draw)]
    return SearchJob(
        group="so-" + search_group(config, stage0, fraction),
        name=f"search f{fraction:g}",
        fraction=fraction,
        seed=seed,
        w_contrastive=config.grid.w_contrastive[0],
        n_pairs=pairs,
        n_motions=motions,
        subset_seed=draw,
    )


def conditions(config: StudyConfig) -> list[tuple[str, int]]:
    """(recipe, budget): clean ('none', 0), every transfer recipe, and where on the greedy
    set crafted against the surrogate ('greedy-transfer') and the white-box greedy attack,
    at every budget."""
    attacks = config.attacks
    out = [("none", 0)] + [(r, b) for r in attacks.recipes for b in attacks.budgets]
    if attacks.transfer_greedy:
        out += [(TRANSFER_GREEDY, b) for b in attacks.budgets]
    if attacks.greedy:
        out += [("greedy", b) for b in attacks.budgets]
    return out


def scoring_key(config: StudyConfig, stage0: Stage0) -> str:
    """A hash of everything that decides a score besides the encoder: the frozen models, the
    prompts, the attack settings and the evaluation settings."""
    return digest(
        [
            stage0.evaluator_path.name,
            stage0.generator_path.name,
            stage0.prompts,
            config.attacks.seed,
            config.attacks.greedy_recipe,
            config.evaluation_key(),
            # the perturbation code's version and meaning check decide every attacked set
            SET_FORMAT,
            config.attacks.meaning_threshold,
        ]
    )


def search_group(config: StudyConfig, stage0: Stage0, fraction: float) -> str:
    """The key shared by every Optuna trial of one fraction's search: finished trials of a
    search with the same key are fed back to Optuna instead of being run again."""
    search = asdict(config.search)
    for name in ("mode", "trials", "max_concurrent"):  # how far and how fast, not what
        search.pop(name)
    return digest(
        [
            scoring_key(config, stage0),
            stage0.train_fingerprint,
            config.encoder.to_dict(),
            config.motion_encoder.to_dict(),
            config.finetune.to_dict(),
            config.grid.w_contrastive[0],
            config.grid.seeds[0],
            config.grid.subset_seeds[0],
            stage0.search_prompts,
            asdict(config.attacks),
            search,
            fraction,
        ]
    )


def evaluation_jobs(
    config: StudyConfig, stage0: Stage0, encoders: list[FinetuneJob]
) -> list[EvaluationJob]:
    """One evaluation per encoder x condition x generator arm (the original encoder only with
    the frozen generator, which was trained on its features, and once per `grid.seeds` with
    that seed's generation noise, so that its interval spans what the others' do). An
    evaluation's key does not depend on its encoder's checkpoint, so the jobs are known before
    the fine-tunes run."""
    shared = scoring_key(config, stage0)
    adaptation = config.adaptation()
    adaptation.pop("generator")
    jobs = []
    for arm, encoder, (recipe, budget) in product(
        config.evaluation.arms, encoders, conditions(config)
    ):
        if arm == "adapted" and encoder.is_baseline:
            continue
        label = "clean" if recipe == "none" else f"{recipe} b{budget}"
        seeds = config.grid.seeds if encoder.is_baseline else [encoder.seed]
        for seed in seeds:
            parts = [shared, encoder.key, recipe, budget, seed]
            parts += [arm, adaptation] if arm == "adapted" else []
            generation = f" g{seed}" if encoder.is_baseline else ""
            jobs.append(
                EvaluationJob(
                    key="ev-" + digest(parts),
                    name=f"eval {encoder.name}{generation} | {label}"
                    + (" | adapted" if arm == "adapted" else ""),
                    encoder_key=encoder.key,
                    fraction=encoder.fraction,
                    seed=seed,
                    w_contrastive=encoder.w_contrastive,
                    w_distill=encoder.w_distill,
                    n_pairs=encoder.n_pairs,
                    recipe=recipe,
                    budget=budget,
                    lr_text=encoder.lr_text,
                    lr_motion=encoder.lr_motion,
                    arm=arm,
                    subset_seed=encoder.subset_seed,
                )
            )
    return jobs
