"""The sweep's data layer, without Ray: the corpus, the splits as each node reads them (checked
against the driver's fingerprints), the evaluation prompts and the device a task was given.
Stage 0, the trials and the benchmarks all read the data through here.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from moclip.data.action3d import load_action3d
from moclip.data.dataset import DatasetError, MotionDataset, load_dataset
from moclip.data.synthetic import build_corpus
from sweeps.config import DataConfig, StudyConfig
from sweeps.log import stage_log

if TYPE_CHECKING:
    import torch

R_PRECISION_BATCH = 32
log = stage_log("stage 0")


def transfers(config: StudyConfig) -> bool:
    """Whether the study is the transfer protocol (`data.eval_kind: action3d`): fine-tuned
    and generating on its corpus, scored on MSR Action3D's test subjects."""
    return config.data.eval_kind == "action3d"


def uses_recognizer(config: StudyConfig) -> bool:
    """Whether the study scores with the action recogniser (MSR Action3D, in domain or by
    transfer: the protocol of action-conditioned generation) rather than the text-motion
    evaluator."""
    return config.data.kind == "action3d" or transfers(config)


def protocol(config: StudyConfig) -> str:
    """"transfer" or "in-domain": how the MLflow runs and the report tell the two apart."""
    return "transfer" if transfers(config) else "in-domain"


def protocol_tags(config: StudyConfig) -> dict[str, str]:
    """The tags every MLflow run of the study carries: its protocol ("in-domain" or
    "transfer") and the data it is scored on (the UI filters on either)."""
    scored_on = "action3d" if uses_recognizer(config) else config.data.kind
    return {"protocol": protocol(config), "scored_on": scored_on, "trained_on": config.data.kind}


def scored_name(config: StudyConfig, split: str) -> str:
    """The name the fingerprints give the split the scores compare with: the study's own
    `split`, or "action3d/<split>" in a transfer study."""
    return f"action3d/{split}" if transfers(config) else split


def repair_summary(repairs: dict) -> str:
    """One line of a loader's repairs (`MotionDataset.repairs`): counts and ids by reason."""
    parts = [
        f"{name} {len(ids)} ({', '.join(f'{i}: {n} frames' for i, n in ids.items())})"
        for name, ids in (("trimmed", repairs["trimmed"]), ("filled", repairs["filled"]))
        if ids
    ]
    parts += [
        f"dropped {len(ids)} as {reason} ({', '.join(ids)})"
        for reason, ids in repairs["dropped"].items()
    ]
    return "; ".join(parts) or "none needed"


def corpus_folder(workdir: Path, data: DataConfig) -> Path:
    """The synthetic corpus for (num_motions, seed), built once and reused."""
    root = (
        Path(data.root)
        if data.root
        else workdir / "data" / (f"synthetic-n{data.num_motions}-s{data.seed}")
    )
    if (root / "corpus.json").is_file():
        log.info("reusing corpus %s", root)
        return root
    log.info("building %d synthetic motions in %s", data.num_motions, root)
    build_corpus_once(root, data)
    return root


def build_corpus_once(root: Path, data: DataConfig, workers: int | None = None) -> bool:
    """Build the synthetic corpus at `root` unless it is there, one process at a time (a
    node's trials may all ask at once); whether this call built it. `corpus.json` is written
    last, so a folder that has it is whole."""
    from filelock import FileLock

    if (root / "corpus.json").is_file():
        return False
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{root}.lock"):
        if (root / "corpus.json").is_file():
            return False
        build_corpus(root, data.num_motions, data.seed, workers=workers)
    return True


def scored_root(config: StudyConfig, root: str) -> str:
    """The folder of the data the scores compare with: `root` (the study's data), or
    `data.eval_root` (MSR Action3D) in a transfer study."""
    if transfers(config):
        return str(Path(config.data.eval_root).expanduser().resolve())
    return root


def absolute_eval_root(config: StudyConfig) -> StudyConfig:
    """The config with `data.eval_root` made absolute on the driver: Ray's tasks and trials
    run in folders of their own, where a relative path means nothing."""
    import dataclasses

    if not config.data.eval_root:
        return config
    data = dataclasses.replace(config.data, eval_root=scored_root(config, ""))
    return dataclasses.replace(config, data=data)


def data_root(config: StudyConfig) -> str:
    """The folder the loaders read (built first for the synthetic corpus)."""
    if config.data.kind == "synthetic":
        return str(corpus_folder(Path(config.workdir), config.data).resolve())
    # absolute: Ray's trials run in folders of their own
    return str(Path(config.data.root).expanduser().resolve())


def load_split(kind: str, root: str, split: str) -> MotionDataset:
    """One split of the configured data set; Action3D has no validation split."""
    if kind == "action3d":
        return load_action3d(root, split)
    return load_dataset(root, split)


