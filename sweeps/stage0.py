"""Stage 0 of a sweep: the data, the frozen evaluator and generator, and the transfer prompt
sets, each cached under the workdir by a fingerprint of what it is made from, so a second sweep
over the same data and settings reuses them.

The two trainings run as Ray tasks side by side; they return the saved files' bytes, so on a
cluster the driver's workdir is the one place the files live.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray

from moclip.attacks.perturb import Budget, PerturbedPrompt, perturb, set_key
from moclip.data.dataset import DatasetError
from sweeps.config import StudyConfig
from sweeps.data import (
    R_PRECISION_BATCH,
    assigned_device,
    caption_tags,
    data_root,
    evaluation_prompts,
    load_split,
    load_splits,
    node_split,
    repair_summary,
    scored_name,
    scored_root,
    scored_split,
    transfers,
    uses_recognizer,
)
from sweeps.keys import digest, model_keys
from sweeps.log import configure, stage_log

log = stage_log("stage 0")
STATUS_EVERY_S = 30.0  # a progress line while the evaluator and generator train


class ModelTrainingError(RuntimeError):
    """Stage 0's evaluator or generator training failed (a Ray task, maybe on another node)."""


def _file_bytes(save, suffix: str) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"model{suffix}"
        save(path)
        return path.read_bytes()


def train_evaluator_task(
    config: StudyConfig, root: str, fingerprints: dict[str, str] | None = None
) -> tuple[bytes, dict]:
    """The scoring model's file bytes and its figures on the test split (read as
    `node_split` reads them, checked against the driver's `fingerprints` by split): the
    text-motion evaluator, or for MSR Action3D the action recogniser."""
    from moclip.evaluation.evaluator import save_evaluator
    from moclip.evaluation.train_evaluator import ground_truth_figures, train_evaluator

    configure()  # a Ray task: its lines go to the node's log
    fingerprints = fingerprints or {}
    train_name, test_name = scored_name(config, "train"), scored_name(config, "test")
    train = scored_split(config, root, "train", fingerprints.get(train_name))
    test = scored_split(config, root, "test", fingerprints.get(test_name))
    started = time.monotonic()
    # scored_split checked the split against the driver's fingerprint: no second hash
    data = fingerprints.get(train_name) or train.fingerprint()
    if uses_recognizer(config):
        from moclip.data.action3d import ACTIONS
        from moclip.evaluation.recognizer import (
            recognizer_figures,
            save_recognizer,
            train_recognizer,
        )

        recognizer, _ = train_recognizer(
            train,
            len(ACTIONS),
            config.evaluation.recognizer,
            seed=config.evaluation.seed,
            device=assigned_device(),
        )
        figures = recognizer_figures(recognizer, train, test, config.evaluation.seed)
        figures["train_seconds"] = round(time.monotonic() - started, 1)
        blob = _file_bytes(lambda p: save_recognizer(p, recognizer, data, figures), ".pt")
        return blob, figures
    evaluator, _ = train_evaluator(
        train,
        config.evaluation.evaluator_steps,
        seed=config.evaluation.seed,
        log_every=0,
        device=assigned_device(),
    )
    figures = ground_truth_figures(evaluator, train, test, config.evaluation.seed)
    figures["train_seconds"] = round(time.monotonic() - started, 1)
    blob = _file_bytes(lambda p: save_evaluator(p, evaluator, data, figures), ".pt")
    return blob, figures


def train_generator_task(
    config: StudyConfig, root: str, fingerprints: dict[str, str] | None = None
) -> tuple[bytes, dict]:
    """The generator file's bytes (trained on the original, not fine-tuned, encoder)."""
    import numpy as np

    from moclip.generation.diffusion import save_generator
    from moclip.generation.train_generator import train_generator
    from moclip.text_encoders import TextEmbedder, build_text_encoder

    configure()  # a Ray task: its lines go to the node's log
    fingerprints = fingerprints or {}
    train = node_split(config, root, "train", fingerprints.get("train"))
    device = assigned_device()
    encoder, tokenizer, _ = build_text_encoder(config.encoder)
    started = time.monotonic()
    generator, losses = train_generator(
        train,
        TextEmbedder(encoder.to(device), tokenizer),
        config.evaluation.generator_steps,
        seed=config.evaluation.seed,
        config=config.generator,
        log_every=0,
        device=device,
    )
    summary = {
        "final_loss": float(np.mean(losses[-50:])),
        "train_seconds": round(time.monotonic() - started, 1),
    }
    data = fingerprints.get("train") or train.fingerprint()  # checked by node_split
    blob = _file_bytes(lambda p: save_generator(p, generator, data, summary), ".pt")
    return blob, summary


