"""What one fine-tune and one evaluation compute, without Ray: a fine-tune job's pieces
(`prepare_finetune`, on `moclip.finetune.build_finetune`) and the scorer of evaluation trials
(`Scorer`). `sweeps/trials.py` wraps
them in Ray Train and Ray Tune; benchmarks call them directly to measure what Ray adds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from moclip.finetune import Finetune, build_finetune
from sweeps.config import StudyConfig, config_from_dict
from sweeps.data import (
    has_validation,
    node_split,
    scored_name,
    scored_split,
    transfers,
    uses_recognizer,
)
from sweeps.plan import job_settings
from sweeps.records import FinetuneJob, SearchJob

if TYPE_CHECKING:
    from moclip.generation.diffusion import DiffusionConfig


def load_bytes(blob: bytes, loader, device):
    """`loader(path, device)` on a model file given as bytes (as Ray's object store holds it)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(blob)
        return loader(path, device)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without moving torch's, numpy's or Python's global random state, so scoring
    a checkpoint mid-training leaves the rest of the run as it would have been."""
    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def sampling_config(trained: DiffusionConfig, study: StudyConfig) -> DiffusionConfig:
    """The generator's config `trained` with the sampling of `study`: `evaluation.ddim_steps`
    DDIM steps, `evaluation.guidance` and batches of `generator.sample_batch`. How to sample is
    the sweep's choice, not the one the cached generator was trained under (none of the three
    is part of the generator's cache key)."""
    return dataclasses.replace(
        trained,
        sample_steps=study.evaluation.ddim_steps,
        guidance=study.evaluation.guidance,
        sample_batch=study.generator.sample_batch,
    )


class Scorer:
    """The frozen generator and evaluator with the evaluation prompts and the transfer sets
    (what `Stage0.payload` carries): scores any text encoder under any attack condition."""

    def __init__(self, payload: dict, device: torch.device) -> None:
        from moclip.attacks.perturb import PerturbedPrompt
        from moclip.evaluation.evaluator import load_evaluator
        from moclip.evaluation.recognizer import load_recognizer
        from moclip.generation.diffusion import load_generator

        self.study = config_from_dict(payload["study"])
        # the action recogniser where the study scores actions (MSR Action3D), else the
        # text-motion evaluator
        self.labels = payload.get("labels")
        loader = load_recognizer if self.labels is not None else load_evaluator
        self.evaluator, _ = load_bytes(payload["evaluator"], loader, device)
        generator, _ = load_bytes(payload["generator"], load_generator, device)
        self.use_generator(generator)
        self.prompts, self.lengths = payload["prompts"], payload["lengths"]
        self.tags = payload.get("tags") or [None] * len(self.prompts)
        # the split the prompts come from and the real motions are compared with: "test", or
        # "val" for the search's objective (the test split never chooses anything)
        self.split = payload.get("split", "test")
        self.root, self.fingerprints = payload.get("root", ""), payload.get("fingerprints", {})
        self._real: dict[str, np.ndarray] = {}
        self._convert = None  # built on first use (`conversion`)
        self._splits: dict = {}  # the scored splits, each read (and checked) once
        self.transfer = {
            key: [PerturbedPrompt(**row) for row in rows]
            for key, rows in payload["transfer"].items()
        }

    def use_generator(self, generator) -> None:
        """Score with `generator` (the frozen one, or an adapted one), sampling as configured."""
        generator.config = sampling_config(generator.config, self.study)
        self.generator = generator

    def adapted_generator(self, job, embedder, root: str, fingerprints: dict, device):
        """The frozen generator trained on for `job`'s encoder (`embedder`): on its fine-tune's
        nested training subset (fraction and subset seed as the fine-tune drew it), conditioned on
        its features, for `evaluation.adapt_steps` at `adapt_lr_ratio` of the rate."""
        from moclip.data.subsets import nested_subset
        from moclip.generation.train_generator import GENERATOR_LR, adapt_generator

        evaluation = self.study.evaluation
        train = node_split(self.study, root, "train", fingerprints.get("train"))
        subset = train.subset(nested_subset(train.motion_ids, job.fraction, job.subset_seed))
        adapted, _ = adapt_generator(
            self.generator,
            subset,
            embedder,
            evaluation.adapt_steps,
            lr=GENERATOR_LR * evaluation.adapt_lr_ratio,
            seed=evaluation.seed,
            device=device,
        )
        return adapted

    def scored(self, split: str):
        """`split` of the data the scores compare with (MSR Action3D's in a transfer study),
        as this node has it, checked against the driver's fingerprint; read once."""
        if split not in self._splits:  # the retargeting and the floor both read "train"
            name = scored_name(self.study, split)
            self._splits[split] = scored_split(
                self.study, self.root, split, self.fingerprints.get(name)
            )
        return self._splits[split]

    def conversion(self):
        """None, or in a transfer study the map of a generated motion onto the Kinect
        skeleton (`moclip.data.retarget`), to the mean body of Action3D's training subjects."""
        from moclip.data.retarget import Retargeting, action3d_body, retarget_features

        if not transfers(self.study):
            return None
        if self._convert is None:
            if not self.root:
                raise ValueError(
                    "a transfer study's scorer needs the data (payload root) to retarget to "
                    "the MSR Action3D training subjects' mean body"
                )
            retargeting = Retargeting(action3d_body(self.scored("train")))
            self._convert = lambda motion: retarget_features(motion, retargeting)
        return self._convert

    def real_features(self, split: str) -> np.ndarray | None:
        """The scoring model's features of every real motion of `split` (as this node has it,
        checked against the driver's fingerprint where the payload has one), computed once;
        None for a payload without data (a benchmark's stand-in models), which is scored
        against the Gaussian its scoring model stores, without KID."""
        if not self.root:
            return None
        if split not in self._real:
            part = self.scored(split)
            motions = [item.features for item in part.items]
            if self.labels is not None:
                self._real[split] = self.evaluator.encode(motions)[0]
            else:
                self._real[split] = self.evaluator.encode_motions(motions)
        return self._real[split]

    def floor(self, count: int = 0) -> dict[str, float]:
        """FID and KID of `count` (default: every prompt) real motions held out from the
        scored split (the validation split where it holds that many, else the training
        split), against that split's real motions: the real-versus-real floor at the sample
        sizes the scores have (`moclip.metrics.real_floor`)."""
        from moclip.metrics import real_floor

        if not self.root:
            return {}
        count = count or len(self.prompts)
        held_out = "train"
        if self.split == "test" and not uses_recognizer(self.study):  # Action3D has no val
            val = self.real_features("val")
            held_out = "val" if len(val) >= count else "train"
        return real_floor(
            self.real_features(held_out),
            self.real_features(self.split),
            count,
            seed=self.study.evaluation.seed,
        )

    def perturbed(self, recipe: str, budget: int, embedder, count: int):
        """The first `count` prompts under (recipe, budget): None for clean prompts, the stored
        transfer set, or the greedy white-box attack on `embedder` itself."""
        from moclip.attacks.perturb import perturb

        if recipe == "none":
            return None
        if recipe == "greedy":
            attacks = self.study.attacks
            return perturb(
                self.prompts[:count],
                attacks.greedy_recipe,
                budget,
                attacks.seed,
                encoder=embedder,
                threshold=attacks.meaning_threshold,
                tags=self.tags[:count],
            )
        return self.transfer[f"{recipe}|{budget}"][:count]

    def score(
        self,
        embedder,
        recipe: str,
        budget: int,
        count: int = 0,
        repeats: int = 0,
        multimodality: bool = True,
        seed: int | None = None,
    ):
        """(every metric of `evaluate`, the perturbed records or None) on the first `count`
        prompts (0: all), over `repeats` generation repeats (0: the configured number), with
        the generation noise of `seed` (default: `evaluation.seed`), against the real motions
        of the scored split."""
        from moclip.attacks.perturb import set_statistics
        from moclip.evaluation.evaluate import evaluate, evaluate_actions

        count = count or len(self.prompts)
        clean = self.prompts[:count]
        records = self.perturbed(recipe, budget, embedder, count)
        used = [r.perturbed for r in records] if records else clean
        evaluation = self.study.evaluation
        options = {
            "repeats": repeats or evaluation.repeats,
            "seed": evaluation.seed if seed is None else seed,
            "mm_prompts": evaluation.mm_prompts if multimodality else 0,
            "reference": self.real_features(self.split),
        }
        if self.labels is not None:
            metrics = evaluate_actions(
                self.generator,
                embedder,
                used,
                self.lengths[:count],
                self.labels[:count],
                self.evaluator,
                convert=self.conversion(),
                **options,
            )
        else:
            metrics = evaluate(
                self.generator,
                embedder,
                clean,
                used,
                self.lengths[:count],
                self.evaluator,
                **options,
            )
        if records:
            metrics.update({f"attack_{k}": v for k, v in set_statistics(records, embedder).items()})
        return metrics, records

    def objective(self, embedder) -> tuple[float, dict[str, float]]:
        """Optuna mode's objective: `search.objective` under `search.objective_attack` at the
        largest budget, on `search.prompts` prompts, one repeat; "strongest" takes the worst
        value over every configured attack. Returns (value, value per attack)."""
        search, attacks = self.study.search, self.study.attacks
        budget = max(attacks.budgets)
        if search.objective_attack == "strongest":
            recipes = [*attacks.recipes, *(["greedy"] if attacks.greedy else [])]
        else:
            recipes = [search.objective_attack]
        metric = "fid"
        if search.objective == "r_precision_top3":  # recognition accuracy where actions are
            metric = "accuracy_top1" if self.labels is not None else "r_precision_top3"
        clean_fid = None
        cheap = {"count": search.prompts, "repeats": 1, "multimodality": False}
        if search.objective == "delta_fid":
            clean_fid = self.score(embedder, "none", 0, **cheap)[0]["fid"]
        values = {}
        for recipe in recipes:
            metrics, _ = self.score(embedder, recipe, 0 if recipe == "none" else budget, **cheap)
            values[recipe] = metrics[metric] - (clean_fid if clean_fid is not None else 0.0)
        worst = max if search.direction == "min" else min
        return worst(values.values()), values


@dataclasses.dataclass(kw_only=True)
class FinetuneRun(Finetune):
    """A fine-tune job as a trial runs it: `moclip.finetune.Finetune` built from the study
    config on this node's copy of the data, which the test scores read too."""

    study: StudyConfig
    job: FinetuneJob | SearchJob
    root: str
    fingerprints: dict[str, str]  # the driver's, by split: what this node's copy must match

    def test_scores(self, model: torch.nn.Module, device: torch.device) -> dict[str, float]:
        """Retrieval on the test split (batch-32 R-precision, R@k, teacher drift)."""
        test = node_split(self.study, self.root, "test", self.fingerprints.get("test"))
        scores = self.retrieval_scores(test, device, model)
        return {k: v for k, v in scores.items() if not k.startswith("num_")}


def prepare_finetune(
    study: StudyConfig,
    job: FinetuneJob | SearchJob,
    root: str,
    fingerprints: dict[str, str] | None = None,
) -> FinetuneRun:
    """Everything a fine-tune of `job` (fraction, seed, loss weights) needs, on the CPU, from
    the data at `root` on this node (checked against the driver's `fingerprints` by split),
    its validation split included."""
    fingerprints = fingerprints or {}
    train = node_split(study, root, "train", fingerprints.get("train"))
    # checkpoints are chosen on the validation split where the data has one (MSR Action3D's
    # cross-subject protocol has none: its last step is kept)
    val = node_split(study, root, "val") if has_validation(study) else None
    finetune = build_finetune(
        study.encoder,
        study.motion_encoder,
        job_settings(study, job),
        train,
        job.fraction,
        val,
        subset_seed=job.subset_seed,
    )
    pieces = {f.name: getattr(finetune, f.name) for f in dataclasses.fields(Finetune)}
    return FinetuneRun(**pieces, study=study, job=job, root=root, fingerprints=fingerprints)
