"""Loss accounting: a pure function of the history (the `no-loss` final check,
chaoslab.checks.loss, judges the summary it gives).

- lost: acknowledged by the broker, never delivered to the consumer, and provably never going to
  be: the workload's drain closed the books (every acknowledged message delivered, or the broker
  reported nothing left to deliver).
- unknown: acknowledged, not delivered, and the books did not close (the drain's declared timeout
  passed first): neither lost nor delivered. Never counted as loss, never as a pass.
- duplicated: delivered more than once; counted apart (deliveries = received + duplicates).
- unacked_delivered: delivered although the send was never acknowledged (legal: an ack may be
  lost after the write) — reported, not counted as loss.

The drain's outcome is in the history as a `books` op (History.books); a history without one
(written before it existed) is judged as closed.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from chaoslab.workload.history import History


@dataclass
class LossReport:
    sent: int
    acked: int
    failed: int
    received: int                  # distinct messages delivered
    lost: list[str] = field(default_factory=list)
    duplicated: dict[str, int] = field(default_factory=dict)
    unacked_delivered: int = 0
    unknown: list[str] = field(default_factory=list)
    deliveries: int = 0            # every delivery, duplicates included
    unidentified: int = 0          # deliveries without a message id
    books_closed: bool = True
    closed_by: str | None = None

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and not self.unknown and self.books_closed

    def summary(self) -> dict:
        return {"sent": self.sent, "acked": self.acked, "failed": self.failed, "received": self.received,
                "lost": len(self.lost), "unknown": len(self.unknown), "duplicated": len(self.duplicated),
                "duplicates": sum(n - 1 for n in self.duplicated.values()), "deliveries": self.deliveries,
                "unidentified": self.unidentified, "unacked_delivered": self.unacked_delivered,
                "books_closed": self.books_closed, "closed_by": self.closed_by,
                "lost_sample": self.lost[:10], "unknown_sample": self.unknown[:10]}


def check(history: History) -> LossReport:
    sent, acked, failed = set(), set(), set()
    received: Counter[str] = Counter()
    unidentified = deliveries = 0
    books = {"closed": True, "by": None}
    for op in history.ops:
        if op.kind == "send":
            sent.add(op.id)
        elif op.kind == "ack":
            acked.add(op.id)
        elif op.kind == "fail":
            failed.add(op.id)
        elif op.kind == "recv":
            deliveries += 1
            if op.id is None:
                unidentified += 1
            else:
                received[op.id] += 1
        elif op.kind == "books":
            try:
                books = {"closed": True, "by": None, **json.loads(op.detail or "{}")}
            except ValueError:
                books = {"closed": False, "by": f"unreadable: {op.detail!r}"[:120]}
    missing = sorted(acked - set(received))
    closed = bool(books.get("closed"))
    dups = {i: n for i, n in received.items() if n > 1}
    return LossReport(sent=len(sent), acked=len(acked), failed=len(failed - acked), received=len(received),
                      lost=missing if closed else [], unknown=[] if closed else missing, duplicated=dups,
                      unacked_delivered=len(set(received) - acked), deliveries=deliveries,
                      unidentified=unidentified, books_closed=closed, closed_by=books.get("by"))


def loss_words(l: dict) -> str:
    """A workload's books (LossReport.summary()) as one paragraph of the report."""
    return (f"Workload: {l['sent']} sent, {l['acked']} acknowledged, {l['received']} received, "
            f"{l['lost']} acknowledged but never delivered, {l.get('unknown', 0)} neither delivered nor "
            f"provably lost (books {'closed' if l.get('books_closed', True) else 'not closed'}: "
            f"{l.get('closed_by') or 'n/a'}), {l['duplicated']} duplicated.")
