import pytest

from moclip.attacks.perturb import Budget, levenshtein, perturb, read_set, set_statistics
from moclip.attacks.recipes import HOMOGLYPHS, RECIPES
from moclip.attacks.resources import STOPWORDS, MissingWordNetError, prepare_nltk_data
from moclip.attacks.words import protected, synonyms, tag_words

PROMPTS = [
    "a person walks forward slowly and then turns left.",
    "someone jumps high in place twice.",
    "the man waves the right hand above the head.",
    "a woman kicks with the left leg three times.",
    "somebody squats deeply four times.",
]


@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.parametrize("budget", [1, 2])
def test_recipes_stay_within_budget_and_are_deterministic(recipe, budget):
    first = perturb(PROMPTS, recipe, budget, seed=3)
    assert first == perturb(PROMPTS, recipe, budget, seed=3)
    # a synonym that keeps the word's sense and part of speech exists for fewer words
    assert sum(r.success for r in first) >= (3 if recipe == "wordnet-synonym" else 4)
    for record in first:
        assert record.words_changed <= budget
        assert record.edit_distance == levenshtein(record.original, record.perturbed)
        if recipe not in ("wordnet-synonym", "composite"):
            assert record.edit_distance <= 2 * budget
        # Stopwords are never touched.
        for before, after in zip(record.original.split(), record.perturbed.split()):
            if before.strip(".,").lower() in STOPWORDS:
                assert before == after


def test_other_seed_gives_another_set():
    a = [r.perturbed for r in perturb(PROMPTS, "char-swap", 1, seed=0)]
    b = [r.perturbed for r in perturb(PROMPTS, "char-swap", 1, seed=1)]
    assert a != b


def test_homoglyphs_replace_letters_with_look_alikes():
    records = perturb(PROMPTS, "homoglyph", 2, seed=0)
    for record in records:
        for x, y in zip(record.original, record.perturbed):
            assert x == y or HOMOGLYPHS[x] == y


def test_synonyms_keep_the_part_of_speech_in_context_and_the_inflection():
    prepare_nltk_data()
    assert "leaps" in synonyms("jumps", "VERB")
    assert all(w.endswith("ing") for w in synonyms("walking", "VERB"))
    assert "rapidly" in synonyms("quickly", "ADV")
    assert synonyms("Quickly", "ADV")[0][0].isupper()  # cased as the word was
    assert synonyms("jumps", "NOUN") != synonyms("jumps", "VERB")
    # the part of speech is read in the sentence: a verb here, a noun there
    assert tag_words("she walks home".split())[1] == "VERB"
    assert tag_words("the evening walks were long".split())[2] == "NOUN"
    for record in perturb(PROMPTS, "wordnet-synonym", 1, seed=2):
        for before, after in zip(record.original.split(), record.perturbed.split()):
            if before != after:
                word = before.strip(".,")
                tags = tag_words([w.strip(".,") for w in record.original.split()])
                index = [w.strip(".,") for w in record.original.split()].index(word)
                assert after.strip(".,") in synonyms(word, tags[index])


# Issue #30's table: what the synonym recipe wrote on real captions, each must now come out right
FAILURES = [
    ("A person walks forward.", "A", {"adenine"}),
    ("A person turns right and walks forward.", "right", {"rightfulness", "correct"}),
    ("he kicks with his right foot.", "foot.", {"ft.", "foundation.", "pes."}),
    ("A person is standing and then takes 1,5 steps", "1,5", {"i,5"}),
    ("A person is standing and then takes 1,5 steps", "standing", {"digesting"}),
    ("a person walks in a circle.", "circle.", {"rope."}),
    ("a person rides a bike", "rides", {"twits"}),
    ("a man plays the guitar.", "plays", {"wagers"}),
    ("a person waves one arm", "waves", {"wavings"}),
    ("a person waves one arm", "person", {"mortal"}),
    ("someone makes two throws with the left arm.", "two", {"ii"}),
]


@pytest.mark.parametrize("caption,word,wrong", FAILURES)
def test_each_failure_of_the_synonym_recipe_now_comes_out_right(caption, word, wrong):
    index = caption.split().index(word)
    for seed in range(6):
        for budget in (1, 2):
            record = perturb([caption], "wordnet-synonym", budget, seed)[0]
            after = record.perturbed.split()
            assert len(after) == len(caption.split())
            assert after[index] not in wrong, record.perturbed
            assert "A" not in caption.split()[:1] or after[0] == "A"
            # punctuation stays where it was
            assert [w[-1] for w in after if not w[-1].isalnum()] == [
                w[-1] for w in caption.split() if not w[-1].isalnum()
            ]


def test_numbers_capitalised_stopwords_and_glued_punctuation_are_refused():
    for token in ("1,5", "2", "two", "Twice", "A", "The", "foot.", "(left)"):
        assert protected(token), token
    for token in ("walks", "Person", "quickly", "left-handed"):
        assert not protected(token), token
    for recipe in ("char-swap", "qwerty", "wordnet-synonym"):
        for record in perturb(["A man takes 3 steps, then two more."], recipe, 2, 0):
            after = record.perturbed.split()
            assert after[0] == "A" and after[3] == "3" and after[6] == "two", record.perturbed


