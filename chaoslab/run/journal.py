"""The run's journal: one JSON object per line, flushed as it is written, and the bus that run
handlers listen on.

Samples (every second), events (step-start/step-end, decisions, evidence), checks and the verdict
all go here; the report is built from this file alone, and a runner killed with SIGKILL leaves it
readable up to the last line. Every record is also handed to the run handlers (console progress,
monitors, ...: anything with on_sample(record) and on_event(record)); a handler that raises is
logged once in the journal and never stops the run.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from chaoslab.record import read  # noqa: F401  (moved to chaoslab/record.py; re-exported for callers not yet switched)


class Journal:
    def __init__(self, path: Path, handlers: list | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self.handlers: list = list(handlers or [])
        self._failed_handlers: set[int] = set()
        self.context: dict = {}   # fields added to every record (e.g. the variant being run)
        self.failure: str | None = None   # the first write that failed: the run cannot be judged
        self.lost = 0                     # records that could not be written
        # fsync every 2 s on a thread of its own: a slow disk (the I/O pressure some experiments
        # cause on purpose) must not hold the sampler's second under the journal's lock
        self._closing = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name="journal-fsync", daemon=True)
        self._syncer.start()

    def _sync_loop(self) -> None:
        while not self._closing.wait(2.0):
            try:
                fd = self._fh.fileno()
                os.fsync(fd)
            except (OSError, ValueError) as exc:   # closed meanwhile, or the disk failed
                if not self._fh.closed and self.failure is None:
                    self.failure = f"the journal could not be synced ({type(exc).__name__}: {exc})"[:300]

    def write(self, type_: str, **fields) -> dict:
        record = {"t": round(time.time(), 3), "type": type_, **self.context, **fields}
        line = json.dumps(record, default=str)
        with self._lock:
            if self._fh.closed:
                return record
            try:
                self._fh.write(line + "\n")
            except (OSError, ValueError) as exc:  # ENOSPC, EIO...: the record is not kept
                self.lost += 1
                if self.failure is None:
                    self.failure = f"the journal could not be written ({type(exc).__name__}: {exc})"[:300]
        self._dispatch(record)
        return record

    def event(self, name: str, **fields) -> dict:
        return self.write("event", name=name, **fields)

    def _dispatch(self, record: dict) -> None:
        for handler in list(self.handlers):
            try:
                if record["type"] == "sample":
                    handler.on_sample(record)
                else:
                    handler.on_event(record)
            except Exception as exc:  # a failing handler is logged, never fatal
                if id(handler) not in self._failed_handlers:
                    self._failed_handlers.add(id(handler))
                    self.write("handler-error", handler=type(handler).__name__, error=f"{type(exc).__name__}: {exc}"[:300])

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            if not self._fh.closed:
                try:
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
                except (OSError, ValueError) as exc:
                    self.failure = self.failure or f"the journal could not be written ({exc})"
                finally:
                    try:
                        self._fh.close()
                    except OSError:
                        pass
