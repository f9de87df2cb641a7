"""What runs inside Ray: the Ray Train worker loop that fine-tunes MoCLIP, the Tune trial that
launches it, the Tune trial that evaluates one encoder under one attack, and the trial of stages
1 and 2 that is either (in Optuna mode the worker scores its own model for the search objective
at ASHA's rungs).

Each function takes plain dicts (what Tune's param space and Ray's object store carry), turns
the job into its typed record (`sweeps.records`) and calls into `sweeps.jobs` and `moclip`,
which know nothing of Ray.
"""

from __future__ import annotations

import ctypes
import gc
import json
import shutil
import tempfile
import time
from pathlib import Path

import ray.train
import ray.train.torch
import ray.tune
import torch

from sweeps.config import StudyConfig, config_from_dict
from sweeps.jobs import Scorer, prepare_finetune, preserved_rng
from sweeps.log import configure, stage_log
from sweeps.plan import SEARCHED
from sweeps.records import PERTURBED_FILE, EvaluationJob, job_from_dict

CHECKPOINT_FILE = "moclip.pt"
GENERATOR_FILE = "generator.pt"  # an adapted arm's generator, in its clean evaluation's checkpoint
REPORT_FILE = "report.json"  # beside a fine-tune's checkpoint: the metrics reported with it
# Worker-group start-ups that may time out (e.g. waiting for resources) before a trial fails;
# Ray's default retries forever.
CONTROLLER_FAILURES = 3


