"""Where the Pulsar client library's own log lines go: a file in the run folder, not the
terminal (a broken broker makes the C++ client log thousands of lines a second)."""

from __future__ import annotations

import logging
from pathlib import Path

LOGGER = logging.getLogger("chaoslab.pulsar-client")
LOGGER.propagate = False
LOGGER.setLevel(logging.WARNING)
LOGGER.addHandler(logging.NullHandler())


def to_file(path: Path) -> None:
    for h in list(LOGGER.handlers):
        LOGGER.removeHandler(h)
        h.close()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOGGER.addHandler(handler)


def logger() -> logging.Logger:
    return LOGGER


def close_quietly(client) -> None:
    """Close a pulsar.Client (or anything with close()) that may already be broken: the caller
    has its result or its error already, and a failing close must not replace it."""
    if client is None:
        return
    try:
        client.close()
    except Exception:
        pass
