"""Observers: background threads that keep the latest real measurements of the lab.

- per broker, every second: /metrics (Pulsar's names), the shallow check (/status.html);
- per broker, every few seconds: the functional check, version, loadManagerClassName, owned
  bundles; notable log lines counted (the incident's messages);
- cluster, every few seconds: existence of the extensible load manager's system topics, and a
  rotating sample of workload topics looked up to see whether some broker owns them;
- the proxy's /metrics.
The runner's ticker reads `snapshot()` once a second and writes it into the journal.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import urllib.error
import urllib.request

from chaoslab.lab import health
from chaoslab.lab.cluster import Lab
from chaoslab.observe.pulsar_metrics import BROKER_METRICS, PROXY_METRICS, scrape

LOG_PATTERNS = {
    "failed_to_wait_for_owner": re.compile(r"failed to wait for owner", re.I),
    "owner_is_inactive": re.compile(r"is inactive", re.I),
    "too_many_pending_lookups": re.compile(r"too many pending lookup", re.I),
    "registry_already_closed": re.compile(r"registry already closed", re.I),
    "failed_to_start_load_manager": re.compile(r"(failed to start|error starting).{0,80}load ?manager", re.I),
    "failed_to_acquire_ownership": re.compile(r"Failed to acquire ownership", re.I),
    "metadata_conflict": re.compile(r"BadVersion|ConflictException", re.I),
    "failed_to_set_role": re.compile(r"failed to set the role", re.I),
}

SYSTEM_TOPICS = (
    "non-persistent://pulsar/system/loadbalancer-broker-load-data",
    "non-persistent://pulsar/system/loadbalancer-top-bundles-load-data",
    "persistent://pulsar/system/loadbalancer-service-unit-state",
)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _status(url: str, timeout: float) -> int:
    """HTTP status without following redirects (a 307 names the owner broker: it exists)."""
    try:
        with _opener.open(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception:
        return 0


def owner_of(url: str, fqn: str, timeout: float = 5) -> str | None:
    """The broker that owns a topic's bundle, from a lookup that is not followed (a 307 names it)."""
    try:
        with _opener.open(f"{url}/lookup/v2/topic/{topic_path(fqn)}", timeout=timeout) as resp:
            data = json.loads(resp.read().decode() or "{}")
            owner = data.get("brokerUrl") or data.get("httpUrl")
    except urllib.error.HTTPError as exc:
        owner = exc.headers.get("Location") if exc.code in (301, 302, 307) else None
    except Exception:
        owner = None
    if not owner:
        return None
    host = owner.split("://", 1)[-1].split("/", 1)[0]
    return host.split(":", 1)[0]


def topic_path(fqn: str) -> str:
    domain, rest = fqn.split("://", 1)
    return f"{domain}/{rest}"