def finetune_worker(loop_config: dict) -> None:
    """One Ray Train worker: fine-tune on the job's nested subset, report checkpoints every
    `ray.checkpoint_every` steps, keep the weights the validation split scores best, then score
    retrieval on the test split and report them as the final checkpoint. Picks up from the
    latest checkpoint after a worker failure. A search trial (Optuna mode) skips the test
    scores: it never reads the test split.

    With `loop_config["scoring"]` (Optuna mode) it reports at ASHA's rungs and at checkpoints,
    and rank 0 adds the search objective of the model at that step (what Optuna and ASHA read;
    Tune wants it in every report of a search trial)."""
    from moclip.model import save_checkpoint
    from moclip.text_encoders import TextEmbedder
    from sweeps.data import assigned_device
    from sweeps.search import rung_steps

    configure()
    study = config_from_dict(loop_config["study"])
    job = job_from_dict(loop_config["job"])
    torch.set_num_threads(max(1, int(study.ray.cpus_per_worker)))
    # Ray Train's local mode runs this in the Tune trial's own process, where Ray refuses its
    # worker-group API: one process, no DDP; reports and checkpoints go straight to Tune, and
    # a trial Tune retries resumes from Tune's last checkpoint.
    local = study.ray.local_finetunes
    if local:
        rank, device = 0, assigned_device()
    else:
        rank, device = ray.train.get_context().get_world_rank(), ray.train.torch.get_device()
    send = ray.tune.report if local else ray.train.report
    run = prepare_finetune(study, job, loop_config["root"], loop_config["fingerprints"])
    config, tokenizer = run.config, run.tokenizer
    start, resumed = 0, {}
    checkpoint = ray.tune.get_checkpoint() if local else ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start = run.restore(Path(folder) / CHECKPOINT_FILE)
            report_file = Path(folder) / REPORT_FILE
            resumed = json.loads(report_file.read_text()) if report_file.is_file() else {}
        stage_log(f"finetune {job.key}").info("resuming at step %d", start)
    # the motion-only phase leaves the text tower without gradients: DDP must expect that
    unused = {"find_unused_parameters": config.motion_only_share > 0}
    model = (
        run.model
        if local
        else ray.train.torch.prepare_model(run.model, parallel_strategy_kwargs=unused)
    )
    plain = getattr(model, "module", model)
    scorer = Scorer(loop_config["scoring"], device) if loop_config.get("scoring") else None

    def report(metrics: dict, step: int, with_optimizer: bool, save: bool = True) -> None:
        if rank != 0:
            send(metrics)
            return
        if scorer is not None:
            with preserved_rng():
                value, per_attack = scorer.objective(TextEmbedder(plain.text, tokenizer))
            plain.train()
            metrics = {**metrics, "objective": value}
            metrics.update({f"objective/{name}": v for name, v in per_attack.items()})
        if not save:
            send(metrics)
            return
        # Mid-run checkpoints upload in Ray's background thread while training goes on (on a
        # cluster that is seconds per checkpoint to S3); Ray deletes the folder once uploaded.
        # The last one uploads before the trial ends, so the trial's result always has it.
        folder = tempfile.mkdtemp(prefix="moclip-checkpoint-")
        save_checkpoint(
            Path(folder) / CHECKPOINT_FILE,
            model,
            run.meta(step),
            run.optimizer if with_optimizer else None,
            run.scheduler if with_optimizer else None,
            # mid-run: the validation's best so far, for a resumed run to choose among
            {"selection": run.selection.to_state()} if with_optimizer else None,
        )
        # a run restarted from its final checkpoint has no step left to take its loss from
        (Path(folder) / REPORT_FILE).write_text(json.dumps(metrics, default=float))
        if local:  # Tune copies the folder into its storage before report returns
            ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(folder))
            shutil.rmtree(folder, ignore_errors=True)
            return
        mode = ray.train.CheckpointUploadMode
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_upload_mode=mode.ASYNC if with_optimizer else mode.SYNC,
            delete_local_checkpoint_after_upload=True,
        )

    started = time.monotonic()
    every = study.ray.checkpoint_every
    rungs = set(rung_steps(study)) if scorer is not None else set()

    def on_step(step: int, metrics: dict) -> None:
        if step >= config.steps:  # the final report follows the test scores
            return
        row = {"step": step, "loss": metrics["loss"], "distill": metrics["distill"]}
        validation = {k: v for k, v in metrics.items() if k.startswith("val_")}
        row.update(validation)
        save = bool(every) and step % every == 0
        if save or step in rungs:
            report(row, step, with_optimizer=True, save=save)
        elif scorer is None and (step % config.log_every == 0 or validation):
            send(row)

    prepare = ray.train.torch.prepare_data_loader
    history = run.fit(
        device,
        model,
        start_step=start,
        on_step=on_step,
        prepare_loader=None if local else lambda loader: prepare(loader, add_dist_sampler=False),
    )
    # no "done" key: Tune reads done=True as the trial's end and would kill this run's
    # controller before it releases its placement group
    final = {"step": config.steps, "n_pairs": len(run.pairs), "resumed_at_step": start}
    final["n_motions"] = len(run.subset.motion_ids)
    workers = max(1, study.ray.num_workers)
    final["epochs"] = config.epochs or config.steps * config.batch_size * workers / len(run.pairs)
    final["motion_only_steps"] = config.motion_only_steps
    final["train_seconds"] = round(time.monotonic() - started, 1)
    if history:
        final["loss"] = history[-1]["loss"]
        final.update(run.select(plain))  # the validation's best weights, before the test
    else:  # restarted from its final checkpoint, which holds the chosen weights
        final.update({k: resumed[k] for k in ("loss", "selected_step", "val_score") if k in resumed})
    if rank == 0 and scorer is None:  # a search trial never reads the test split
        final.update(run.test_scores(plain, device))
    report(final, config.steps, with_optimizer=False)