def node_split(
    config: StudyConfig, root: str, split: str, fingerprint: str | None = None
) -> MotionDataset:
    """One split as the node this runs on has it, for the code that runs in Ray's workers.

    A cluster's worker node does not see the driver's workdir: a synthetic corpus missing here
    is built again at the same path, byte for byte (motion i depends only on the seed and i);
    any other data set must be at `root` on every node. With the driver's `fingerprint` of the
    split, a node's copy that differs (a stale sync) is an error, not a silently other study."""
    node = socket.gethostname()
    if config.data.kind == "synthetic":
        try:
            # one process, no pool: the task or trial holds only the CPUs Ray gave it
            if build_corpus_once(Path(root), config.data, workers=1):
                stage_log("data").info("built the synthetic corpus %s on node %s", root, node)
        except OSError as err:
            raise DatasetError(
                f"{root}: cannot build the synthetic corpus on node {node} ({err}); set "
                f"data.root to a folder every node can write"
            ) from None
    return _checked_split(config.data.kind, root, split, fingerprint, "data.root")


def scored_split(
    config: StudyConfig, root: str, split: str, fingerprint: str | None = None
) -> MotionDataset:
    """The split of the data the scores compare with, as `node_split` reads it: the study's
    own, or MSR Action3D's (`data.eval_root`) in a transfer study."""
    if transfers(config):
        return _checked_split(
            "action3d", scored_root(config, root), split, fingerprint, "data.eval_root"
        )
    return node_split(config, root, split, fingerprint)


def _checked_split(
    kind: str, root: str, split: str, fingerprint: str | None, key: str
) -> MotionDataset:
    node = socket.gethostname()
    if not Path(root).is_dir():
        raise DatasetError(
            f"{root}: no such data folder on node {node}; every node reads {key} at this "
            f"path (ray_cluster.yaml's file_mounts copy it to every node)"
        )
    part = load_split(kind, root, split)
    found = part.fingerprint() if fingerprint else None
    if found and found != fingerprint:
        raise DatasetError(
            f"{root}: the {split} split on node {node} is not the data the driver read "
            f"(fingerprint {found[:12]}, the driver's {fingerprint[:12]}); copy the same data "
            f"to every node and run the sweep again"
        )
    return part


def has_validation(config: StudyConfig) -> bool:
    """Whether the study's data has a validation split (MSR Action3D's protocol has none)."""
    return config.data.kind != "action3d"


def load_splits(config: StudyConfig, root: str) -> dict[str, MotionDataset]:
    splits = ("train", "val", "test") if has_validation(config) else ("train", "test")
    return {split: load_split(config.data.kind, root, split) for split in splits}


def caption_tags(split: MotionDataset, prompts: list[str]) -> list[list[str] | None]:
    """Per prompt, the caption file's parts of speech of its words where the file has them
    (HumanML3D's `word/POS`), else None (the attack's tagger reads them)."""
    found: dict[str, list[str] | None] = {}
    for item in split.items:
        for caption in item.captions:
            found.setdefault(caption.text, caption.parts_of_speech)
    return [found.get(prompt) for prompt in prompts]


def evaluation_prompts(
    test: MotionDataset, count: int, seed: int
) -> tuple[list[str], list[int], list[int] | None]:
    """`count` test motions (seeded choice) with one seeded caption each, their lengths, and
    their class labels where the data has them (MSR Action3D's actions), else None."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = sorted(rng.choice(len(test), min(count, len(test)), replace=False).tolist())
    prompts = [
        test.items[i].captions[int(rng.integers(len(test.items[i].captions)))].text for i in rows
    ]
    labels = [test.items[i].label for i in rows]
    return (
        prompts,
        [test.items[i].num_frames for i in rows],
        None if None in labels else [int(label) for label in labels],
    )


def assigned_device() -> torch.device:
    """The torch device of the Ray task or trial this runs in: CUDA where Ray gave it GPUs,
    else the CPU (also outside Ray, as when a benchmark calls a task's function itself). Ray
    leaves CUDA_VISIBLE_DEVICES alone for work that asked for no GPU, so "cuda if available"
    would put it on a GPU that other trials hold."""
    import torch

    # a process that has not imported Ray is no Ray worker; ray.get_gpu_ids() would start a
    # local Ray in a process that has none
    ray = sys.modules.get("ray")
    gpus = ray.get_gpu_ids() if ray is not None and ray.is_initialized() else []
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"Ray gave this work GPU(s) {gpus}, but torch {torch.__version__} on node "
            f"{socket.gethostname()} sees no CUDA device: install a CUDA build of torch there"
        )
    return torch.device("cuda")  # Ray's CUDA_VISIBLE_DEVICES makes it the one assigned
