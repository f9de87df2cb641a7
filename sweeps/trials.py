"""What runs inside Ray: the Ray Train worker loop that fine-tunes MoCLIP, the Tune trial that
launches it, and the Tune trial that evaluates one encoder under one attack; the scorer both
use (in Optuna mode the worker scores its own checkpoints for the search objective).

Each function takes plain dicts (what Tune's param space and Ray's object store carry) and
calls into `moclip`, which knows nothing of Ray.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import ray.tune
import torch

from sweeps.config import StudyConfig, config_from_dict
from sweeps.plan import SEARCHED, finetune_config

CHECKPOINT_FILE = "moclip.pt"
PERTURBED_FILE = "perturbed.jsonl"
# Worker-group start-ups that may time out (e.g. waiting for resources) before a trial fails;
# Ray's default retries forever.
CONTROLLER_FAILURES = 3


def _load_bytes(blob: bytes, loader, device):
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


class Scorer:
    """The frozen generator and evaluator with the evaluation prompts and the transfer sets
    (what `Stage0.payload` carries): scores any text encoder under any attack condition."""

    def __init__(self, payload: dict, device: torch.device) -> None:
        from moclip.attacks.perturb import PerturbedPrompt
        from moclip.evaluation.evaluator import load_evaluator
        from moclip.generation.diffusion import load_generator

        self.study = config_from_dict(payload["study"])
        self.evaluator, _ = _load_bytes(payload["evaluator"], load_evaluator, device)
        self.generator, _ = _load_bytes(payload["generator"], load_generator, device)
        self.generator.config = dataclasses.replace(
            self.generator.config,
            sample_steps=self.study.evaluation.ddim_steps,
            guidance=self.study.evaluation.guidance,
        )
        self.prompts, self.lengths = payload["prompts"], payload["lengths"]
        self.transfer = {
            key: [PerturbedPrompt(**row) for row in rows]
            for key, rows in payload["transfer"].items()
        }

    def perturbed(self, recipe: str, budget: int, embedder, count: int):
        """The first `count` prompts under (recipe, budget): None for clean prompts, the stored
        transfer set, or the greedy white-box attack on `embedder` itself."""
        from moclip.attacks.perturb import perturb

        if recipe == "none":
            return None
        if recipe == "greedy":
            attacks = self.study.attacks
            return perturb(
                self.prompts[:count], attacks.greedy_recipe, budget, attacks.seed, encoder=embedder
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
    ):
        """(every metric of `evaluate`, the perturbed records or None) on the first `count`
        prompts (0: all), over `repeats` generation repeats (0: the configured number)."""
        from moclip.attacks.perturb import set_statistics
        from moclip.evaluation.evaluate import evaluate

        count = count or len(self.prompts)
        clean = self.prompts[:count]
        records = self.perturbed(recipe, budget, embedder, count)
        evaluation = self.study.evaluation
        metrics = evaluate(
            self.generator,
            embedder,
            clean,
            [r.perturbed for r in records] if records else clean,
            self.lengths[:count],
            self.evaluator,
            repeats=repeats or evaluation.repeats,
            seed=evaluation.seed,
            mm_prompts=evaluation.mm_prompts if multimodality else 0,
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
        metric = "r_precision_top3" if search.objective == "r_precision_top3" else "fid"
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


def finetune_worker(loop_config: dict) -> None:
    """One Ray Train worker: fine-tune on the job's nested subset, report checkpoints every
    `ray.checkpoint_every` steps, then score retrieval on the test split and report the final
    checkpoint. Picks up from the latest checkpoint after a worker failure.

    With `loop_config["scoring"]` (Optuna mode) it reports only at checkpoints, and rank 0 adds
    the search objective of the model at that step (what Optuna and ASHA read)."""
    from moclip.data.subsets import nested_subset
    from moclip.model import CHECKPOINT_FORMAT, CheckpointMeta, build_moclip, save_checkpoint
    from moclip.pairs import PairSet
    from moclip.retrieval import evaluate_retrieval
    from moclip.storage import load_state
    from moclip.text_encoders import TeacherCache, TextEmbedder, frozen_copy
    from moclip.training import fit, make_optimizer
    from sweeps.stage0 import load_split

    study = config_from_dict(loop_config["study"])
    job = loop_config["job"]
    torch.set_num_threads(max(1, int(study.ray.cpus_per_worker)))
    context = ray.train.get_context()
    rank = context.get_world_rank()
    device = ray.train.torch.get_device()
    train = load_split(study.data.kind, loop_config["root"], "train")
    subset = train.subset(nested_subset(train.motion_ids, job["fraction"], job["seed"]))
    pairs = PairSet(subset, train.mean, train.std)
    config = finetune_config(study, job)
    model, tokenizer = build_moclip(
        study.encoder, train.skeleton, study.motion_encoder, seed=job["seed"]
    )
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    optimizer, scheduler = make_optimizer(model, config)
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            state = load_state(
                Path(folder) / CHECKPOINT_FILE, "MoCLIP checkpoint", CHECKPOINT_FORMAT, ""
            )
        model.load_state_dict(state["model"])
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
        print(f"[finetune {job['key']}] resuming at step {start}", flush=True)
    model = ray.train.torch.prepare_model(model)
    plain = getattr(model, "module", model)
    scorer = Scorer(loop_config["scoring"], device) if loop_config.get("scoring") else None

    def meta(step: int) -> CheckpointMeta:
        return CheckpointMeta(
            step=step,
            text_spec=study.encoder,
            motion_config=study.motion_encoder,
            skeleton=train.skeleton.name,
            train_config=config.to_dict(),
            data_fingerprint=subset.fingerprint(),
            mean=train.mean,
            std=train.std,
        )

    def report(metrics: dict, step: int, with_optimizer: bool) -> None:
        if rank != 0:
            ray.train.report(metrics)
            return
        if scorer is not None:
            with preserved_rng():
                value, per_attack = scorer.objective(TextEmbedder(plain.text, tokenizer))
            plain.train()
            metrics = {**metrics, "objective": value}
            metrics.update({f"objective/{name}": v for name, v in per_attack.items()})
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(
                Path(folder) / CHECKPOINT_FILE,
                model,
                meta(step),
                optimizer if with_optimizer else None,
                scheduler if with_optimizer else None,
            )
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))

    started = time.monotonic()
    every = study.ray.checkpoint_every

    def on_step(step: int, metrics: dict) -> None:
        row = {"step": step, "loss": metrics["loss"], "distill": metrics["distill"]}
        if every and step % every == 0 and step < config.steps:
            report(row, step, with_optimizer=True)
        elif scorer is None and step % config.log_every == 0 and step < config.steps:
            ray.train.report(row)

    prepare = ray.train.torch.prepare_data_loader
    history = fit(
        model,
        pairs,
        tokenizer,
        teacher,
        config,
        device,
        optimizer,
        scheduler,
        start_step=start,
        on_step=on_step,
        prepare_loader=lambda loader: prepare(loader, add_dist_sampler=False),
    )
    # no "done" key: Tune reads done=True as the trial's end and would kill this run's
    # controller before it releases its placement group
    final = {"step": config.steps, "n_pairs": len(pairs)}
    final["n_motions"] = len(subset.motion_ids)
    final["train_seconds"] = round(time.monotonic() - started, 1)
    if history:
        final["loss"] = history[-1]["loss"]
    if rank == 0:
        test = load_split(study.data.kind, loop_config["root"], "test")
        scores = evaluate_retrieval(
            plain, tokenizer, teacher, test, train.mean, train.std, seed=job["seed"], device=device
        )
        final.update({k: v for k, v in scores.items() if not k.startswith("num_")})
    report(final, config.steps, with_optimizer=False)


def finetune_trial(
    trial_config: dict, study: dict, root: str, run_name: str, storage: str, scoring=None
) -> None:
    """A Tune trial: one Ray Train run (TorchTrainer) for one grid point or Optuna sample
    (whose sampled values sit beside the job in `trial_config`)."""
    from ray.tune.integration.ray_train import TuneReportCallback

    config = config_from_dict(study)
    job = dict(trial_config["job"])
    job.update({name: trial_config[name] for name in SEARCHED if name in trial_config})
    # an Optuna sample has no key until its values are known: its Tune trial id names its run
    name = job["key"] or f"{job['group']}-{ray.tune.get_context().get_trial_id()}"
    scaling = ray.train.ScalingConfig(
        num_workers=config.ray.num_workers,
        use_gpu=config.ray.use_gpu,
        resources_per_worker={
            "CPU": config.ray.cpus_per_worker,
            **({"GPU": config.ray.gpus_per_worker} if config.ray.use_gpu else {}),
        },
    )
    trainer = ray.train.torch.TorchTrainer(
        finetune_worker,
        train_loop_config={"study": study, "job": job, "root": root, "scoring": scoring},
        scaling_config=scaling,
        run_config=ray.train.RunConfig(
            name=f"{name}-{run_name}",
            storage_path=storage,
            failure_config=ray.train.FailureConfig(
                max_failures=config.ray.max_failures,
                controller_failure_limit=CONTROLLER_FAILURES,
            ),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def load_encoder(study: StudyConfig, checkpoint: str | None, device):
    """The original encoder (baseline) or a fine-tuned one from its Ray checkpoint."""
    from moclip.model import load_checkpoint
    from moclip.text_encoders import TextEmbedder, build_text_encoder

    if checkpoint is None:
        encoder, tokenizer, _ = build_text_encoder(study.encoder)
        return TextEmbedder(encoder.to(device), tokenizer)
    with ray.train.Checkpoint(checkpoint).as_directory() as folder:
        model, tokenizer, _, _ = load_checkpoint(Path(folder) / CHECKPOINT_FILE, device)
    return TextEmbedder(model.text, tokenizer)


def evaluation_trial(trial_config: dict, payload: dict) -> None:
    """A Tune trial: generate from one encoder's (perturbed) prompts, score with the evaluator
    against the clean prompts, and report every metric (and the perturbed set as a checkpoint)."""
    from moclip.attacks.perturb import write_set

    started = time.monotonic()
    study = config_from_dict(payload["study"])
    job = trial_config["job"]
    torch.set_num_threads(max(1, int(study.ray.cpus_per_eval_trial)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scorer = Scorer(payload, device)
    embedder = load_encoder(study, job["checkpoint"], device)
    recipe, budget = job["recipe"], job["budget"]
    metrics, records = scorer.score(embedder, recipe, budget)
    metrics["eval_seconds"] = round(time.monotonic() - started, 1)
    if records is None:
        ray.tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        write_set(Path(folder) / PERTURBED_FILE, records, {"recipe": recipe, "budget": budget})
        (Path(folder) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(folder))