def finetune_trial(
    trial_config: dict,
    study: dict,
    root: str,
    run_name: str,
    storage: str,
    scoring=None,
    fingerprints: dict | None = None,
) -> None:
    """A Tune trial: one Ray Train run (TorchTrainer) for one grid point or Optuna sample
    (whose sampled values sit beside the job in `trial_config`); with `ray.num_workers: 0`
    in Ray Train's local mode, in this process. `fingerprints`: the driver's, by split, which
    the workers' copies of the data at `root` must match."""
    from ray.tune.integration.ray_train import TuneReportCallback

    config = config_from_dict(study)
    job = dict(trial_config["job"])
    job.update({name: trial_config[name] for name in SEARCHED if name in trial_config})
    # an Optuna sample has no key until its values are known: its Tune trial id names its run
    name = job["key"] or f"{job['group']}-{ray.tune.get_context().get_trial_id()}"
    scaling = ray.train.ScalingConfig(
        num_workers=config.ray.num_workers,
        use_gpu=config.ray.use_gpu,
        resources_per_worker=config.ray.worker_resources(),
    )
    trainer = ray.train.torch.TorchTrainer(
        finetune_worker,
        train_loop_config={
            "study": study,
            "job": job,
            "root": root,
            "fingerprints": fingerprints,
            "scoring": scoring,
        },
        scaling_config=scaling,
        run_config=ray.train.RunConfig(
            name=f"{name}-{run_name}",
            storage_path=storage,
            failure_config=ray.train.FailureConfig(
                max_failures=config.ray.max_failures,
                controller_failure_limit=CONTROLLER_FAILURES,
            ),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            # Local mode reports to Tune itself; the callback would start a queue actor (a
            # process importing Ray, about 2 CPU seconds beside the trials) per fine-tune
            callbacks=[] if config.ray.local_finetunes else [TuneReportCallback()],
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


def evaluation_trial(
    trial_config: dict, payload: dict, root: str = "", fingerprints: dict | None = None
) -> None:
    """A Tune trial: generate from one encoder's (perturbed) prompts, score with the evaluator
    against the clean prompts, and report every metric (and the perturbed set as a checkpoint).
    In the adapted arm the generator is the one adapted to this encoder: trained here by the
    arm's clean evaluation (and reported in its checkpoint), read from it by the others."""
    from moclip.attacks.perturb import write_set
    from moclip.generation.diffusion import load_generator, save_generator
    from sweeps.data import assigned_device
    from sweeps.stage0 import resolve_models

    started = time.monotonic()
    configure()
    study = config_from_dict(payload["study"])
    job = EvaluationJob.from_dict(trial_config["job"])
    torch.set_num_threads(max(1, int(study.ray.cpus_per_eval_trial)))
    device = assigned_device()
    scorer = Scorer(resolve_models(payload), device)
    embedder = load_encoder(study, job.checkpoint, device)
    adapted = None
    if job.adapts:
        adapted = scorer.adapted_generator(job, embedder, root, fingerprints or {}, device)
        scorer.use_generator(adapted)
    elif job.arm == "adapted":
        with ray.train.Checkpoint(job.generator).as_directory() as folder:
            scorer.use_generator(load_generator(Path(folder) / GENERATOR_FILE, device)[0])
    recipe, budget = job.recipe, job.budget
    metrics, records = scorer.score(embedder, recipe, budget, seed=job.generation_seed(study))
    if recipe == "none":  # the real-versus-real floor at the same sample sizes, beside it
        metrics.update(scorer.floor())
    metrics["eval_seconds"] = round(time.monotonic() - started, 1)
    if records is None and adapted is None:
        ray.tune.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        if records is not None:
            set_info = {"recipe": recipe, "budget": budget}
            write_set(Path(folder) / PERTURBED_FILE, records, set_info)
        if adapted is not None:
            save_generator(
                Path(folder) / GENERATOR_FILE,
                adapted.cpu(),
                (fingerprints or {}).get("train", ""),
                {"adapted_to": job.encoder_key, "steps": study.evaluation.adapt_steps},
            )
        (Path(folder) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(folder))


def stage_trial(
    trial_config: dict,
    study: dict,
    root: str,
    run_name: str,
    storage: str,
    payload: dict,
    fingerprints: dict | None = None,
) -> None:
    """A Tune trial of stages 1 and 2, by `trial_config["kind"]`: a fine-tune or an
    evaluation. One trainable for both lets Tune hand a finished trial's process (its imports
    done) to the next trial of either kind."""
    try:
        if trial_config["kind"] == "evaluation":
            evaluation_trial(trial_config, payload, root, fingerprints)
        else:
            finetune_trial(trial_config, study, root, run_name, storage, fingerprints=fingerprints)
    finally:
        release_memory()


def release_memory() -> None:
    """Hand the finished trial's memory back to the OS before Tune reuses this process.

    Tune runs each trial in a thread of its own, and glibc gives each thread its own malloc
    arena: the last trial's freed motion arrays (each under malloc's mmap threshold) stayed in
    its arena, out of the next trial's reach, so every fine-tune on a 10,000-motion corpus
    added about 1.5 GB to the process until the node ran out of memory. malloc_trim returns
    free arena pages; elsewhere than glibc it is skipped."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
