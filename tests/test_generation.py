from dataclasses import replace

import numpy as np
import pytest
import torch

from moclip.data.dataset import load_dataset
from moclip.evaluation.evaluate import evaluate
from moclip.evaluation.evaluator import EvaluatorConfig, load_evaluator, save_evaluator
from moclip.evaluation.train_evaluator import ground_truth_figures, train_evaluator
from moclip.generation.diffusion import (
    DiffusionConfig,
    cosine_alpha_bar,
    load_generator,
    save_generator,
)
from moclip.generation.train_generator import train_generator
from moclip.optim import ema_decay_at, ema_update
from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder

SMALL = DiffusionConfig(width=64, layers=2, heads=4, sample_steps=5, dropout=0.0)
SMALL_EVAL = EvaluatorConfig(word_width=32, hidden=64, out_width=32, conv_width=64)


@pytest.fixture(scope="module")
def trained(tiny_corpus):
    train = load_dataset(tiny_corpus, "train")
    encoder, tokenizer, _ = build_text_encoder(
        TextEncoderSpec(kind="tiny", width=32, layers=1, heads=2)
    )
    embedder = TextEmbedder(encoder, tokenizer)
    generator, losses = train_generator(
        train, embedder, steps=40, batch_size=16, seed=0, config=SMALL, log_every=0
    )
    evaluator, eval_losses = train_evaluator(
        train, steps=40, batch_size=16, config=SMALL_EVAL, log_every=0
    )
    return train, embedder, generator, losses, evaluator, eval_losses


def test_cosine_schedule_decreases_from_one_to_zero():
    abar = cosine_alpha_bar(1000)
    assert abar[0] > 0.999 and abar[-1] < 1e-3
    assert torch.all(abar[1:] < abar[:-1])


def test_generator_and_evaluator_losses_fall(trained):
    _, _, _, losses, _, eval_losses = trained
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    assert np.mean(eval_losses[-10:]) < np.mean(eval_losses[:10])


