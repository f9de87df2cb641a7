"""The generator interface every text-to-motion family implements (diffusion today; a VQ
tokeniser with a GPT prior fits the same call)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from moclip.text_encoders import TextEmbedder


class MotionGenerator(ABC):
    """Frozen text-to-motion generator conditioned on a pluggable text encoder."""

    @abstractmethod
    def generate(
        self,
        prompts: Sequence[str],
        lengths: Sequence[int],
        text_encoder: TextEmbedder,
        noise_seeds: Sequence[int],
    ) -> list[np.ndarray]:
        """One unnormalised feature array (lengths[i], D) per prompt. The same noise seed gives
        the same sampling noise, so a prompt and its perturbed twin differ only by the text."""
