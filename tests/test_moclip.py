import copy
import math

import numpy as np
import pytest
import torch

from moclip.data.dataset import load_dataset
from moclip.data.synthetic import build_corpus
from moclip.losses import (
    INIT_LOGIT_SCALE,
    alignment_loss,
    contrastive_loss,
    distillation_loss,
    false_negative_mask,
    weighted_loss,
)
from moclip.metrics import r_precision
from moclip.model import CheckpointMeta, build_moclip, load_checkpoint, save_checkpoint
from moclip.motion_encoder import (
    MotionEncoder,
    MotionEncoderConfig,
    PartsMotionEncoder,
    body_parts,
    build_motion_encoder,
    joint_token_index,
    skeleton_attention_mask,
)
from moclip.pairs import PairSet, collate_pairs, stable_key
from moclip.retrieval import (
    evaluate_retrieval,
    recall_metrics,
    teacher_drift,
    validation_recalls,
)
from moclip.skeletons import SKELETONS
from moclip.text_encoders import (
    TeacherCache,
    TextEncoderError,
    TextEncoderSpec,
    build_text_encoder,
    frozen_copy,
    memoized,
)
from moclip.training import FinetuneConfig, fit, lr_factor, make_optimizer, phase_rates

ALL = list(SKELETONS.values())
TINY = TextEncoderSpec(kind="tiny", width=32, layers=1, heads=2)
SMALL_MOTION = MotionEncoderConfig(
    joint_width=16, temporal_width=32, temporal_layers=1, heads=2, dropout=0.0, frame_stride=4
)


@pytest.mark.parametrize("skeleton", ALL, ids=[s.name for s in ALL])
def test_attention_mask_is_adjacency_plus_self_plus_cross_links(skeleton):
    allowed = skeleton_attention_mask(skeleton)
    expected = {(j, j) for j in range(skeleton.num_joints)}
    for a, b in skeleton.bones + skeleton.cross_limb_links():
        expected |= {(a, b), (b, a)}
    assert {tuple(ij) for ij in allowed.nonzero().tolist()} == expected
    left_hand, right_hand = skeleton.hands
    assert allowed[left_hand, right_hand] and allowed[skeleton.feet[0], skeleton.feet[1]]
    assert not skeleton_attention_mask(skeleton, cross_limb=False)[left_hand, right_hand]
    encoder = MotionEncoder(skeleton, 8, SMALL_MOTION)
    assert torch.equal(encoder.spatial_blocked, ~allowed)


@pytest.mark.parametrize("skeleton", ALL, ids=[s.name for s in ALL])
def test_joint_tokens_use_every_feature_exactly_once(skeleton):
    index = joint_token_index(skeleton)
    used = index[index < skeleton.feature_dim]
    assert sorted(used.tolist()) == list(range(skeleton.feature_dim))


SMALL_PARTS = MotionEncoderConfig(
    kind="parts", part_width=16, part_hidden=8, temporal_width=32, temporal_layers=1, heads=2,
    frame_stride=4,
)


@pytest.mark.parametrize("config", [SMALL_MOTION, SMALL_PARTS], ids=["graph", "parts"])
def test_motion_encoder_ignores_padding(config):
    torch.manual_seed(0)
    skeleton = SKELETONS["humanml3d"]
    encoder = build_motion_encoder(skeleton, 8, config).eval()
    motion = torch.randn(1, 40, skeleton.feature_dim)
    padded = torch.cat((motion, 100 * torch.randn(1, 24, skeleton.feature_dim)), dim=1)
    mask = torch.zeros(1, 64, dtype=torch.bool)
    mask[:, :40] = True
    with torch.no_grad():
        alone = encoder(motion, torch.ones(1, 40, dtype=torch.bool))
        batched = encoder(
            torch.cat((padded, torch.randn(1, 64, skeleton.feature_dim))),
            torch.cat((mask, torch.ones(1, 64, dtype=torch.bool))),
        )
    assert torch.allclose(alone, batched[:1], atol=1e-5)


