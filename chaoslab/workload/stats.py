"""Client-side counters with a sliding window: what the applications would have seen."""

from __future__ import annotations

import collections
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
        self._events: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._horizon = horizon_secs
        self.totals: collections.Counter = collections.Counter()

    def _add(self, kind: str, value: float = 0.0) -> None:
        now = time.time()
        with self._lock:
            self._events.append((now, kind, value))
            self.totals[kind] += 1
            while self._events and self._events[0][0] < now - self._horizon:
                self._events.popleft()

    def publish(self, ok: bool, latency_ms: float | None = None, error: object = None) -> None:
        if ok:
            self._add("publish_ok", latency_ms or 0.0)
        else:
            self._add("publish_failed")
            self._add(f"error:{error_kind(error)}")

    def lookup(self, ok: bool, error: object = None) -> None:
        self._add("lookup_ok" if ok else "lookup_failed")
        if not ok:
            self._add(f"error:{error_kind(error)}")

    def reconnect(self) -> None:
        self._add("reconnect")

    def window(self, secs: float) -> dict:
        """Counts and publish latency quantiles over the last `secs` seconds."""
        since = time.time() - secs
        with self._lock:
            events = [e for e in self._events if e[0] >= since]
        counts: collections.Counter = collections.Counter(kind for _, kind, _ in events)
        latencies = sorted(v for _, kind, v in events if kind == "publish_ok")
        ok, failed = counts["publish_ok"], counts["publish_failed"]
        return {
            "publish_ok": ok, "publish_failed": failed,
            "publish_success_rate": (ok / (ok + failed)) if ok + failed else None,
            "publish_p50_ms": latencies[len(latencies) // 2] if latencies else None,
            "publish_p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None,
            "lookup_ok": counts["lookup_ok"], "lookup_failed": counts["lookup_failed"],
            "reconnects": counts["reconnect"],
            "too_many_requests": counts["error:TooManyRequests"],
            "errors": {k.removeprefix("error:"): v for k, v in counts.items() if k.startswith("error:")},
        }
