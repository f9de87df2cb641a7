"""The sweep's output: `logging` with the stage in brackets, `[stage 1] 3/6 ...`.

Every module logs through `stage_log("stage 1")`; `configure` (called by the entry points and
inside Ray's trials) writes INFO and up to stdout, `--quiet` only warnings, `--verbose` debug.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "moclip_sweeps"
RESULT = 25  # the sweep's result lines: shown with --quiet too
logging.addLevelName(RESULT, "RESULT")


class _Stdout(logging.StreamHandler):
    """A handler on whatever sys.stdout is when it writes (pytest swaps it per test)."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


class StageFormatter(logging.Formatter):
    """`[stage] message`, with `warning:`/`error:` before the message at those levels."""

    def format(self, record: logging.LogRecord) -> str:
        stage = getattr(record, "stage", None) or "sweep"
        level = f"{record.levelname.lower()}: " if record.levelno >= logging.WARNING else ""
        text = f"[{stage}] {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def stage_log(stage: str) -> logging.LoggerAdapter:
    """A logger whose lines carry `[stage]`."""
    return logging.LoggerAdapter(logging.getLogger(LOGGER), {"stage": stage})


def configure(verbosity: int = 0) -> None:
    """Send the sweep's lines to stdout (once per process): -1 results and warnings only,
    0 info, 1 debug."""
    logger = logging.getLogger(LOGGER)
    level = {-1: RESULT, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    logger.setLevel(level)
    if not any(getattr(h, "moclip_sweeps", False) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(StageFormatter())
        handler.moclip_sweeps = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
