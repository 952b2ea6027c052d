"""Reading a run's record: journal.jsonl as chaoslab.run.journal.Journal writes it (one JSON
object per line). Below everything that reads a record (report, bundle, CLI, bench), so none of
them needs the runner's package."""

from __future__ import annotations

import json
from pathlib import Path


def read(path: Path) -> list[dict]:
    """Every readable record. A torn last line (runner killed mid-write), a line that is not
    UTF-8 or not JSON, and anything that is not a record as Journal.write makes them (an object
    with a string `type` and a numeric `t`) are skipped, never fatal."""
    records = []
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                record = json.loads(raw.decode("utf-8"))
            except (ValueError, RecursionError):   # UnicodeDecodeError and JSONDecodeError are ValueErrors
                continue
            if (isinstance(record, dict) and isinstance(record.get("type"), str)
                    and isinstance(record.get("t"), (int, float)) and not isinstance(record.get("t"), bool)):
                records.append(record)
    return records
