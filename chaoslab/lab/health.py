"""Broker health, two ways, because experiments compare them.

- shallow: what an operator's probe sees — GET /status.html answers 200 (Pulsar's Helm chart
  probes exactly this). The incident's upgraded broker passed a check like this while it could
  serve nothing.
- functional: the broker works — GET /admin/v2/brokers/health?topicVersion=V2, Pulsar's own
  health check, which creates a producer and a reader on the heartbeat topic of the namespace
  `pulsar/<cluster>/<broker>` (a namespace that broker owns), sends a message and reads it back.
  It answers 200 only after that round trip; it fails when the broker cannot load the topic.

Compose healthchecks use the functional check (`pulsar-run health`; with official images the same
endpoints by curl, lab/flavour.py); `chaoslab status` shows both.
"""

from __future__ import annotations

from dataclasses import dataclass

from chaoslab import http


@dataclass
class Probe:
    ok: bool
    detail: str
    seconds: float
    status: int = 0             # HTTP status, 0 when no answer


def _probe(url: str, timeout: float) -> Probe:
    resp = http.get(url, timeout)
    if resp.status == 200:
        return Probe(True, resp.text.strip()[:200] or "ok", resp.seconds, 200)
    return Probe(False, resp.describe()[:200], resp.seconds, resp.status)


def shallow(admin_url: str, timeout: float = 5) -> Probe:
    return _probe(f"{admin_url}/status.html", timeout)


def functional(admin_url: str, timeout: float = 30) -> Probe:
    return _probe(f"{admin_url}/admin/v2/brokers/health?topicVersion=V2", timeout)
