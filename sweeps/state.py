"""Where a sweep keeps its own state: `<workdir>/sweeps/<key>/state.json` (Ray's run name,
how far it got, the stage times), Ray's storage, and the lines that tell a user where to look
or how to finish."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from sweeps.config import StudyConfig


def storage_location(config: StudyConfig, workdir: Path) -> str:
    """Where Ray keeps trials and checkpoints: ray.storage_path, else $MOCLIP_RAY_STORAGE (what
    cluster/tracking_stack.py prints), else <workdir>/ray."""
    path = config.ray.storage_path or os.environ.get("MOCLIP_RAY_STORAGE")
    if path and "://" in path:
        return path
    return str((Path(path) if path else workdir / "ray").resolve())


class SweepState:
    """workdir/sweeps/<key>/state.json: the run name of Ray's outputs and how far it got."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "state.json"
        self.values = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def save(self, **values) -> None:
        self.values.update(values)
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.values, indent=2) + "\n")
        tmp.replace(self.path)


class StageClock:
    """Wall seconds per stage of one sweep process, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[stage] = round(time.monotonic() - started, 1)

    def line(self) -> str:
        return ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in self.seconds.items())


def ui_hint(tracking_uri: str) -> str:
    """How to open the MLflow UI on the sweep's runs."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return f"mlflow ui --backend-store-uri {tracking_uri}"


def resume_hint(why: str, store: Path) -> str:
    """What a sweep that stopped early says: why, and how to finish it."""
    return (
        f"{why}; finished trials are kept in {store}. "
        "Run the same command with --resume to finish the rest."
    )
