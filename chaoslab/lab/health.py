"""Broker health, two ways, because experiments compare them.

- shallow: what an operator's probe sees — GET /status.html answers 200 (Pulsar's Helm chart
  probes exactly this). The incident's upgraded broker passed a check like this while it could
  serve nothing.
- functional: the broker works — GET /admin/v2/brokers/health?topicVersion=V2, Pulsar's own
  health check, which creates a producer and a reader on the heartbeat topic of the namespace
  `pulsar/<cluster>/<broker>` (a namespace that broker owns), sends a message and reads it back.
  It answers 200 only after that round trip; it fails when the broker cannot load the topic.

Compose healthchecks use the functional check (pulsar-run health); `chaoslab status` shows both.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass


@dataclass
class Probe:
    ok: bool
    detail: str
    seconds: float


def _get(url: str, timeout: float) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace") if exc.fp else ""
        return exc.code, body
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        return 0, str(reason)


def _probe(url: str, timeout: float) -> Probe:
    started = time.monotonic()
    status, body = _get(url, timeout)
    took = time.monotonic() - started
    if status == 200:
        return Probe(True, body.strip()[:200] or "ok", took)
    return Probe(False, f"HTTP {status}: {body.strip()[:200]}" if status else body[:200], took)


def shallow(admin_url: str, timeout: float = 5) -> Probe:
    return _probe(f"{admin_url}/status.html", timeout)


def functional(admin_url: str, timeout: float = 30) -> Probe:
    return _probe(f"{admin_url}/admin/v2/brokers/health?topicVersion=V2", timeout)


def get_json(url: str, timeout: float = 10):
    status, body = _get(url, timeout)
    if status != 200:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.strip()
