"""The run's journal: one JSON object per line, flushed as it is written.

Samples (every second), events (faults, decisions, health at the moment the operator looked),
checks and the verdict all go here; the report is built from this file alone, and a runner killed
with SIGKILL leaves it readable up to the last line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


class Journal:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._last_sync = time.monotonic()

    def write(self, type_: str, **fields) -> dict:
        record = {"t": round(time.time(), 3), "type": type_, **fields}
        line = json.dumps(record, default=str)
        with self._lock:
            self._fh.write(line + "\n")
            if time.monotonic() - self._last_sync > 2:
                os.fsync(self._fh.fileno())
                self._last_sync = time.monotonic()
        return record

    def event(self, name: str, **fields) -> dict:
        return self.write("event", name=name, **fields)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()


def read(path: Path) -> list[dict]:
    """Every complete line; a torn last line (runner killed mid-write) is skipped."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records
