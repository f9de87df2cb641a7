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


# The real MSR Action3D recordings beside the checkout (never committed into the project).
MSR_ACTION3D = Path(__file__).resolve().parents[2] / "shared" / "data" / "msr_action3d"


@pytest.fixture(scope="session")
def msr_action3d() -> Path:
    """The folder of the 567 real recordings; a missing folder fails the test (CI has it)."""
    assert MSR_ACTION3D.is_dir(), f"{MSR_ACTION3D}: the real MSR Action3D folder is missing"
    return MSR_ACTION3D


@pytest.fixture(scope="session")
def action3d_splits(msr_action3d):
    """(train, test) of the real recordings, loaded once."""
    from moclip.data.action3d import load_action3d

    return load_action3d(msr_action3d, "train"), load_action3d(msr_action3d, "test")