def test_the_authors_body_parts_on_the_humanml3d_skeleton():
    """models/motion_clip.py's t2m parts: root [0], torso [0,3,6,9,12,15], arms [14,17,19,21]
    and [13,16,18,20], legs [2,5,8,11] and [1,4,7,10], hands [19,21,18,20], feet [8,11,18,20]."""
    parts = {}
    for name, joints in body_parts(SKELETONS["humanml3d"]):
        parts.setdefault(name, []).append(set(joints))
    assert parts["root"] == [{0}] and parts["torso"] == [{0, 3, 6, 9, 12, 15}]
    assert sorted(map(sorted, parts["arm"])) == [[13, 16, 18, 20], [14, 17, 19, 21]]
    assert sorted(map(sorted, parts["leg"])) == [[1, 4, 7, 10], [2, 5, 8, 11]]
    assert parts["hands"] == [{19, 21, 18, 20}] and parts["hand-foot"] == [{8, 11, 18, 20}]
    for skeleton in ALL:  # every skeleton: 8 parts that cover every joint
        found = body_parts(skeleton)
        assert len(found) == 8, skeleton.name
        assert set().union(*(set(j) for _, j in found)) == set(range(skeleton.num_joints))


def test_a_moclip_with_the_parts_encoder_trains(small_pairs):
    encoder = build_motion_encoder(SKELETONS["humanml3d"], 8, SMALL_PARTS)
    assert isinstance(encoder, PartsMotionEncoder) and len(encoder.position_mlps) == 8
    train, pairs = small_pairs
    model, *_, history = _fit(pairs, train.skeleton, steps=3, motion=SMALL_PARTS)
    assert isinstance(model.motion, PartsMotionEncoder) and len(history) == 3
    assert all(np.isfinite(h["loss"]) for h in history)


def test_spatial_attention_in_chunks_gives_the_same_features_and_gradients():
    # chunks keep CUDA's attention batch under its limit; they must change nothing
    torch.manual_seed(0)
    skeleton = SKELETONS["humanml3d"]
    encoder = MotionEncoder(skeleton, 8, SMALL_MOTION).eval()
    frames = torch.randn(50, skeleton.num_joints, SMALL_MOTION.joint_width)
    results = []
    for rows in (len(frames), 7):  # one call; 8 chunks, the last one short
        encoder.zero_grad()
        out = encoder.spatial_attention(frames, rows=rows)
        out.square().sum().backward()
        grads = [p.grad.clone() for p in encoder.spatial.parameters()]
        results.append((out.detach(), grads))
    (whole, whole_grads), (chunked, chunked_grads) = results
    assert torch.allclose(whole, chunked, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(whole_grads, chunked_grads))
    assert len(frames) > 7 and chunked.shape == frames.shape


def test_contrastive_loss_limits_and_symmetry():
    batch = 8
    same = torch.ones(batch, 16)
    scale = torch.tensor(INIT_LOGIT_SCALE)
    assert contrastive_loss(same, same, scale).item() == pytest.approx(math.log(batch), rel=1e-6)
    eye = torch.eye(batch, 16)
    big = torch.tensor(math.log(100.0))
    assert contrastive_loss(eye, eye, big).item() < 1e-30 + 1e-6
    torch.manual_seed(0)
    a, b = torch.randn(batch, 16), torch.randn(batch, 16)
    assert contrastive_loss(a, b, scale).item() == pytest.approx(
        contrastive_loss(b, a, scale).item()
    )
    # The temperature is clamped at 100.
    assert contrastive_loss(a, b, torch.tensor(10.0)) == contrastive_loss(
        a, b, torch.tensor(math.log(100))
    )


def test_duplicates_are_not_negatives():
    torch.manual_seed(1)
    text = torch.randn(3, 8)
    motion = torch.randn(3, 8)
    motion[1] = motion[0]  # two captions of one motion
    keys = torch.tensor([5, 5, 9])
    assert false_negative_mask(keys, None, 3).tolist() == [
        [False, True, False],
        [True, False, False],
        [False, False, False],
    ]
    scale = torch.tensor(0.0)
    masked = contrastive_loss(text, motion, scale, motion_keys=keys)
    logits = (
        torch.nn.functional.normalize(text, dim=-1)
        @ torch.nn.functional.normalize(motion, dim=-1).T
    )
    logits[0, 1] = logits[1, 0] = float("-inf")
    target = torch.arange(3)
    manual = 0.5 * (
        torch.nn.functional.cross_entropy(logits, target)
        + torch.nn.functional.cross_entropy(logits.T, target)
    )
    assert masked.item() == pytest.approx(manual.item(), rel=1e-6)
    assert masked < contrastive_loss(text, motion, scale)
    # Identical captions are masked the same way, through their text keys.
    captions = ["a man walks.", "a man walks.", "a man runs."]
    text_keys = torch.tensor([stable_key(c) for c in captions])
    assert false_negative_mask(None, text_keys, 3)[0, 1]


