"""Vector's demo_logs source: generated log lines at a fixed interval, optionally sequenced."""

from __future__ import annotations

import datetime as dt
import json
import random
import socket

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
PATHS = ("/api/v1/orders", "/api/v1/users", "/healthz", "/static/app.js", "/login", "/api/v1/cart")
STATUSES = (200, 200, 200, 201, 204, 301, 400, 404, 500, 503)


class DemoLogs:
    def __init__(self, source_id: str, fmt: str = "json", sequence: bool = False, seed: int | None = None,
                 lines: tuple[str, ...] = ()):
        self.source_id = source_id
        self.format = fmt
        self.sequence = sequence
        self.host = socket.gethostname()
        self._n = 0
        self._rng = random.Random(seed)
        self.lines = lines


    def _line(self) -> str:
        r = self._rng
        if self.format == "shuffle" and self.lines:
            return r.choice(self.lines)
        now = dt.datetime.now(dt.timezone.utc)
        if self.format == "json":
            return json.dumps({
                "host": f"10.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}",
                "user-identifier": f"user{r.randrange(1000)}",
                "datetime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "method": r.choice(METHODS), "request": r.choice(PATHS), "protocol": "HTTP/1.1",
                "status": str(r.choice(STATUSES)), "bytes": r.randrange(100, 50000),
                "referer": "https://example.com/",
            })
        return (f"{r.randrange(256)}.{r.randrange(256)}.0.1 - user{r.randrange(1000)} "
                f"[{now.strftime('%d/%b/%Y:%H:%M:%S +0000')}] \"{r.choice(METHODS)} {r.choice(PATHS)} HTTP/1.1\" "
                f"{r.choice(STATUSES)} {r.randrange(100, 50000)}")

    def next_event(self) -> bytes:
        """One event, encoded as the pulsar sink's json codec would send it."""
        line = self._line()
        if self.sequence:
            line = f"{self._n} {line}"
        self._n += 1
        return json.dumps({
            "message": line, "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(),
            "host": self.host, "source_type": "demo_logs", "service": "vector",
        }).encode()