@dataclass
class Stage0:
    """What stage 0 hands the later stages. The evaluator and generator may still be training
    (Ray tasks) when it is returned, so that fine-tuning can use the cores they leave free:
    `wait_for_models()` before scoring anything."""

    root: str  # the data folder
    train_fingerprint: str
    test_fingerprint: str
    # (fraction, subset seed) -> motions, pairs
    subset_sizes: dict[tuple[float, int], tuple[int, int]]
    evaluator_path: Path
    generator_path: Path
    prompts: list[str]
    lengths: list[int]
    labels: list[int] | None = None
    # a transfer study's MSR Action3D splits ("action3d/train", "action3d/test"), else empty
    scored_fingerprints: dict[str, str] = field(default_factory=dict)
    tags: list[list[str] | None] = field(default_factory=list)  # the file's, per prompt  # the prompts' actions (MSR Action3D), else None
    repairs: dict[str, dict] = field(default_factory=dict)  # per split: the loader's repairs
    transfer_sets: dict[tuple[str, int], list[PerturbedPrompt]] = field(default_factory=dict)
    transfer_paths: dict[tuple[str, int], Path] = field(default_factory=dict)
    # Optuna mode's prompts, lengths and transfer sets: from the validation split, so that
    # the search never reads the test split (empty in grid mode)
    search_prompts: list[str] = field(default_factory=list)
    search_lengths: list[int] = field(default_factory=list)
    search_transfer_sets: dict[tuple[str, int], list[PerturbedPrompt]] = field(
        default_factory=dict
    )
    val_fingerprint: str | None = None
    figures: dict[str, dict] = field(default_factory=dict)  # per model, once it is ready
    running: dict[str, ray.ObjectRef] = field(default_factory=dict)  # per model still training
    started: float = field(default_factory=time.monotonic)

    @property
    def data_fingerprint(self) -> str:
        return digest([self.train_fingerprint, self.test_fingerprint])

    @property
    def fingerprints(self) -> dict[str, str]:
        """The splits' fingerprints, for trials on other nodes to check their copy against."""
        return {
            "train": self.train_fingerprint,
            "test": self.test_fingerprint,
            **self.scored_fingerprints,
        }

    def collect_models(self, timeout: float = 0) -> bool:
        """Save the models whose training has ended, waiting up to `timeout` s for the first;
        whether both are ready."""
        refs = list(self.running.values())
        if refs and ray.wait(refs, num_returns=1, timeout=timeout)[0]:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            paths = {"evaluator": self.evaluator_path, "generator": self.generator_path}
            for name in [name for name, ref in self.running.items() if ref in ready]:
                try:
                    blob, figures = ray.get(self.running.pop(name))
                except ray.exceptions.RayTaskError as err:
                    cause = err.cause if err.cause is not None else err
                    raise ModelTrainingError(
                        f"training the {name} (stage 0) failed: {type(cause).__name__}: {cause}"
                    ) from None
                path = paths[name]
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(blob)
                tmp.replace(path)  # atomic: a cached model file is always complete
                path.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
                self.figures[name] = figures
                log.info(f"{name} ready: {json.dumps(figures)}")
                if "accuracy_top1" in figures:
                    log.info(recognizer_line(figures))
        return not self.running

    def wait_for_models(self) -> None:
        """Block until the evaluator and generator are trained and saved (a progress line every
        STATUS_EVERY_S); a no-op when both came from the cache."""
        while not self.collect_models(timeout=STATUS_EVERY_S):
            log.info(
                f"still training the {' and '.join(self.running)} "
                f"({time.monotonic() - self.started:.0f} s)"
            )

    def payload(self, config: StudyConfig, split: str = "test") -> dict:
        """What a scoring trial needs, as plain values for Ray's object store: the config, the
        evaluator and generator (each its file's bytes or, while it trains, the reference to
        its training task's result: see `resolve_models`), the prompts of `split` ("test", or
        "val" for the search), their lengths and transfer sets, and where the data is."""
        if split == "val":
            return {
                **self.payload(config),
                "split": "val",
                "prompts": self.search_prompts,
                "lengths": self.search_lengths,
                "labels": None,
                "tags": [],
                "transfer": _transfer_payload(self.search_transfer_sets),
            }
        return {
            "split": "test",
            "root": self.root,
            "fingerprints": {
                **self.fingerprints,
                **({"val": self.val_fingerprint} if self.val_fingerprint else {}),
            },
            "study": config.to_dict(),
            "evaluator": self.running.get("evaluator") or self.evaluator_path.read_bytes(),
            "generator": self.running.get("generator") or self.generator_path.read_bytes(),
            "prompts": self.prompts,
            "lengths": self.lengths,
            "labels": self.labels,
            "tags": self.tags,
            "transfer": _transfer_payload(self.transfer_sets),
        }