def test_sampling_is_deterministic_for_fixed_noise_seeds(trained):
    _, embedder, generator, *_ = trained
    prompts = ["a person walks forward.", "someone jumps twice."]
    a = generator.generate(prompts, [40, 52], embedder, [1, 2])
    b = generator.generate(prompts, [40, 52], embedder, [1, 2])
    c = generator.generate(prompts, [40, 52], embedder, [1, 3])
    assert [m.shape for m in a] == [(40, 263), (52, 263)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
    # A motion does not depend on what else is in the batch.
    alone = generator.generate(prompts[:1], [40], embedder, [1])
    np.testing.assert_allclose(alone[0], a[0], atol=1e-4)


def test_guidance_one_equals_the_conditional_model(trained):
    _, embedder, generator, *_ = trained
    text = embedder(["a person waves."])
    x = torch.randn(1, 40, 263)
    t = torch.tensor([500])
    mask = torch.ones(1, 40, dtype=torch.bool)
    normed = torch.nn.functional.normalize(text, dim=-1)
    with torch.no_grad():
        conditional = generator.denoiser(x, t, normed, torch.tensor([True]), mask)
        unconditional = generator.denoiser(x, t, normed, torch.tensor([False]), mask)
        guided_two = generator.guided_x0(x, t, normed, mask, 2.0)
        guided_one = generator.guided_x0(x, t, normed, mask, 1.0)
    assert torch.equal(guided_one, conditional)
    torch.testing.assert_close(guided_two, 2 * conditional - unconditional)
    assert not torch.allclose(conditional, unconditional)


def test_round_trips_and_evaluation(trained, tiny_corpus, tmp_path):
    train, embedder, generator, _, evaluator, _ = trained
    test = load_dataset(tiny_corpus, "all")
    figures = ground_truth_figures(evaluator, train, test)
    assert 0 <= figures["r_precision_top3"] <= 1 and figures["diversity"] > 0
    save_evaluator(tmp_path / "eval.pt", evaluator, train.fingerprint(), figures)
    loaded_eval, state = load_evaluator(tmp_path / "eval.pt")
    assert state["figures"] == figures and loaded_eval.fingerprint() == evaluator.fingerprint()
    save_generator(tmp_path / "gen.pt", generator, train.fingerprint())
    loaded_gen, _ = load_generator(tmp_path / "gen.pt")
    prompts = [c.text for item in test.items for c in item.captions[:1]][:40]
    lengths = [min(item.num_frames, 60) for item in test.items][:40]
    same = loaded_gen.generate(prompts[:2], lengths[:2], embedder, [5, 6])
    again = generator.generate(prompts[:2], lengths[:2], embedder, [5, 6])
    assert all(np.array_equal(x, y) for x, y in zip(same, again))

    def score(used: list[str], **kwargs) -> dict[str, float]:
        return evaluate(
            loaded_gen, embedder, prompts, used, lengths, loaded_eval, repeats=2, **kwargs
        )

    clean = score(prompts, mm_prompts=4, mm_samples=3)
    for key in (
        "fid",
        "r_precision_top1",
        "r_precision_top3",
        "mm_dist",
        "diversity",
        "multimodality",
    ):
        assert np.isfinite(clean[key]) and np.isfinite(clean[f"{key}_ci95"])
    # Same prompts and seeds: the same numbers; other prompts: the evaluator reads the clean ones.
    assert score(prompts, mm_prompts=4, mm_samples=3) == clean
    other = score(prompts[1:] + prompts[:1], mm_prompts=0)
    assert other["fid"] != clean["fid"]
    with pytest.raises(ValueError, match="one of each"):
        evaluate(loaded_gen, embedder, prompts, prompts[:-1], lengths, loaded_eval)


def test_frames_per_token_keeps_lengths_ignores_padding_and_learns(tiny_corpus, trained):
    train, embedder, *_ = trained
    config = DiffusionConfig(
        width=64, layers=2, heads=4, sample_steps=3, dropout=0.0, frames_per_token=4
    )
    generator, losses = train_generator(
        train, embedder, steps=40, batch_size=16, seed=0, config=config, log_every=0
    )
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    # 41 frames is not a whole number of tokens: the last token holds one real frame.
    prompts = ["a person walks forward.", "someone jumps twice."]
    both = generator.generate(prompts, [41, 50], embedder, [1, 2])
    alone = generator.generate(prompts[:1], [41], embedder, [1])
    assert [m.shape for m in both] == [(41, 263), (50, 263)]
    np.testing.assert_allclose(alone[0], both[0], atol=1e-4)
    with pytest.raises(ValueError, match="frames_per_token"):
        DiffusionConfig(frames_per_token=0)


def test_ema_update_is_the_running_average():
    averages = [torch.zeros(3), torch.ones(2)]
    ema_update(averages, [torch.full((3,), 10.0), torch.full((2,), 3.0)], 0.9)
    torch.testing.assert_close(averages[0], torch.full((3,), 1.0))
    torch.testing.assert_close(averages[1], torch.full((2,), 1.2))
    # The warm-up forgets the random start quickly and reaches the set decay later on.
    assert ema_decay_at(1, 0.999) == pytest.approx(2 / 11)
    assert ema_decay_at(10_000, 0.999) == 0.999


def test_ema_generator_holds_the_average_of_the_trained_weights(trained):
    """The saved EMA weights equal the average of the weights the same run had after each
    step (each read from a run stopped there: training is deterministic for a seed)."""
    train, embedder, *_ = trained
    plain = DiffusionConfig(width=32, layers=1, heads=2, dropout=0.0)
    decay, steps = 0.5, 3

    def weights(step_count: int, config: DiffusionConfig) -> list[torch.Tensor]:
        generator, _ = train_generator(
            train, embedder, steps=step_count, batch_size=8, seed=0, config=config, log_every=0
        )
        return [p.detach().clone() for p in generator.parameters()]

    trajectory = [weights(step, plain) for step in range(steps + 1)]
    expected = [w.clone() for w in trajectory[0]]
    for step in range(1, steps + 1):
        ema_update(expected, trajectory[step], ema_decay_at(step, decay))
    averaged = weights(steps, replace(plain, ema_decay=decay))
    last = trajectory[-1]
    for got, want in zip(averaged, expected):
        torch.testing.assert_close(got, want)
    assert any(not torch.equal(a, b) for a, b in zip(averaged, last))
    with pytest.raises(ValueError, match="ema_decay"):
        DiffusionConfig(ema_decay=1.0)


def test_an_adapted_generator_is_a_trained_on_copy_for_the_new_encoder(trained):
    """Adapting trains a copy on another encoder's features at a lower rate: its weights and
    samples differ from the frozen generator's, which stays as it was, and the same seed
    adapts to the same weights."""
    from moclip.generation.train_generator import adapt_generator

    train, _, generator, *_ = trained
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    other, tokenizer, _ = build_text_encoder(
        TextEncoderSpec(kind="tiny", width=32, layers=1, heads=2, seed=5)
    )
    fine_tuned = TextEmbedder(other, tokenizer)
    adapted, losses = adapt_generator(generator, train, fine_tuned, steps=6, batch_size=16)
    again, _ = adapt_generator(generator, train, fine_tuned, steps=6, batch_size=16)
    assert len(losses) == 6 and adapted.encoder_id == fine_tuned.identity
    assert all(torch.equal(v, generator.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, adapted.state_dict()[k]) for k, v in before.items())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in adapted.state_dict().items())
    prompts = ["a person walks forward."]
    frozen = generator.generate(prompts, [40], fine_tuned, [1])[0]
    moved = adapted.generate(prompts, [40], fine_tuned, [1])[0]
    assert not np.allclose(frozen, moved)
