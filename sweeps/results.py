"""Finished trials on disk: what makes a sweep resumable."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from sweeps.records import TrialRecord


class ResultStore:
    """One JSON file per finished trial, named by the trial's key (a hash of everything that
    determines its result); written atomically, so a file that exists is complete."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> TrialRecord | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return TrialRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(
                f"{path}: unreadable trial record ({err}); delete it to rerun"
            ) from None

    def put(self, record: TrialRecord) -> None:
        path = self._path(record.key)
        tmp = path.with_name(path.name + ".tmp")
        text = json.dumps(record.to_dict(), indent=2, default=float)
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def find(self, prefix: str) -> list[TrialRecord]:
        """Every record whose key starts with `prefix`, in key order."""
        return [self.get(path.stem) for path in sorted(self.folder.glob(f"{prefix}*.json"))]

    def update(self, key: str, **fields) -> TrialRecord:
        record = dataclasses.replace(self.get(key), **fields)
        self.put(record)
        return record