def _transfer_payload(sets: dict[tuple[str, int], list[PerturbedPrompt]]) -> dict:
    return {
        f"{recipe}|{budget}": [asdict(r) for r in records]
        for (recipe, budget), records in sets.items()
    }


def recognizer_line(figures: dict) -> str:
    """The action recogniser's figures on real motions, as stage 0 prints them."""
    return (
        f"action recogniser on the real test subjects: accuracy top-1 "
        f"{figures['accuracy_top1']:.3f} (top-3 {figures['accuracy_top3']:.3f}, chance "
        f"{figures['chance_top1']:.3f}, n={figures['num_test_motions']:.0f}); real-vs-real FID "
        f"training against test subjects {figures['fid_train_vs_test']:.2f}, between halves "
        f"of the test subjects' motions {figures.get('fid_test_halves', float('nan')):.2f} "
        f"(mean of 10 splits)"
    )


def resolve_models(payload: dict) -> dict:
    """The payload with its evaluator and generator as file bytes: a training task's reference
    resolves to the (bytes, figures) the task returned (a trial gets one only once the task has
    ended, so this does not wait)."""
    models = {
        name: value if isinstance(value, bytes) else ray.get(value)[0]
        for name, value in payload.items()
        if name in ("evaluator", "generator")
    }
    return {**payload, **models}


def _cached_model(
    path: Path, task, config: StudyConfig, root: str, fingerprints: dict, options: dict
) -> tuple[Path, dict] | ray.ObjectRef:
    """The cached file and its figures, or the running task that will make them."""
    figures = path.with_suffix(".json")
    if path.is_file() and figures.is_file():
        return path, json.loads(figures.read_text())
    return ray.remote(**options)(task).remote(config, root, fingerprints)