def test_distillation_and_alignment_terms():
    torch.manual_seed(2)
    x = torch.randn(4, 8)
    assert distillation_loss(x, 3 * x).item() == pytest.approx(0.0, abs=1e-7)
    # a mean over the 4 x 8 elements (the authors' F.mse_loss), not a sum over dimensions:
    # opposite unit vectors differ by 4 in squared length, 4 / 8 per element
    assert distillation_loss(x, -x).item() == pytest.approx(0.5, rel=1e-6)
    student, teacher = np.random.default_rng(0).normal(size=(2, 5, 384))
    def unit(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    mse = float(np.mean((unit(student) - unit(teacher)) ** 2))
    tether = distillation_loss(torch.tensor(student), torch.tensor(teacher)).item()
    assert tether == pytest.approx(mse, rel=1e-9)
    assert alignment_loss(x, 2 * x).item() == pytest.approx(0.0, abs=1e-6)
    terms = {
        "contrastive": torch.tensor(1.0),
        "distill": torch.tensor(2.0),
        "align": torch.tensor(3.0),
    }
    assert weighted_loss(terms, 1.0, 0.5, 2.0).item() == pytest.approx(8.0)


def test_distillation_is_zero_at_initialisation():
    encoder, tokenizer, width = build_text_encoder(TINY)
    assert width == 32
    teacher = TeacherCache(frozen_copy(encoder), tokenizer)
    captions = ["a person waves.", "someone jumps twice."]
    with torch.no_grad():
        student = encoder(tokenizer(captions))
    assert distillation_loss(student, teacher(captions)).item() == pytest.approx(0.0, abs=1e-10)
    assert not any(p.requires_grad for p in teacher.teacher.parameters())


def test_teacher_cache_computes_each_caption_once(tmp_path):
    encoder, tokenizer, _ = build_text_encoder(TINY)
    calls = []
    teacher = TeacherCache(
        frozen_copy(encoder), lambda texts: calls.append(list(texts)) or tokenizer(texts)
    )
    first = teacher(["a", "b", "a"])
    teacher(["b", "c"])
    assert calls == [["a", "b"], ["c"]]
    assert torch.equal(first[0], first[2])
    teacher.save(tmp_path / "cache.npz")
    other = TeacherCache(teacher.teacher, tokenizer)
    assert other.load(tmp_path / "cache.npz") == 3
    assert torch.equal(other(["c"]), teacher(["c"]))


@pytest.mark.parametrize(
    "spec",
    [TINY, TextEncoderSpec(kind="open_clip", model="ViT-B-32", pretrained=None)],
    ids=["tiny", "vit-b-32"],
)
def test_trimmed_padding_gives_the_full_context_features_and_gradients(spec):
    encoder, tokenizer, _ = build_text_encoder(spec)
    # "!" is token 0, the padding id: a zero inside a caption must not be cut.
    tokens = tokenizer(["a person walks!", "someone jumps, then turns around and waves", "run"])
    assert tokens.shape[1] > 12 and (tokens[:, 12:] == 0).all()
    outputs = []
    for trim in (True, False):
        encoder.trim_padding = trim
        encoder.zero_grad()
        features = encoder(tokens)
        features.square().sum().backward()
        grad = encoder.clip.token_embedding.weight.grad.clone()
        outputs.append((features.detach(), grad))
    (trimmed, trimmed_grad), (full, full_grad) = outputs
    assert torch.allclose(trimmed, full, atol=1e-5, rtol=1e-4)
    scale = full_grad.abs().max()
    assert torch.allclose(trimmed_grad, full_grad, atol=1e-5 * scale, rtol=1e-4)
    assert full.abs().mean() > 0.1 and full_grad.abs().sum() > 0


def test_memo_tokenizer_tokenizes_each_caption_once_and_matches_the_tokenizer():
    _, tokenizer, _ = build_text_encoder(TINY)
    calls = []
    memo = memoized(lambda texts: calls.append(list(texts)) or tokenizer(texts))
    batch = ["a person walks", "someone runs", "a person walks"]
    assert torch.equal(memo(batch), tokenizer(batch))
    assert torch.equal(memo(["someone runs", "a jump"]), tokenizer(["someone runs", "a jump"]))
    assert calls == [["a person walks", "someone runs"], ["a jump"]]
    assert memoized(memo) is memo
    _, hf_tokenizer, _ = build_text_encoder(TextEncoderSpec(kind="hf"))
    assert memoized(hf_tokenizer) is hf_tokenizer  # pads per batch: left as it is


def test_minilm_tower_is_the_bundled_sentence_encoder():
    encoder, tokenizer, width = build_text_encoder(TextEncoderSpec(kind="hf"))
    assert width == 384
    assert encoder.clip.visual is None
    with torch.no_grad():
        e = torch.nn.functional.normalize(
            encoder(
                tokenizer(
                    ["a person walks forward.", "someone strolls ahead.", "the stock market fell."]
                )
            ),
            dim=-1,
        )
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_open_clip_offline_error_says_how_to_give_a_local_file():
    with pytest.raises(
        TextEncoderError, match=r"pretrained='/path/to/open_clip_pytorch_model.bin'"
    ):
        build_text_encoder(
            TextEncoderSpec(kind="open_clip", model="ViT-B-32", pretrained="openai", offline=True)
        )
    with pytest.raises(TextEncoderError, match="neither a file nor a tag"):
        build_text_encoder(TextEncoderSpec(kind="open_clip", model="ViT-B-32", pretrained="nope"))
    with pytest.raises(TextEncoderError, match="unknown open_clip model"):
        build_text_encoder(TextEncoderSpec(kind="open_clip", model="ViT-Z-99"))
    with pytest.raises(ValueError, match="kind must be one of"):
        TextEncoderSpec(kind="bert")


def test_warmup_then_cosine_schedule():
    assert lr_factor(0, 10, 100, 0.0) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100, 0.0) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, 0.0) == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


