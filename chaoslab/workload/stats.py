"""Client-side counters with a sliding window: what the applications would have seen, overall
and per topic (so that what a broker's topics saw can be told apart), and the lookups still in
flight (a lookup that hangs completes neither as success nor as failure)."""

from __future__ import annotations

import collections
import itertools
import threading
import time


def error_kind(error: object) -> str:
    """Name an error the way the steady-state hypothesis counts it."""
    name = getattr(error, "name", None) or type(error).__name__
    text = f"{name} {error}"
    if "TooMany" in text or "too many" in text.lower():
        return "TooManyRequests"
    if "Lookup" in text:
        return "LookupError"
    if "Timeout" in text:
        return "Timeout"
    if "ServiceUnitNotReady" in text or "ServiceNotReady" in text:
        return "ServiceUnitNotReady"
    return name


class ClientStats:
    def __init__(self, horizon_secs: float = 120):
        self._events: collections.deque = collections.deque()   # (t, kind, value, topic)
        self._lock = threading.Lock()
        self._horizon = horizon_secs
        self.totals: collections.Counter = collections.Counter()
        self._in_flight: dict[int, tuple[float, str]] = {}
        self._tokens = itertools.count()

    def _add(self, kind: str, value: float = 0.0, topic: str | None = None) -> None:
        now = time.time()
        with self._lock:
            self._events.append((now, kind, value, topic))
            self.totals[kind] += 1
            while self._events and self._events[0][0] < now - self._horizon:
                self._events.popleft()

    def publish(self, ok: bool, latency_ms: float | None = None, error: object = None, topic: str | None = None) -> None:
        if ok:
            self._add("publish_ok", latency_ms or 0.0, topic)
        else:
            self._add("publish_failed", topic=topic)
            self._add(f"error:{error_kind(error)}", topic=topic)

    def lookup_begin(self, topic: str) -> int:
        token = next(self._tokens)
        with self._lock:
            self._in_flight[token] = (time.time(), topic)
        return token

    def lookup(self, ok: bool, error: object = None, topic: str | None = None, token: int | None = None) -> None:
        if token is not None:
            with self._lock:
                self._in_flight.pop(token, None)
        self._add("lookup_ok" if ok else "lookup_failed", topic=topic)
        if not ok:
            self._add(f"error:{error_kind(error)}", topic=topic)

    def reconnect(self) -> None:
        self._add("reconnect")

    def stuck(self, older_than_secs: float) -> list[str]:
        """Topics of lookups in flight for longer than `older_than_secs`."""
        limit = time.time() - older_than_secs
        with self._lock:
            return [topic for started, topic in self._in_flight.values() if started < limit]

    def window(self, secs: float) -> dict:
        """Counts and publish latency quantiles over the last `secs` seconds."""
        since = time.time() - secs
        with self._lock:
            events = [e for e in self._events if e[0] >= since]
        counts: collections.Counter = collections.Counter(e[1] for e in events)
        latencies = sorted(e[2] for e in events if e[1] == "publish_ok")
        ok, failed = counts["publish_ok"], counts["publish_failed"]
        return {
            "publish_ok": ok, "publish_failed": failed,
            "publish_success_rate": (ok / (ok + failed)) if ok + failed else None,
            "publish_p50_ms": latencies[len(latencies) // 2] if latencies else None,
            "publish_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
            "lookup_ok": counts["lookup_ok"], "lookup_failed": counts["lookup_failed"],
            "lookup_stuck": len(self.stuck(secs)),
            "reconnects": counts["reconnect"],
            "too_many_requests": counts["error:TooManyRequests"],
            "errors": {k.removeprefix("error:"): v for k, v in counts.items() if k.startswith("error:")},
        }

    def by_topic(self, secs: float) -> dict[str, collections.Counter]:
        """Per topic over the last `secs` seconds: publish_ok/failed, lookup_ok/failed, lookup_stuck."""
        since = time.time() - secs
        out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        with self._lock:
            for t, kind, _v, topic in self._events:
                if t >= since and topic and kind in ("publish_ok", "publish_failed", "lookup_ok", "lookup_failed"):
                    out[topic][kind] += 1
        for topic in self.stuck(secs):
            out[topic]["lookup_stuck"] += 1
        return out
