"""What decides a cached frozen model and a score: the generator's cache key holds what shapes
its weights, not how it samples, and an evaluation samples the way its own sweep says."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sweeps.config import load_config
from sweeps.keys import model_keys, sweep_key

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"
DEFAULT = ROOT / "sweeps" / "configs" / "default.yaml"
FINGERPRINTS = {"train": "f" * 64, "test": "e" * 64}


def test_sampling_settings_keep_the_generators_cache_key_and_weights_settings_change_it():
    config = load_config(SMOKE, [])
    sampling = load_config(
        SMOKE, ["generator.sample_batch=3", "generator.sample_steps=7", "generator.guidance=1.5"]
    )
    assert model_keys(sampling, FINGERPRINTS) == model_keys(config, FINGERPRINTS)
    assert sweep_key(sampling) == sweep_key(config)  # the same sweep, its records reused
    for override in ("generator.width=64", "generator.frames_per_token=2", "encoder.width=64"):
        changed = model_keys(load_config(SMOKE, [override]), FINGERPRINTS)
        assert changed[0] == model_keys(config, FINGERPRINTS)[0], override  # the evaluator's
        assert changed[1] != model_keys(config, FINGERPRINTS)[1], override
        assert sweep_key(load_config(SMOKE, [override])) != sweep_key(config), override
    other_test_split = model_keys(config, {**FINGERPRINTS, "test": "d" * 64})
    assert all(a != b for a, b in zip(other_test_split, model_keys(config, FINGERPRINTS)))


def test_a_config_with_default_sampling_keeps_the_generator_key_it_had_before():
    """The key hashed the whole generator config before sampling left it; it now hashes
    `weights_dict`, which is the same dict where sampling is at its defaults, so a workdir on
    the default config keeps its cached generator."""
    from moclip.generation.diffusion import DiffusionConfig

    default = load_config(DEFAULT, []).generator
    assert default.weights_dict() == default.to_dict()
    smoke = load_config(SMOKE, []).generator  # samples in 2 DDIM steps
    assert smoke.weights_dict() == {**smoke.to_dict(), "sample_steps": DiffusionConfig.sample_steps}


def test_an_evaluation_samples_at_its_sweeps_batch_size_with_the_same_scores(tmp_path):
    from moclip.text_encoders import TextEmbedder, build_text_encoder
    from sweeps.data import data_root, evaluation_prompts, load_split
    from sweeps.jobs import Scorer
    from sweeps.stage0 import train_evaluator_task, train_generator_task

    torch.set_num_threads(1)
    config = load_config(SMOKE, [f"workdir={tmp_path}"])  # its generator samples 8 at a time
    root = data_root(config)
    evaluator = train_evaluator_task(config, root)[0]
    generator = train_generator_task(config, root)[0]
    prompts, lengths, _ = evaluation_prompts(load_split("synthetic", root, "test"), 32, seed=0)
    encoder, tokenizer, _ = build_text_encoder(config.encoder)
    embedder = TextEmbedder(encoder.eval(), tokenizer)

    def scores(sample_batch: int) -> dict[str, float]:
        study = load_config(
            SMOKE, [f"workdir={tmp_path}", f"generator.sample_batch={sample_batch}"]
        )
        payload = {"study": study.to_dict(), "evaluator": evaluator, "generator": generator}
        payload.update({"prompts": prompts, "lengths": lengths, "transfer": {}, "root": root})
        scorer = Scorer(payload, torch.device("cpu"))
        sampling = scorer.generator.config
        assert (sampling.sample_batch, sampling.sample_steps) == (
            sample_batch,
            study.evaluation.ddim_steps,
        )
        return scorer.score(embedder, "none", 0, multimodality=False)[0]

    one, all_at_once = scores(1), scores(32)
    assert one["fid"] > 0
    for name in ("fid", "r_precision_top3", "mm_dist", "diversity"):
        assert all_at_once[name] == pytest.approx(one[name], rel=1e-3, abs=1e-4), name


def test_the_search_scores_the_validation_split_and_never_reads_the_test_split(tmp_path):
    """Optuna mode's objective: validation prompts, perturbed by the same recipes, against the
    validation split's real motions. With the test split's list of motions taken away after
    stage 0, the search's scorer and fine-tune still run: they never open it."""
    import math

    from moclip.data.dataset import DatasetError
    from moclip.text_encoders import TextEmbedder, build_text_encoder
    from sweeps.data import data_root, evaluation_prompts, load_split
    from sweeps.jobs import Scorer, prepare_finetune
    from sweeps.plan import search_job
    from sweeps.stage0 import Stage0, train_evaluator_task, train_generator_task, transfer_prompts

    torch.set_num_threads(1)
    config = load_config(
        SMOKE,
        [
            f"workdir={tmp_path}",
            "search.mode=optuna",
            "search.objective=delta_fid",
            "data.num_motions=640",  # 32 validation motions: one R-precision batch
        ],
    )
    root = data_root(config)
    splits = {name: load_split("synthetic", root, name) for name in ("train", "val", "test")}
    fingerprints = {name: part.fingerprint() for name, part in splits.items()}
    prompts, lengths, _ = evaluation_prompts(splits["val"], 32, config.attacks.seed)
    sets, _ = transfer_prompts(config, prompts, fingerprints["val"], tmp_path / "cache")
    stage0 = Stage0(
        root=root,
        train_fingerprint=fingerprints["train"],
        test_fingerprint=fingerprints["test"],
        subset_sizes={(1.0, 0): (len(splits["train"]), splits["train"].num_pairs)},
        evaluator_path=tmp_path / "evaluator.pt",
        generator_path=tmp_path / "generator.pt",
        prompts=["a test prompt"] * 32,
        lengths=[40] * 32,
        search_prompts=prompts,
        search_lengths=lengths,
        search_transfer_sets=sets,
        val_fingerprint=fingerprints["val"],
    )
    stage0.evaluator_path.write_bytes(train_evaluator_task(config, root)[0])
    stage0.generator_path.write_bytes(train_generator_task(config, root)[0])
    payload = stage0.payload(config, split="val")
    assert payload["split"] == "val" and payload["prompts"] == prompts
    val_captions = {c.text for item in splits["val"].items for c in item.captions}
    test_captions = {c.text for item in splits["test"].items for c in item.captions}
    assert set(prompts) <= val_captions and not set(prompts) & (test_captions - val_captions)
    for records in payload["transfer"].values():
        assert [r["original"] for r in records] == prompts

    hidden = Path(root, "test.txt").rename(Path(root, "test.hidden"))
    try:
        with pytest.raises(DatasetError):
            load_split("synthetic", root, "test")  # the test split is gone
        scorer = Scorer(payload, torch.device("cpu"))
        encoder, tokenizer, _ = build_text_encoder(config.encoder)
        value, per_attack = scorer.objective(TextEmbedder(encoder.eval(), tokenizer))
        assert math.isfinite(value) and set(per_attack) == {"char-swap"}
        assert set(scorer._real) == {"val"}  # the real motions it compared with
        job = search_job(config, stage0, 1.0)
        run = prepare_finetune(config, job, root, stage0.fingerprints)
        assert run.val is not None and len(run.subset.motion_ids) == len(splits["train"])
    finally:
        hidden.rename(Path(root, "test.txt"))