@pytest.fixture(scope="module")
def small_pairs(tiny_corpus):
    train = load_dataset(tiny_corpus, "train")
    return train, PairSet(train)


def _fit(pairs, skeleton, steps=20, seed=0, motion=SMALL_MOTION, **overrides):
    model, tokenizer = build_moclip(TINY, skeleton, motion, seed=seed)
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    options = {"epochs": 0, "lr_text": 1e-4, "lr_motion": 1e-3, "lr_motion_joint": 1e-3}
    config = FinetuneConfig(
        steps=steps, batch_size=16, warmup_steps=5, seed=seed, **{**options, **overrides}
    )
    history = fit(model, pairs, tokenizer, teacher, config)
    return model, tokenizer, teacher, config, history


@pytest.mark.slow
def test_loss_falls_within_100_steps_on_200_pairs(tmp_path):
    build_corpus(tmp_path / "c", 80, seed=3, workers=1, progress=False)
    data = load_dataset(tmp_path / "c", "all")
    train = data.subset(data.motion_ids[:67])
    pairs = PairSet(train, data.mean, data.std)
    assert len(pairs) == 201
    _, _, _, _, history = _fit(pairs, train.skeleton, steps=100)
    losses = [h["contrastive"] for h in history]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])


def test_same_seed_same_numbers_on_cpu(small_pairs):
    train, pairs = small_pairs
    first = _fit(pairs, train.skeleton, steps=6)[4]
    second = _fit(pairs, train.skeleton, steps=6)[4]
    assert [h["loss"] for h in first] == [h["loss"] for h in second]
    third = _fit(pairs, train.skeleton, steps=6, seed=1)[4]
    assert [h["loss"] for h in first] != [h["loss"] for h in third]