class Observers:
    def __init__(self, lab: Lab, workload_topics: list[str] | None = None,
                 heavy_every: float = 5.0, lookup_sample: int = 10):
        self.lab = lab
        self.topics = list(workload_topics or [])
        self.heavy_every = heavy_every
        self.lookup_sample = lookup_sample
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._latest: dict = {"brokers": {}, "proxy": {}, "system_topics": {}, "ownership": {}}
        self._log_totals: dict[str, dict[str, int]] = {}
        self._log_since: dict[str, float] = {}

    def _set(self, *path_and_value) -> None:
        *path, key, value = path_and_value
        with self._lock:
            node = self._latest
            for p in path:
                node = node.setdefault(p, {})
            node[key] = value

    def snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._latest)

    def start(self) -> None:
        for n in range(1, self.lab.settings.brokers + 1):
            self._spawn(self._broker_fast, n)
            self._spawn(self._broker_slow, n)
        self._spawn(self._cluster)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=self._guard, args=(target, *args), daemon=True, name=target.__name__)
        t.start()
        self._threads.append(t)

    def _guard(self, target, *args) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                target(*args)
            except Exception as exc:  # an observer must never take the run down
                self._set("errors", target.__name__, f"{type(exc).__name__}: {exc}"[:200])
            period = 1.0 if target is self._broker_fast else self.heavy_every
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    # -- per broker ------------------------------------------------------------------------------
    def _broker_fast(self, n: int) -> None:
        name, url = f"broker-{n}", self.lab.broker_admin_url(n)
        metrics = scrape(f"{url}/metrics/", BROKER_METRICS)
        shallow = health.shallow(url, timeout=2)
        self._set("brokers", name, "metrics", metrics)
        self._set("brokers", name, "metrics_ok", metrics is not None)
        self._set("brokers", name, "shallow_ok", shallow.ok)

    def _broker_slow(self, n: int) -> None:
        name, url = f"broker-{n}", self.lab.broker_admin_url(n)
        functional = health.functional(url, timeout=10)
        self._set("brokers", name, "functional_ok", functional.ok)
        self._set("brokers", name, "functional_detail", None if functional.ok else functional.detail[:160])
        version = health.get_json(f"{url}/admin/v2/brokers/version", timeout=5)
        self._set("brokers", name, "version", version if isinstance(version, str) else None)
        runtime = health.get_json(f"{url}/admin/v2/brokers/configuration/runtime", timeout=5)
        lm = runtime.get("loadManagerClassName") if isinstance(runtime, dict) else None
        self._set("brokers", name, "loadManagerClassName", lm)
        owned = health.get_json(f"{url}/admin/v2/brokers/{self.lab.settings.cluster}/{name}:8080/ownedNamespaces", timeout=5)
        self._set("brokers", name, "owned_bundles", len(owned) if isinstance(owned, dict) else None)
        self._set("brokers", name, "log_counts", self._count_logs(name))

    def _count_logs(self, service: str) -> dict[str, int]:
        totals = self._log_totals.setdefault(service, {k: 0 for k in LOG_PATTERNS})
        containers = self.lab.containers(service)
        if not containers:
            return dict(totals)
        container = containers[0]
        key = container.id
        since = self._log_since.get(key, 0)
        until = time.time()
        try:
            text = container.logs(since=int(since) if since else None, until=int(until)).decode(errors="replace") \
                if since else container.logs(until=int(until)).decode(errors="replace")
        except Exception:
            return dict(totals)
        self._log_since[key] = int(until)
        for line in text.splitlines():
            for pattern_name, pattern in LOG_PATTERNS.items():
                if pattern.search(line):
                    totals[pattern_name] += 1
        return dict(totals)

    # -- cluster ---------------------------------------------------------------------------------
    def _any_broker_url(self) -> str:
        brokers = self.snapshot().get("brokers", {})
        for n in range(1, self.lab.settings.brokers + 1):
            if brokers.get(f"broker-{n}", {}).get("shallow_ok"):
                return self.lab.broker_admin_url(n)
        return self.lab.broker_admin_url(1)

    def _cluster(self) -> None:
        url = self._any_broker_url()
        # Listing (not stats) so that looking never creates a topic: a non-persistent topic is
        # created on demand when something asks for it.
        listed: dict[str, list | None] = {}
        for domain in ("persistent", "non-persistent"):
            got = health.get_json(f"{url}/admin/v2/{domain}/pulsar/system?includeSystemTopic=true", timeout=5)
            listed[domain] = got if isinstance(got, list) else None
        topics = {}
        for fqn in SYSTEM_TOPICS:
            names = listed[fqn.split("://")[0]]
            topics[fqn] = None if names is None else any(n == fqn or n.startswith(fqn + "-partition-") for n in names)
        self._set("system_topics", "exists", topics)
        self._set("system_topics", "owner", {t: owner_of(url, t) for t, exists in topics.items() if exists})
        proxy = scrape(f"{self.lab.proxy_admin_url}/metrics/", PROXY_METRICS)
        self._set("proxy", "metrics", proxy)
        if self.topics:
            start = int(time.time() / self.heavy_every) * self.lookup_sample
            sample = [self.topics[(start + i) % len(self.topics)] for i in range(min(self.lookup_sample, len(self.topics)))]
            unowned = [t for t in sample
                       if _status(f"{url}/lookup/v2/topic/{topic_path(t)}", timeout=5) not in (200, 307)]
            self._set("ownership", "sampled", len(sample))
            self._set("ownership", "unowned", len(unowned))
            self._set("ownership", "unowned_sample", unowned[:3])
