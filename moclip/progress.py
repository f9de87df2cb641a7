"""Progress bars for long work in the library's entry points (tqdm, on stderr, only where
stderr is a terminal: logs and CI keep their plain lines)."""

from __future__ import annotations

from tqdm import tqdm


def progress_bar(total: int, desc: str, enabled: bool = True) -> tqdm:
    """A bar of `total` steps named `desc`; a silent one where disabled or off a terminal."""
    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False)