def test_resuming_from_a_checkpoint_gives_the_uninterrupted_numbers(small_pairs):
    """Stop after 10 of 12 steps (past an epoch's end: 9 batches an epoch), restore model,
    optimizer and scheduler, continue: the last two steps and the weights match."""
    train, pairs = small_pairs
    saved = {}

    def keep_step_10(step, metrics):
        if step == 10:
            saved.update(
                model=copy.deepcopy(model.state_dict()),
                optimizer=copy.deepcopy(optimizer.state_dict()),
                scheduler=copy.deepcopy(scheduler.state_dict()),
            )

    config = FinetuneConfig(
        steps=12, epochs=0, batch_size=16, lr_text=1e-4, lr_motion=1e-3, warmup_steps=5
    )
    model, tokenizer = build_moclip(TINY, train.skeleton, SMALL_MOTION, seed=0)
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    optimizer, scheduler = make_optimizer(model, config)
    straight = fit(
        model, pairs, tokenizer, teacher, config, "cpu", optimizer, scheduler, on_step=keep_step_10
    )
    assert len(pairs) // 16 == 9 and len(straight) == 12

    resumed_model, _ = build_moclip(TINY, train.skeleton, SMALL_MOTION, seed=0)
    resumed_model.load_state_dict(saved["model"])
    optimizer, scheduler = make_optimizer(resumed_model, config)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    resumed = fit(
        resumed_model, pairs, tokenizer, teacher, config, "cpu", optimizer, scheduler, start_step=10
    )
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight[10:]]
    for name, value in resumed_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_checkpoint_round_trip(small_pairs, tmp_path):
    train, pairs = small_pairs
    model, tokenizer, teacher, config, _ = _fit(pairs, train.skeleton, steps=3)
    meta = CheckpointMeta(
        step=3,
        text_spec=TINY,
        motion_config=SMALL_MOTION,
        skeleton=train.skeleton.name,
        train_config=config.to_dict(),
        data_fingerprint=train.fingerprint(),
        mean=train.mean,
        std=train.std,
    )
    path = save_checkpoint(tmp_path / "ckpt.pt", model, meta)
    loaded, loaded_tokenizer, loaded_meta, _ = load_checkpoint(path)
    assert loaded_meta.step == 3 and loaded_meta.data_fingerprint == train.fingerprint()
    assert loaded_meta.train_config == config.to_dict() and np.array_equal(
        loaded_meta.mean, train.mean
    )
    batch = collate_pairs([pairs[i] for i in range(4)])
    model.eval(), loaded.eval()
    with torch.no_grad():
        a = model(tokenizer(batch.texts), batch.features, batch.mask)
        b = loaded(loaded_tokenizer(batch.texts), batch.features, batch.mask)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_retrieval_metrics_on_known_embeddings():
    eye = torch.eye(64)
    items = torch.arange(64)
    perfect = recall_metrics(eye, eye, items)
    assert perfect["t2m_R@1"] == 1.0 and perfect["m2t_median_rank"] == 1.0
    assert r_precision(eye, eye, distance="cosine")["r_precision_top1"] == 1.0
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(3200, 16), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(3200, 16), dim=-1)
    chance = r_precision(a, b, distance="cosine")
    for k in (1, 2, 3):
        assert chance[f"r_precision_top{k}"] == pytest.approx(k / 32, abs=0.015)
    assert teacher_drift(a, a) == pytest.approx(1.0)


def test_evaluate_retrieval_reports_every_metric(small_pairs, tiny_corpus):
    train, pairs = small_pairs
    model, tokenizer, teacher, _, _ = _fit(pairs, train.skeleton, steps=2)
    test = load_dataset(tiny_corpus, "all")
    scores = evaluate_retrieval(model, tokenizer, teacher, test, train.mean, train.std)
    for key in (
        "t2m_R@1",
        "t2m_R@10",
        "m2t_R@5",
        "t2m_median_rank",
        "r_precision_top3",
        "teacher_drift",
    ):
        assert key in scores
    assert scores["num_texts"] == 180 and 0 <= scores["r_precision_top1"] <= 1


def test_length_buckets_cover_each_index_once_and_group_lengths():
    from moclip.pairs import length_bucketed_batches

    lengths = [int(x) for x in np.random.default_rng(0).integers(40, 197, 1000)]
    batches = length_bucketed_batches(lengths, 16, torch.Generator().manual_seed(0), window=10)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) and len(flat) >= 1000 - 16 * 7
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    assert spread < 20  # random batches of 16 spread over ~130 frames
    again = length_bucketed_batches(lengths, 16, torch.Generator().manual_seed(0), window=10)
    assert again == batches