def test_the_adversarial_transfer_set_is_crafted_once_and_the_same_for_every_encoder(tmp_path):
    """greedy-transfer: the greedy search against the surrogate (the original encoder) in
    stage 0, then applied unchanged: byte-identical for any encoder that is scored."""
    from dataclasses import asdict

    from moclip.attacks.perturb import perturb, set_statistics, write_set
    from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder
    from sweeps.data import data_root, evaluation_prompts, load_split
    from sweeps.jobs import Scorer
    from sweeps.stage0 import surrogate_sets, train_evaluator_task, train_generator_task

    torch.set_num_threads(1)
    config = load_config(SMOKE, [f"workdir={tmp_path}", "attacks.transfer_greedy=true"])
    root = data_root(config)
    test = load_split("synthetic", root, "test")
    prompts, lengths, _ = evaluation_prompts(test, 32, config.attacks.seed)
    sets, paths = surrogate_sets(config, prompts, test.fingerprint(), tmp_path / "cache")
    crafted = sets[("greedy-transfer", 1)]
    assert paths[("greedy-transfer", 1)].is_file()  # crafted once, then read from the cache
    assert sum(r.success for r in crafted) >= 16
    encoder, tokenizer, _ = build_text_encoder(config.encoder)
    surrogate = TextEmbedder(encoder.eval(), tokenizer)
    randomly = perturb(prompts, config.attacks.greedy_recipe, 1, config.attacks.seed)
    drift = set_statistics(crafted, surrogate)["mean_drift"]
    assert drift > set_statistics(randomly, surrogate)["mean_drift"]  # adversarial to it

    payload = {"study": config.to_dict(), "root": root, "prompts": prompts, "lengths": lengths}
    payload["evaluator"] = train_evaluator_task(config, root)[0]
    payload["generator"] = train_generator_task(config, root)[0]
    payload["transfer"] = {"greedy-transfer|1": [asdict(r) for r in crafted]}
    scorer = Scorer(payload, torch.device("cpu"))
    other_spec = TextEncoderSpec(kind="tiny", width=32, layers=1, heads=2, seed=7)
    other, other_tokenizer, _ = build_text_encoder(other_spec)
    files = []
    for index, embedder in enumerate((surrogate, TextEmbedder(other.eval(), other_tokenizer))):
        used = scorer.perturbed("greedy-transfer", 1, embedder, len(prompts))
        files.append(tmp_path / f"set-{index}.jsonl")
        write_set(files[-1], used, {"recipe": "greedy-transfer", "budget": 1})
    assert files[0].read_bytes() == files[1].read_bytes()
    assert scorer.perturbed("greedy-transfer", 1, surrogate, len(prompts)) == crafted