def run_stage0(config: StudyConfig) -> Stage0:
    """Build or reuse everything the fine-tuning and evaluation stages need; the evaluator and
    generator trainings it starts go on in the background (see Stage0.wait_for_models)."""
    from moclip.data.subsets import nested_subset

    started = time.monotonic()
    root = data_root(config)
    splits = load_splits(config, root)
    if transfers(config):  # scored on MSR Action3D: its splits beside the corpus's
        action3d = scored_root(config, root)
        for split in ("train", "test"):
            splits[scored_name(config, split)] = load_split("action3d", action3d, split)
        log.info(
            f"transfer protocol: fine-tuned and generating on {root}, scored on MSR Action3D "
            f"at {action3d} (generated motions retargeted to the Kinect skeleton)"
        )
    # sha256 over every feature: seconds for HumanML3D, so once per split
    fingerprints = {name: part.fingerprint() for name, part in splits.items()}
    for name, part in splits.items():
        log.info(
            f"{name}: {len(part.motion_ids)} motions, {part.num_pairs} caption pairs,"
            f" dropped {dict(part.dropped) or 'none'}, fingerprint {fingerprints[name][:12]}"
        )
        if part.repairs:
            log.info(f"{name} repairs: {repair_summary(part.repairs)}")
    train, test = splits["train"], splits["test"]
    if len(test) < R_PRECISION_BATCH:
        raise DatasetError(
            f"{root}: the test split has {len(test)} motions; the evaluation protocol needs at "
            f"least {R_PRECISION_BATCH} (one R-precision batch)"
            + (" - raise data.num_motions" if config.data.kind == "synthetic" else "")
        )
    sizes = {}
    for subset_seed in config.grid.subset_seeds:
        for fraction in config.grid.fractions:
            subset = train.subset(nested_subset(train.motion_ids, fraction, subset_seed))
            sizes[(fraction, subset_seed)] = (len(subset.motion_ids), subset.num_pairs)

    cache = Path(config.workdir) / "cache"
    evaluator_key, generator_key = model_keys(config, fingerprints)
    scorer_name = "recognizer" if uses_recognizer(config) else "evaluator"
    evaluator_path = cache / f"{scorer_name}-{evaluator_key}.pt"
    generator_path = cache / f"generator-{generator_key}.pt"
    options = config.ray.stage0_task_options()
    pending = {
        name: _cached_model(path, task, config, root, fingerprints, options)
        for name, path, task in (
            ("evaluator", evaluator_path, train_evaluator_task),
            ("generator", generator_path, train_generator_task),
        )
    }
    for name, value in pending.items():
        if isinstance(value, tuple):
            log.info(f"reusing {name} {value[0]}")
        else:
            log.info(f"training the {name} (Ray task)")

    scored_test = scored_name(config, "test")  # where the prompts come from
    test = splits[scored_test]
    count = config.attacks.prompts or len(test)
    prompts, lengths, labels = evaluation_prompts(test, count, config.attacks.seed)
    warn_sample_size(config, len(prompts), len(test))
    tags = caption_tags(test, prompts)
    transfer_sets, transfer_paths = transfer_prompts(
        config, prompts, fingerprints[scored_test], cache, tags
    )
    if config.attacks.transfer_greedy:
        crafted, crafted_paths = surrogate_sets(
            config, prompts, fingerprints[scored_test], cache, tags
        )
        transfer_sets.update(crafted)
        transfer_paths.update(crafted_paths)
    search_prompts, search_lengths, search_sets = [], [], {}
    if config.search.mode == "optuna":  # scored on the validation split only
        val = splits["val"]
        if len(val) < R_PRECISION_BATCH and config.search.objective == "r_precision_top3":
            raise DatasetError(
                f"{root}: the validation split has {len(val)} motions; the search objective "
                f"r_precision_top3 needs at least {R_PRECISION_BATCH} (one R-precision batch)"
                + (" - raise data.num_motions" if config.data.kind == "synthetic" else "")
            )
        search_prompts, search_lengths, _ = evaluation_prompts(
            val, config.search.prompts or count, config.attacks.seed
        )
        search_sets, _ = transfer_prompts(
            config, search_prompts, fingerprints["val"], cache, caption_tags(val, search_prompts)
        )

    return Stage0(
        root=root,
        train_fingerprint=fingerprints["train"],
        test_fingerprint=fingerprints["test"],
        scored_fingerprints={k: v for k, v in fingerprints.items() if k.startswith("action3d/")},
        subset_sizes=sizes,
        evaluator_path=evaluator_path,
        generator_path=generator_path,
        prompts=prompts,
        lengths=lengths,
        labels=labels,
        tags=tags,
        repairs={name: part.repairs for name, part in splits.items() if part.repairs},
        transfer_sets=transfer_sets,
        transfer_paths=transfer_paths,
        search_prompts=search_prompts,
        search_lengths=search_lengths,
        search_transfer_sets=search_sets,
        val_fingerprint=fingerprints.get("val"),
        figures={name: value[1] for name, value in pending.items() if isinstance(value, tuple)},
        running={name: ref for name, ref in pending.items() if not isinstance(ref, tuple)},
        started=started,
    )


