"""The study's configuration: nested dataclasses, read from YAML, overridable on the command
line (`section.key=value`), validated at load with one-line errors naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from moclip.attacks.recipes import RECIPES
from moclip.evaluation.recognizer import RecognizerConfig
from moclip.generation.diffusion import DiffusionConfig
from moclip.motion_encoder import MotionEncoderConfig
from moclip.text_encoders import TextEncoderSpec
from moclip.training import FinetuneConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DATA_KINDS = ("synthetic", "humanml3d", "kit", "action3d")
EVAL_KINDS = ("", "action3d")
TRANSFER_SOURCES = ("synthetic", "humanml3d")  # on SMPL's 22 joints (moclip.data.retarget)
GENERATOR_ARMS = ("frozen", "adapted", "both")
ADAPTATION = ("generator", "adapt_steps", "adapt_lr_ratio")  # the arm's settings


class ConfigError(ValueError):
    """A configuration value or key that is not allowed; the message names it."""


@dataclass(frozen=True)
class DataConfig:
    kind: str = "synthetic"
    root: str | None = None  # a prepared folder; for synthetic, where to build (cached)
    num_motions: int = 2000  # synthetic only
    seed: int = 0  # synthetic corpus seed
    # where the scores are measured: "" (the study's own test split) or "action3d", the
    # transfer protocol: fine-tune and generate on this corpus, retarget the generated motions
    # to the Kinect skeleton and score them against MSR Action3D's test subjects (eval_root)
    eval_kind: str = ""
    eval_root: str | None = None  # the MSR Action3D folder of the transfer protocol

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ValueError(f"must be one of {', '.join(DATA_KINDS)}, got {self.kind!r}")
        if self.kind != "synthetic" and not self.root:
            raise ValueError(f"a {self.kind} study needs data.root, the prepared folder")
        if self.eval_kind not in EVAL_KINDS:
            raise ValueError(
                f"eval_kind must be '' (the study's own test split) or 'action3d', got "
                f"{self.eval_kind!r}"
            )
        if self.eval_kind:
            if self.kind not in TRANSFER_SOURCES:
                raise ValueError(
                    f"eval_kind: action3d retargets SMPL's 22 joints to the Kinect skeleton; "
                    f"kind {self.kind!r} is not on them (use one of "
                    f"{', '.join(TRANSFER_SOURCES)})"
                )
            if not self.eval_root:
                raise ValueError(
                    "eval_kind: action3d needs data.eval_root, the folder of MSR Action3D's "
                    "aNN_sNN_eNN_skeleton3D.txt files"
                )
        elif self.eval_root:
            raise ValueError("eval_root is read only with eval_kind: action3d")
        if self.num_motions < 3:
            raise ValueError(f"num_motions must be at least 3, got {self.num_motions}")


@dataclass(frozen=True)
class GridConfig:
    fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    w_contrastive: tuple[float, ...] = (1.0,)
    w_distill: tuple[float, ...] = (0.0, 0.6)  # the paper's lambda; 0: untethered
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds (and generation noise per seed)
    # the nested subsets' draws: every fraction of one draw nests in the next; each training
    # seed fine-tunes on each draw
    subset_seeds: tuple[int, ...] = (0,)
    baseline: bool = True  # the fraction-0 row: the original encoder, not fine-tuned

    def __post_init__(self) -> None:
        if not self.fractions or any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1], got {list(self.fractions)}")
        if not self.seeds or not self.subset_seeds or not self.w_distill or not self.w_contrastive:
            raise ValueError(
                "seeds, subset_seeds, w_contrastive and w_distill need at least one value"
            )
        if any(w < 0 for w in (*self.w_distill, *self.w_contrastive)):
            raise ValueError("loss weights must be >= 0")


@dataclass(frozen=True)
class AttackConfig:
    recipes: tuple[str, ...] = ("char-swap", "wordnet-synonym", "qwerty")
    budgets: tuple[int, ...] = (1, 2)
    greedy: bool = True  # also the white-box greedy attack (per encoder)
    greedy_recipe: str = "char-swap"
    # also the greedy attack crafted once against a surrogate, the original encoder, and
    # applied unchanged to every encoder (condition "greedy-transfer"): an adversarial
    # transfer set, beside the random recipes and the per-encoder white-box attack
    transfer_greedy: bool = True
    # test prompts attacked and scored, one generated motion each; 0: every test motion
    prompts: int = 0
    seed: int = 0
    # the meaning check of every perturbation (moclip.attacks.meaning): cosine similarity of
    # the perturbed to the clean prompt under the judge (multilingual-e5-small, not the
    # encoder under attack) at least this, and no word swapped for its antonym
    meaning_threshold: float = 0.92

    def __post_init__(self) -> None:
        if not 0 < self.meaning_threshold <= 1:
            raise ValueError(
                f"meaning_threshold must be in (0, 1], got {self.meaning_threshold}"
            )
        for recipe in (*self.recipes, self.greedy_recipe):
            if recipe not in RECIPES:
                raise ValueError(f"unknown recipe {recipe!r}; allowed: {', '.join(RECIPES)}")
        if not self.budgets or any(b < 1 for b in self.budgets):
            raise ValueError(f"budgets must be words >= 1, got {list(self.budgets)}")
        if self.prompts and self.prompts < 32:
            raise ValueError(
                f"prompts must be 0 (every test motion) or at least 32 (one R-precision "
                f"batch), got {self.prompts}"
            )


@dataclass(frozen=True)
class EvaluationConfig:
    repeats: int = 2
    ddim_steps: int = 20
    guidance: float = 2.5
    evaluator_steps: int = 600
    generator_steps: int = 1000
    mm_prompts: int = 0
    seed: int = 0  # evaluator and generator training, noise seeds of generation
    # the action recogniser that scores an MSR Action3D study (data.kind: action3d)
    recognizer: RecognizerConfig = field(default_factory=RecognizerConfig)
    # which generator scores a fine-tuned encoder: "frozen" (the one trained on the original
    # encoder, the encoder swapped in), "adapted" (that generator trained on for adapt_steps on
    # the encoder's own features and training subset, at adapt_lr_ratio of its learning rate;
    # the MoCLIP authors' examples use 1/20), or "both", scored on the same prompts and noise
    generator: str = "both"
    adapt_steps: int = 200
    adapt_lr_ratio: float = 0.05

    def __post_init__(self) -> None:
        for name in (
            "repeats", "ddim_steps", "evaluator_steps", "generator_steps", "adapt_steps"
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.generator not in GENERATOR_ARMS:
            raise ValueError(
                f"generator must be one of {', '.join(GENERATOR_ARMS)}, got {self.generator!r}"
            )
        if not 0 < self.adapt_lr_ratio <= 1:
            raise ValueError(f"adapt_lr_ratio must be in (0, 1], got {self.adapt_lr_ratio}")

    @property
    def arms(self) -> tuple[str, ...]:
        """The generator arms scored: ("frozen",), ("adapted",) or both."""
        return ("frozen", "adapted") if self.generator == "both" else (self.generator,)


@dataclass(frozen=True)
class RayConfig:
    # None: the Ray cluster this machine runs (a cluster's head), else a new local one;
    # "auto": the running cluster or an error
    address: str | None = None
    # Ray Train workers per fine-tuning trial; 0: Ray Train's local mode, the fine-tune runs in
    # its Tune trial's own process (no controller, worker group or cleaner actors to start;
    # see benchmarks/bench_chain.py and RESULTS.md)
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    cpus_per_eval_trial: float = 1.0
    gpus_per_eval_trial: float = 0.0
    storage_path: str | None = None  # local folder or s3://bucket/prefix; None: <workdir>/ray
    max_failures: int = 1
    # fine-tuning steps between Ray Train checkpoints (0: the final one only); each holds the
    # model and its optimizer state (287 MB for MiniLM, several times that for ViT-B-32)
    checkpoint_every: int = 500
    # fine-tunes at once; 0: as many as the cluster's CPUs and GPUs hold when the sweep starts.
    # Set it on an autoscaling cluster, whose GPU nodes join only once trials wait for them
    finetune_slots: int = 0

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0 (0: local mode), got {self.num_workers}")
        if self.use_gpu and self.gpus_per_worker <= 0:
            raise ValueError("use_gpu needs gpus_per_worker > 0")
        if min(self.cpus_per_worker, self.cpus_per_eval_trial) <= 0:
            raise ValueError("cpus per worker and per evaluation trial must be > 0")
        if min(self.max_failures, self.checkpoint_every, self.finetune_slots) < 0:
            raise ValueError("max_failures, checkpoint_every and finetune_slots must be >= 0")

    @property
    def local_finetunes(self) -> bool:
        """Whether each fine-tune runs in its Tune trial's process (Ray Train local mode)."""
        return self.num_workers == 0

    def finetune_trial_resources(self) -> dict[str, float]:
        """What a fine-tune's Tune trial holds: in local mode one worker's share; otherwise a
        token (its Ray Train workers hold the CPUs and GPUs; Tune needs a non-empty request)."""
        return self.worker_resources() if self.local_finetunes else {"CPU": 0, "memory": 1}

    def evaluation_trial_resources(self) -> dict[str, float]:
        """What an evaluation's Tune trial holds."""
        gpus = self.gpus_per_eval_trial
        return {"CPU": self.cpus_per_eval_trial, **({"GPU": gpus} if gpus else {})}

    def stage0_task_options(self) -> dict[str, float]:
        """The Ray task options of stage 0's evaluator and generator trainings: an evaluation
        trial's CPUs, and a fine-tuning worker's GPUs where the study uses them."""
        return {
            "num_cpus": self.cpus_per_eval_trial,
            **({"num_gpus": self.gpus_per_worker} if self.use_gpu else {}),
        }

    def finetunes_at_once(self, cluster: dict[str, float]) -> int:
        """`finetune_slots`, else how many fine-tunes the `cluster`'s resources hold (at least
        one): min over CPU (and GPU) of floor(cluster total / (workers x per worker))."""
        if self.finetune_slots:
            return self.finetune_slots
        workers = max(1, self.num_workers)
        held = self.worker_resources().items()
        return max(1, int(min(cluster.get(kind, 0.0) // (workers * n) for kind, n in held)))

    def worker_resources(self) -> dict[str, float]:
        """One fine-tuning worker's share: its CPUs, and its GPUs where it uses them."""
        return {
            "CPU": self.cpus_per_worker,
            **({"GPU": self.gpus_per_worker} if self.use_gpu else {}),
        }


@dataclass(frozen=True)
class TrackingConfig:
    experiment: str = "scale-vs-robustness"
    tracking_uri: str | None = None  # --tracking-uri or MLFLOW_TRACKING_URI, else a local store


SEARCH_OBJECTIVES = {"fid": "min", "delta_fid": "min", "r_precision_top3": "max"}


@dataclass(frozen=True)
class SearchConfig:
    """Optuna mode: per fraction, `trials` fine-tunes with loss weight and learning rates drawn
    by Optuna's TPE from the ranges below, scored at ASHA's rungs and at the end by `objective`
    under `objective_attack` at the largest budget, the weak ones stopped early by ASHA."""

    mode: str = "grid"  # grid | optuna
    trials: int = 8  # per fraction
    objective: str = "fid"  # fid | delta_fid | r_precision_top3
    # "strongest": the worst of every configured attack at the largest budget; or one recipe,
    # "greedy" (the white-box attack) or "none" (clean prompts)
    objective_attack: str = "strongest"
    w_distill: tuple[float, ...] = (0.0, 1.0)  # uniform range of the paper's lambda
    lr_text: tuple[float, ...] = (1e-7, 1e-4)  # log-uniform range (the joint phase)
    lr_motion: tuple[float, ...] = (3e-5, 1e-3)  # log-uniform range (the motion-only phase)
    # validation prompts scored at each rung (the test split never chooses anything); 0: as
    # many as the evaluation has test prompts
    prompts: int = 0
    grace_steps: int = 0  # ASHA's first rung in fine-tuning steps; 0: a quarter of them
    reduction_factor: int = 2  # ASHA keeps the best 1/reduction_factor at each rung
    max_concurrent: int = 0  # 0: as many as the cluster's CPUs (or GPUs) allow
    seed: int = 0  # Optuna's sampler

    def __post_init__(self) -> None:
        if self.mode not in ("grid", "optuna"):
            raise ValueError(f"mode must be 'grid' or 'optuna', got {self.mode!r}")
        if self.trials < 1:
            raise ValueError(f"trials must be >= 1, got {self.trials}")
        if self.objective not in SEARCH_OBJECTIVES:
            raise ValueError(
                f"objective must be one of {', '.join(SEARCH_OBJECTIVES)}, got {self.objective!r}"
            )
        attacks = ("strongest", "none", "greedy", *RECIPES)
        if self.objective_attack not in attacks:
            raise ValueError(
                f"objective_attack must be one of {', '.join(attacks)}, "
                f"got {self.objective_attack!r}"
            )
        if self.objective == "delta_fid" and self.objective_attack == "none":
            raise ValueError("objective delta_fid needs an attack, not objective_attack=none")
        for name, low_bound in (("w_distill", 0.0), ("lr_text", 1e-12), ("lr_motion", 1e-12)):
            span = getattr(self, name)
            if len(span) != 2 or not low_bound <= span[0] <= span[1]:
                raise ValueError(
                    f"{name} must be a range [low, high] with {low_bound:g} <= low <= high, "
                    f"got {list(span)}"
                )
        if self.prompts and self.prompts < 32:
            raise ValueError(
                f"prompts must be 0 (all) or at least 32 (one R-precision batch), "
                f"got {self.prompts}"
            )
        if self.grace_steps < 0 or self.reduction_factor < 2 or self.max_concurrent < 0:
            raise ValueError("grace_steps and max_concurrent must be >= 0, reduction_factor >= 2")

    @property
    def direction(self) -> str:
        """'min' or 'max': how Optuna and ASHA read the objective."""
        return SEARCH_OBJECTIVES[self.objective]


@dataclass(frozen=True)
class StudyConfig:
    name: str = "default"
    workdir: str = "moclip_runs"
    data: DataConfig = field(default_factory=DataConfig)
    encoder: TextEncoderSpec = field(default_factory=TextEncoderSpec)
    motion_encoder: MotionEncoderConfig = field(default_factory=MotionEncoderConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    generator: DiffusionConfig = field(default_factory=DiffusionConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    attacks: AttackConfig = field(default_factory=AttackConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)

    def __post_init__(self) -> None:
        attack = self.search.objective_attack
        if attack not in ("strongest", "none", "greedy") and attack not in self.attacks.recipes:
            raise ConfigError(
                f"search.objective_attack: {attack!r} is not one of attacks.recipes "
                f"({', '.join(self.attacks.recipes)}), 'greedy', 'none' or 'strongest'"
            )
        if self.search.mode == "optuna" and "action3d" in (self.data.kind, self.data.eval_kind):
            raise ConfigError(
                "search.mode: optuna scores a validation split, and MSR Action3D's "
                "cross-subject protocol has none; use grid mode"
            )
        if self.attacks.prompts and self.search.prompts > self.attacks.prompts:
            raise ConfigError(
                f"search.prompts: {self.search.prompts} is more than attacks.prompts "
                f"({self.attacks.prompts}), the evaluation prompts it is drawn from"
            )

    def to_dict(self) -> dict:
        """Plain dicts, lists and scalars: what YAML, JSON and MLflow params take."""
        return _plain(dataclasses.asdict(self))

    def evaluation_key(self) -> dict:
        """The evaluation settings that decide a score, as the result keys hash them: the
        recogniser's only where it scores (MSR Action3D), so that the keys of the other
        studies stay what they were before it existed; the adapted arm's settings only in
        that arm's keys, so that the frozen arm's stay the same whichever arms run."""
        tree = _plain(dataclasses.asdict(self.evaluation))
        if "action3d" not in (self.data.kind, self.data.eval_kind):
            tree.pop("recognizer")
        for name in ADAPTATION:  # in the adapted arm's keys only (sweeps.plan)
            tree.pop(name)
        return tree

    def adaptation(self) -> dict:
        """The generator arms and the adapted arm's training settings."""
        return {name: getattr(self.evaluation, name) for name in ADAPTATION}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _coerce(value, annotation, key: str):
    """`value` as the annotated type, or a ConfigError naming `key` and what is expected."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(items))
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation in (int, float):
        if isinstance(value, str):
            # YAML 1.1 reads 1e-5 (no dot) as text; take it as the number that was meant
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if annotation is int and not float(value).is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return annotation(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return str(value)
    return value


def _shown(key) -> str:
    """A key as an error message names it: as written, or quoted where it is not plain
    one-line text (so that the message stays one line)."""
    if isinstance(key, str) and key and key.isprintable() and key.strip() == key:
        return key
    return repr(key)


def _build(cls, values, prefix: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    # a YAML mapping's keys may be numbers, null or text with line breaks
    unknown = sorted(set(values) - fields, key=str)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{_shown(unknown[0])}; allowed: {', '.join(sorted(fields))}"
        )
    kwargs = {
        name: _coerce(value, hints[name], f"{prefix}.{name}" if prefix else name)
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{prefix or 'config'}: {err}") from None


def config_from_dict(values: dict) -> StudyConfig:
    """The StudyConfig of `to_dict()`'s output (what Ray trials receive)."""
    return _build(StudyConfig, values, "")


def _set_path(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[parts[-1]] = value


def load_config(path: Path | str | None = None, overrides: list[str] = ()) -> StudyConfig:
    """The study config of a YAML file (default: sweeps/configs/default.yaml) with
    `key.path=value` overrides (values parsed as YAML: 0.5, [1, 2], true, null)."""
    path = Path(path) if path else CONFIG_DIR / "default.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{path}: config file not found (shipped: "
            f"{', '.join(p.name for p in sorted(CONFIG_DIR.glob('*.yaml')))})"
        )
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key.path=value")
        try:
            _set_path(tree, key.strip(), yaml.safe_load(raw))
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: the value is not valid YAML") from None
    return _build(StudyConfig, tree, "")
