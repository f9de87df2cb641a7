"""The white-box attack: TextAttack's greedy word-importance search, driving a text encoder's
embedding away from the clean prompt's under the same budget and constraints as the recipes.

Score of a candidate x' of prompt x: drift(x') = 1 - cos(E(x'), E(x)), maximised; or, given a
gallery of motion embeddings and the prompt's true motion, the margin by which the best other
motion beats the true one, max_{j != y} cos(E(x'), m_j) - cos(E(x'), m_y): a continuous score
that rises as the true motion falls in rank. The encoder is queried in batches (TextAttack's
model batch size) and its answers are cached per text.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Embedder = Callable[[list[str]], torch.Tensor]


def build_attack(
    embedder: Embedder,
    transformation,
    max_words: int,
    max_edit_distance: int | None,
    batch_size: int = 64,
    gallery: torch.Tensor | None = None,
    threshold: float | None = None,
):
    """A TextAttack `Attack` maximising embedding drift (or, with a `gallery` of motion
    embeddings, the true motion's rank margin) within `max_words` changed words, each
    candidate passing the meaning check at `threshold` (None: none)."""
    from textattack import Attack
    from textattack.constraints.overlap import LevenshteinEditDistance
    from textattack.constraints.pre_transformation import MaxNumWordsModified, RepeatModification
    from textattack.goal_function_results import TextToTextGoalFunctionResult
    from textattack.goal_functions import GoalFunction
    from textattack.models.wrappers import ModelWrapper
    from textattack.search_methods import GreedyWordSwapWIR

    class EncoderWrapper(ModelWrapper):
        def __init__(self, embed: Embedder) -> None:
            self.model = embed

        def __call__(self, texts: list[str]) -> torch.Tensor:
            # The word-importance search deletes each word in turn: a one-word prompt
            # ("bend") leaves no text, which no encoder takes. It carries nothing, so its
            # embedding is the zero vector: drift 1 from any prompt, the word most important.
            # (The first call embeds the clean prompt, so the width is known by then.)
            kept = [i for i, text in enumerate(texts) if text.strip()]
            out = torch.zeros(len(texts), self.width) if len(kept) < len(texts) else None
            if kept:
                embedded = self.model([texts[i] for i in kept]).float()
                embedded = torch.nn.functional.normalize(embedded, dim=-1)
                if out is None:
                    self.width = embedded.shape[1]
                    return embedded
                out[kept] = embedded
            return out

        width = 0

    class EmbeddingDrift(GoalFunction):
        """Maximise 1 - cos(E(x'), E(x)), E unit-normalised; E(x) is the reference."""

        def init_attack_example(self, attacked_text, ground_truth_output):
            self.reference = self._call_model([attacked_text])[0]
            return super().init_attack_example(attacked_text, ground_truth_output)

        def _goal_function_result_type(self):
            return TextToTextGoalFunctionResult

        def _process_model_outputs(self, _, outputs):
            return outputs

        def _is_goal_complete(self, model_output, _):
            return False  # maximise within the budget

        true_motion: int | None = None  # set per prompt when attacking retrieval

        def _get_score(self, model_output, _):
            if gallery is None or self.true_motion is None:
                return float(1.0 - torch.dot(model_output, self.reference))
            sims = gallery @ model_output
            others = torch.cat((sims[: self.true_motion], sims[self.true_motion + 1 :]))
            return float(others.max() - sims[self.true_motion])

        def _get_displayed_output(self, raw_output):
            return ""

    from moclip.attacks.meaning import build_meaning_constraint
    from moclip.attacks.recipes import build_protection

    constraints = [RepeatModification(), build_protection(), MaxNumWordsModified(max_words)]
    if threshold is not None:
        constraints.append(build_meaning_constraint(threshold))
    if max_edit_distance is not None:
        constraints.append(
            LevenshteinEditDistance(max_edit_distance, compare_against_original=True)
        )
    goal = EmbeddingDrift(EncoderWrapper(embedder), maximizable=True, model_batch_size=batch_size)
    if gallery is not None:
        gallery = torch.nn.functional.normalize(gallery.float(), dim=-1)
    return Attack(goal, constraints, transformation, GreedyWordSwapWIR(wir_method="delete"))


def attack_prompt(attack, text: str, true_motion: int | None = None) -> str:
    """The highest-scoring perturbation of `text` the greedy search finds (or `text` itself);
    `true_motion` is the prompt's row in the attack's gallery, if it has one."""
    from textattack.shared import AttackedText

    attack.goal_function.true_motion = true_motion
    result = attack.attack(AttackedText(text), text)
    return result.perturbed_result.attacked_text.text