def transfer_prompts(
    config: StudyConfig,
    prompts: list[str],
    fingerprint: str,
    cache: Path,
    tags: list[list[str] | None] | None = None,
) -> tuple[dict[tuple[str, int], list[PerturbedPrompt]], dict[tuple[str, int], Path]]:
    """Every transfer recipe at every budget on `prompts` (of the split with `fingerprint`;
    `tags`: the file's parts of speech per prompt, or None), each set made once, under the
    meaning check, and cached; and the cached files' paths."""
    threshold = config.attacks.meaning_threshold
    sets, paths = {}, {}
    prompt_cache = cache / "prompts"
    for recipe in config.attacks.recipes:
        for budget in config.attacks.budgets:
            records = perturb(
                prompts,
                recipe,
                budget,
                config.attacks.seed,
                cache_dir=prompt_cache,
                data_fingerprint=fingerprint,
                threshold=threshold,
                tags=tags,
            )
            sets[(recipe, budget)] = records
            key = set_key(
                fingerprint, recipe, Budget.parse(budget), config.attacks.seed, None, threshold
            )
            paths[(recipe, budget)] = prompt_cache / f"{key}.jsonl"
            changed = sum(r.success for r in records)
            log.info(
                f"prompts {recipe} budget {budget}: {changed}/{len(records)} changed,"
                f" e.g. {records[0].original!r} -> {records[0].perturbed!r}"
            )
    return sets, paths


def surrogate_sets(
    config: StudyConfig,
    prompts: list[str],
    fingerprint: str,
    cache: Path,
    tags: list[list[str] | None] | None = None,
) -> tuple[dict[tuple[str, int], list[PerturbedPrompt]], dict[tuple[str, int], Path]]:
    """The adversarial transfer sets: the greedy search (`attacks.greedy_recipe`) run once
    per budget against the surrogate, the original (not fine-tuned) encoder, on the CPU, then
    applied unchanged to every encoder; cached like the random sets."""
    from moclip.text_encoders import TextEmbedder, build_text_encoder
    from sweeps.plan import TRANSFER_GREEDY

    attacks = config.attacks
    encoder, tokenizer, _ = build_text_encoder(config.encoder)
    surrogate = TextEmbedder(encoder.eval(), tokenizer)
    sets, paths = {}, {}
    for budget in attacks.budgets:
        started = time.monotonic()
        records = perturb(
            prompts,
            attacks.greedy_recipe,
            budget,
            attacks.seed,
            encoder=surrogate,
            cache_dir=cache / "prompts",
            data_fingerprint=fingerprint,
            threshold=attacks.meaning_threshold,
            tags=tags,
        )
        sets[(TRANSFER_GREEDY, budget)] = records
        key = set_key(
            fingerprint,
            attacks.greedy_recipe,
            Budget.parse(budget),
            attacks.seed,
            surrogate.identity,
            attacks.meaning_threshold,
        )
        paths[(TRANSFER_GREEDY, budget)] = cache / "prompts" / f"{key}.jsonl"
        changed = sum(r.success for r in records)
        log.info(
            f"prompts {TRANSFER_GREEDY} budget {budget} (greedy against the original encoder, "
            f"{time.monotonic() - started:.0f} s): {changed}/{len(records)} changed, e.g. "
            f"{records[0].original!r} -> {records[0].perturbed!r}"
        )
    return sets, paths


def feature_width(config: StudyConfig) -> int:
    """The width of the space FID is computed in: the recogniser's or the evaluator's."""
    from moclip.evaluation.evaluator import EvaluatorConfig

    if uses_recognizer(config):
        return config.evaluation.recognizer.feature_width
    return EvaluatorConfig().out_width


def warn_sample_size(config: StudyConfig, generated: int, real: int) -> None:
    """Warn where FID compares fewer motions than its features' width: both covariances are
    then singular and FID is mostly bias (the report gives KID and the real-vs-real floor)."""
    width = feature_width(config)
    if min(generated, real) < width:
        log.warning(
            "FID compares %d generated with %d real motions in a %d-wide feature space: fewer "
            "motions than features, so both covariances are singular and FID is mostly "
            "small-sample bias; read it against the report's real-vs-real floor and KID "
            "(attacks.prompts: 0 generates one motion per test motion)",
            generated,
            real,
            width,
        )