def test_epochs_give_every_set_the_same_passes():
    config = FinetuneConfig(epochs=2, batch_size=16)
    assert config.resolved(100).steps == 2 * 6  # 6 full batches a pass
    assert config.resolved(1000).steps == 2 * 62
    assert config.resolved(100, processes=2).steps == 2 * 3  # batches of 16 on each of 2
    assert FinetuneConfig(epochs=0, steps=7).resolved(1000).steps == 7
    with pytest.raises(ValueError, match="no batch of 16"):
        config.resolved(15)
    again = config.resolved(100)
    assert again.resolved(100) == again  # resolving twice changes nothing


def test_phase_rates_follow_the_authors_schedule():
    config = FinetuneConfig(steps=100, epochs=0, warmup_steps=0, min_lr_ratio=0.0)
    assert config.motion_only_steps == 70
    first, joint = phase_rates(0, config), phase_rates(70, config)
    assert first == {"text": 0.0, "motion": pytest.approx(1e-4), "scale": 0.0}
    assert joint == {
        "text": pytest.approx(1e-6),
        "motion": pytest.approx(1e-6),
        "scale": pytest.approx(1e-6),
    }
    assert phase_rates(69, config)["text"] == 0.0 and phase_rates(85, config)["text"] < 1e-6
    assert config.validation_steps() == [80, 90, 100]
    assert FinetuneConfig(steps=10, epochs=0, validations=0).validation_steps() == []


def test_the_schedule_freezes_the_text_tower_then_trains_everything(small_pairs):
    """Two motion-only steps move the motion encoder and nothing else (the tether off); the
    two joint steps then move the text tower and the temperature too."""
    train, pairs = small_pairs
    model, tokenizer = build_moclip(TINY, train.skeleton, SMALL_MOTION, seed=0)
    teacher = TeacherCache(frozen_copy(model.text), tokenizer)
    config = FinetuneConfig(
        steps=4, epochs=0, motion_only_share=0.5, batch_size=16, lr_text=1e-3,
        lr_motion_joint=1e-3, w_distill=0.6,
    )
    snapshots = {0: copy.deepcopy(model.state_dict())}
    seen = {}

    def keep(step, metrics):
        snapshots[step] = copy.deepcopy(model.state_dict())
        seen[step] = metrics

    fit(model, pairs, tokenizer, teacher, config, on_step=keep)

    def moved(prefix: str, before: int, after: int) -> bool:
        return any(
            not torch.equal(snapshots[before][k], snapshots[after][k])
            for k in snapshots[0]
            if k.startswith(prefix)
        )

    assert moved("motion.", 0, 2) and not moved("text.", 0, 2) and not moved("log_scale", 0, 2)
    assert seen[1]["lr_text"] == 0.0 and seen[1]["distill"] == 0.0
    assert moved("text.", 2, 4) and moved("log_scale", 2, 4) and moved("motion.", 2, 4)
    assert seen[3]["lr_text"] > 0.0 and seen[4]["distill"] > 0.0  # the tower has moved once


def test_validation_keeps_the_best_checkpoint(tiny_corpus):
    """Every validation step is scored; the weights kept are those of the best score, and the
    model they are loaded into scores that again."""
    from moclip.finetune import build_finetune, validation_score

    # the whole corpus as the validation set: the tiny corpus's val split has 3 motions
    train, val = load_dataset(tiny_corpus, "train"), load_dataset(tiny_corpus, "all")
    config = FinetuneConfig(
        steps=6, epochs=0, motion_only_share=0.5, batch_size=16, lr_text=1e-3,
        lr_motion=3e-3, lr_motion_joint=3e-3, validations=3,
    )
    run = build_finetune(TINY, SMALL_MOTION, config, train, 1.0, val)
    weights = {}

    def on_step(step, metrics):
        if "val_score" in metrics:  # Finetune.fit validated at this step
            weights[step] = copy.deepcopy(run.model.state_dict())

    run.fit("cpu", on_step=on_step)
    steps = [step for step, _ in run.selection.scores]
    assert steps == config.validation_steps() == [4, 5, 6] == sorted(weights)
    best_step, best = max(run.selection.scores, key=lambda s: (s[1], -s[0]))
    chosen = run.select()
    assert chosen == {"selected_step": best_step, "val_score": best}
    for name, value in run.model.state_dict().items():
        assert torch.equal(value, weights[best_step][name]), name
    again = validation_score(validation_recalls(run.model, run.tokenizer, val, train.mean, train.std))
    assert again == pytest.approx(best, abs=1e-6)