def test_the_meaning_check_rejects_an_antonym_and_keeps_a_synonym():
    prepare_nltk_data()
    from textattack.shared import AttackedText

    from moclip.attacks.meaning import build_meaning_constraint, judge_similarity

    check = build_meaning_constraint()
    original = AttackedText("a person walks forward quickly")
    synonym = AttackedText("a person walks forward rapidly")
    antonym = AttackedText("a person walks backward quickly")
    for text in (synonym, antonym):
        text.attack_attrs["last_transformation"] = None
    assert check.call_many([synonym, antonym], original) == [synonym]
    # the judge puts a sentence about something else far below a typo of the same one
    near, far = judge_similarity(["a person walks forward"] * 2, ["a persn walks forward",
                                                                   "the cat sleeps on a sofa"])
    assert far < check.threshold and near > far + 0.05
    # every record carries its judge similarity, the statistics its distribution
    records = perturb(PROMPTS, "char-swap", 1, seed=0)
    assert all(r.similarity >= check.threshold for r in records if r.success)
    stats = set_statistics(records)
    assert check.threshold <= stats["similarity_min"] <= stats["similarity_mean"] <= 1


def test_budget_parsing_and_errors():
    assert Budget.parse(2) == Budget(words=2) and Budget.parse("0.2") == Budget(share=0.2)
    assert Budget(share=0.2).max_words(10) == 2 and Budget(share=0.01).max_words(10) == 1
    with pytest.raises(ValueError, match="not both"):
        Budget(words=1, share=0.5)
    with pytest.raises(ValueError, match="share must be in"):
        Budget.parse(1.5)
    with pytest.raises(ValueError, match="unknown recipe 'leet'"):
        perturb(PROMPTS, "leet", 1, seed=0)


def test_cache_returns_the_stored_set_without_recomputing(tmp_path):
    first = perturb(PROMPTS, "qwerty", 1, seed=5, cache_dir=tmp_path, data_fingerprint="abc")
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) == 1 and "qwerty-1w-s5-random" in files[0].name
    assert read_set(files[0]) == first
    # Prove the second call reads the file: edit it and get the edit back.
    lines = files[0].read_text().splitlines()
    lines[1] = lines[1].replace(first[0].perturbed, "EDITED")
    files[0].write_text("\n".join(lines) + "\n")
    again = perturb(PROMPTS, "qwerty", 1, seed=5, cache_dir=tmp_path, data_fingerprint="abc")
    assert again[0].perturbed == "EDITED" and again[1:] == first[1:]
    perturb(PROMPTS, "qwerty", 1, seed=5, cache_dir=tmp_path, data_fingerprint="other")
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_statistics():
    records = perturb(PROMPTS, "char-delete", 2, seed=0)
    stats = set_statistics(records)
    assert stats["success_rate"] == 1.0 and stats["mean_words_changed"] == 2.0
    assert stats["mean_edit_distance"] == 2.0


def test_missing_wordnet_names_the_packages(tmp_path):
    with pytest.raises(
        MissingWordNetError, match="apt-get install wordnet-base wordnet-sense-index"
    ):
        prepare_nltk_data(tmp_path / "nltk", wordnet_source=tmp_path / "nowhere")


def test_greedy_attack_drifts_further_than_random_at_equal_budget(tmp_path):
    from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder

    encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind="tiny"))
    embedder = TextEmbedder(encoder, tokenizer)
    for recipe in ("char-swap", "qwerty"):
        greedy = perturb(PROMPTS, recipe, 1, seed=0, encoder=embedder)
        random_set = perturb(PROMPTS, recipe, 1, seed=0)
        assert all(r.words_changed <= 1 for r in greedy)
        drift_greedy = set_statistics(greedy, embedder)["mean_drift"]
        drift_random = set_statistics(random_set, embedder)["mean_drift"]
        assert drift_greedy > drift_random
    # White-box sets are cached under the encoder's id.
    perturb(PROMPTS, "char-swap", 1, seed=0, encoder=embedder, cache_dir=tmp_path)
    (path,) = tmp_path.glob("*.jsonl")
    assert embedder.identity in path.name


def test_greedy_attack_takes_one_word_prompts():
    """MSR Action3D's prompts include one-word action names: the word-importance search's
    leave-one-out text is then empty, which the encoder refuses (the real-data failure)."""
    from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder

    encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind="tiny"))
    embedder = TextEmbedder(encoder, tokenizer)
    prompts = ["bend", "jogging", "a person jogs in place"]
    greedy = perturb(prompts, "char-swap", 1, seed=0, encoder=embedder)
    assert [r.original for r in greedy] == prompts
    assert all(r.success and r.words_changed == 1 for r in greedy)


def test_rank_attack_pushes_the_true_motion_down():
    import torch

    from moclip.text_encoders import TextEmbedder, TextEncoderSpec, build_text_encoder

    encoder, tokenizer, _ = build_text_encoder(TextEncoderSpec(kind="tiny"))
    embedder = TextEmbedder(encoder, tokenizer)
    # A gallery where each prompt's own clean embedding is its true motion.
    gallery = torch.nn.functional.normalize(embedder(PROMPTS), dim=-1)
    rows = list(range(len(PROMPTS)))

    def margin(texts):
        e = torch.nn.functional.normalize(embedder(texts), dim=-1)
        sims = e @ gallery.T
        true = sims[torch.arange(len(texts)), torch.tensor(rows)]
        others = sims.masked_fill(torch.eye(len(texts), dtype=torch.bool), -2).max(1).values
        return (others - true).mean().item()

    attacked = perturb(PROMPTS, "char-swap", 1, seed=0, encoder=embedder, motions=(gallery, rows))
    randomly = perturb(PROMPTS, "char-swap", 1, seed=0)
    assert margin([r.perturbed for r in attacked]) > margin([r.perturbed for r in randomly])
    with pytest.raises(ValueError, match="needs an encoder"):
        perturb(PROMPTS, "char-swap", 1, seed=0, motions=(gallery, rows))
