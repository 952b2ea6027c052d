"""The history: every operation the workload performed and every fault, with timestamps.

Jepsen's idea: workload, faults and analysis never know each other; the history is the contract
between them. Checkers (chaoslab.checks) are pure functions of it, so a saved run can be
re-analysed. Serialised as JSON lines.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# kinds: send (invoked), ack (Pulsar acknowledged), fail (send failed), recv (consumer got it; a
#        message delivered twice has two recv ops: duplicates stay in the history, counted apart),
#        books (how the workload's drain ended: closed or not, History.books),
#        fault-start / fault-end / note (from the experiment runner)


@dataclass
class Op:
    t: float            # seconds since the epoch
    kind: str
    id: str | None = None
    topic: str | None = None
    detail: str | None = None


class History:
    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._lock = threading.Lock()

    def add(self, kind: str, id: str | None = None, topic: str | None = None, detail: str | None = None) -> None:
        op = Op(time.time(), kind, id, topic, detail)
        with self._lock:
            self._ops.append(op)

    def books(self, closed: bool, by: str) -> None:
        """Write down how the workload's drain ended: the books closed (by "all-delivered", or
        "broker-empty": what is still missing is provably lost), or not (by: why; what is missing
        is then unknown to chaoslab.workload.loss, not lost)."""
        self.add("books", detail=json.dumps({"closed": closed, "by": by}))

    @property
    def ops(self) -> list[Op]:
        with self._lock:
            return list(self._ops)

    def count(self, kind: str) -> int:
        return sum(1 for op in self.ops if op.kind == kind)

    def save(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for op in self.ops:
                fh.write(json.dumps({k: v for k, v in asdict(op).items() if v is not None}) + "\n")

    @classmethod
    def load(cls, path: Path) -> "History":
        h = cls()
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    h._ops.append(Op(**json.loads(line)))
        return h
