"""Reading a run's record: journal.jsonl as chaoslab.run.journal.Journal writes it (one JSON
object per line). Below everything that reads a record (report, bundle, CLI, bench), so none of
them needs the runner's package."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def records(path: Path, types: tuple[str, ...] | None = None) -> Iterator[dict]:
    """Every readable record, one at a time; with `types`, only records of those types (a line
    that cannot be one of them is skipped before it is parsed: a fleet run's journal holds tens of
    MB of samples). A torn last line (runner killed mid-write), a line that is not UTF-8 or not
    JSON, and anything that is not a record as Journal.write makes them (an object with a string
    `type` and a numeric `t`) are skipped, never fatal."""
    marks = tuple(f'"type": "{t}"'.encode() for t in types) if types else None
    with open(path, "rb") as fh:
        for raw in fh:
            if marks is not None and not any(m in raw for m in marks):
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):   # UnicodeDecodeError and JSONDecodeError are ValueErrors
                continue
            if (isinstance(record, dict) and isinstance(record.get("type"), str)
                    and isinstance(record.get("t"), (int, float)) and not isinstance(record.get("t"), bool)
                    and (types is None or record["type"] in types)):
                yield record


def read(path: Path) -> list[dict]:
    """Every readable record (see `records`)."""
    return list(records(path))
