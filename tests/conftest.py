from __future__ import annotations

from pathlib import Path

import pytest

from moclip.data.synthetic import build_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A 60-motion synthetic corpus, built once for the whole session with two processes."""
    root = tmp_path_factory.mktemp("corpus") / "synthetic"
    build_corpus(root, 60, seed=7, workers=2, progress=False)
    return root
