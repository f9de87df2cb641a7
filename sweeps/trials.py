"""What runs inside Ray: the Ray Train worker loop that fine-tunes MoCLIP, the Tune trial that
launches it, and the Tune trial that evaluates one encoder under one attack.

Each function takes plain dicts (what Tune's param space and Ray's object store carry) and
calls into `moclip`, which knows nothing of Ray.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import ray.train
import ray.train.torch
import ray.tune
import torch

from sweeps.config import StudyConfig, config_from_dict

CHECKPOINT_FILE = "moclip.pt"
PERTURBED_FILE = "perturbed.jsonl"
# Worker-group start-ups that may time out (e.g. waiting for resources) before a trial fails;
# Ray's default retries forever.
CONTROLLER_FAILURES = 3


def finetune_config(study: StudyConfig, job: dict):
    """The study's fine-tuning settings with this trial's seed, loss weights and rates."""
    overrides = {
        name: job[name]
        for name in ("seed", "w_contrastive", "w_distill", "lr_text", "lr_motion")
        if job.get(name) is not None
    }
    return dataclasses.replace(study.finetune, **overrides)


def finetune_worker(loop_config: dict) -> None:
    """One Ray Train worker: fine-tune on the job's nested subset, report checkpoints every
    `ray.checkpoint_every` steps, then score retrieval on the test split and report the final
    checkpoint. Picks up from the latest checkpoint after a worker failure."""
    from moclip.data.subsets import nested_subset
    from moclip.model import CHECKPOINT_FORMAT, CheckpointMeta, build_moclip, save_checkpoint
    from moclip.pairs import PairSet
    from moclip.retrieval import evaluate_retrieval
    from moclip.storage import load_state
    from moclip.text_encoders import TeacherCache, frozen_copy
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
        elif step % config.log_every == 0 and step < config.steps:
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
    final = {"step": config.steps, "done": 1, "n_pairs": len(pairs)}
    final["n_motions"] = len(subset.motion_ids)
    final["train_seconds"] = round(time.monotonic() - started, 1)
    if history:
        final["loss"] = history[-1]["loss"]
    if rank == 0:
        test = load_split(study.data.kind, loop_config["root"], "test")
        plain = getattr(model, "module", model)
        scores = evaluate_retrieval(
            plain, tokenizer, teacher, test, train.mean, train.std, seed=job["seed"], device=device
        )
        final.update({k: v for k, v in scores.items() if not k.startswith("num_")})
    report(final, config.steps, with_optimizer=False)


def finetune_trial(trial_config: dict, study: dict, root: str, run_name: str, storage: str) -> None:
    """A Tune trial: one Ray Train run (TorchTrainer) for one grid point or Optuna sample."""
    from ray.tune.integration.ray_train import TuneReportCallback

    config = config_from_dict(study)
    job = dict(trial_config["job"])
    for name in ("w_distill", "lr_text", "lr_motion"):  # set by a search algorithm, if any
        if name in trial_config:
            job[name] = trial_config[name]
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
        train_loop_config={"study": study, "job": job, "root": root},
        scaling_config=scaling,
        run_config=ray.train.RunConfig(
            name=f"{job['key']}-{run_name}",
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


def _load_bytes(blob: bytes, loader, device):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        path.write_bytes(blob)
        return loader(path, device)


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
    from moclip.attacks.perturb import PerturbedPrompt, perturb, set_statistics, write_set
    from moclip.evaluation.evaluate import evaluate
    from moclip.evaluation.evaluator import load_evaluator
    from moclip.generation.diffusion import load_generator

    started = time.monotonic()
    study = config_from_dict(payload["study"])
    job = trial_config["job"]
    torch.set_num_threads(max(1, int(study.ray.cpus_per_eval_trial)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    evaluator, _ = _load_bytes(payload["evaluator"], load_evaluator, device)
    generator, _ = _load_bytes(payload["generator"], load_generator, device)
    generator.config = dataclasses.replace(
        generator.config,
        sample_steps=study.evaluation.ddim_steps,
        guidance=study.evaluation.guidance,
    )
    embedder = load_encoder(study, job["checkpoint"], device)
    clean, lengths = payload["prompts"], payload["lengths"]
    recipe, budget = job["recipe"], job["budget"]
    records = None
    if recipe == "greedy":
        records = perturb(
            clean, study.attacks.greedy_recipe, budget, study.attacks.seed, encoder=embedder
        )
    elif recipe != "none":
        perturbed = payload["transfer"][f"{recipe}|{budget}"]
        records = [PerturbedPrompt(**row) for row in perturbed]
    used = [r.perturbed for r in records] if records else list(clean)
    metrics = evaluate(
        generator,
        embedder,
        clean,
        used,
        lengths,
        evaluator,
        repeats=study.evaluation.repeats,
        seed=study.evaluation.seed,
        mm_prompts=study.evaluation.mm_prompts,
    )
    if records:
        metrics.update({f"attack_{k}": v for k, v in set_statistics(records, embedder).items()})
    metrics["eval_seconds"] = round(time.monotonic() - started, 1)
    if records is None:
        ray.tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        write_set(Path(folder) / PERTURBED_FILE, records, {"recipe": recipe, "budget": budget})
        (Path(folder) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(folder))
