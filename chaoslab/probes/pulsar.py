"""Probes of the Pulsar cluster.

- `pulsar-brokers` (key `brokers`): per broker, every period: /metrics (Pulsar's names) and the
  operator's shallow check (/status.html); every `slow_period_secs`: Pulsar's health check,
  version, loadManagerClassName, owned bundles, notable log lines (the incident's messages).
- `pulsar-cluster` (key `cluster`): the extensible load manager's system topics (exist? owner?),
  the proxy's /metrics, and a rotating sample of workload topics looked up (owned or not).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, ClassVar, Literal

from pydantic import Field, PrivateAttr

from chaoslab import http
from chaoslab.lab import health
from chaoslab.observe.metrics import scrape
from chaoslab.probes.figures import ClusterFigures, BrokersFigures
from chaoslab.pulsar_lookup import base_topic, lookup, lookup_outcome, owner_host, owner_of
from chaoslab.spec.base import Panel, Probe, StatusView, register, status_view
from chaoslab.text import fmt, words

BROKER_METRICS = (
    "pulsar_broker_lookup_pending_requests",
    "pulsar_broker_topic_load_pending_requests",
    "pulsar_broker_lookup_answers_total",
    "pulsar_broker_lookup_failures_total",
    "pulsar_broker_lookup_redirects_total",
    "pulsar_topic_load_failed_count",
    "pulsar_broker_topics_count",
    "pulsar_producers_count",
    "pulsar_subscriptions_count",
    "pulsar_sunit_state_chn_owned_su_total",
    "pulsar_sunit_state_chn_owner_lookup_total",
    "pulsar_sunit_state_chn_inactive_broker_cleanup_ops_total",
    "pulsar_lb_unload_broker_breakdown_total",
    "pulsar_lb_assign_broker_breakdown_total",
)
PROXY_METRICS = (
    "pulsar_proxy_active_connections",
    "pulsar_proxy_new_connections_total",
    "pulsar_proxy_rejected_connections_total",
    "pulsar_proxy_lookup_requests_total",
    "pulsar_proxy_rejected_lookup_requests_total",
    "pulsar_proxy_partitions_metadata_requests_total",
    "pulsar_proxy_rejected_partitions_metadata_requests_total",
)
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


@register("probe")
class PulsarBrokers(Probe):
    type: Literal["pulsar-brokers"] = "pulsar-brokers"
    slow_period_secs: Annotated[float, Field(ge=1, le=600)] = 5.0
    profile: Literal["full", "metrics-only"] = Field(
        "full", description="metrics-only: nothing but /metrics (the lab's smallest footprint on the brokers)")
    key: ClassVar[str] = "brokers"
    figures: ClassVar = BrokersFigures
    _owned: dict = PrivateAttr(default_factory=dict)   # broker -> (time, set of bundles it says it owns)
    _log_totals: dict = PrivateAttr(default_factory=dict)
    _log_since: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def panels(cls) -> list[Panel]:
        def per_broker(field, metric=None):
            def series(samples):
                # through the figures model: a probe error the loop wrote beside the brokers is not a broker
                per = [{b: f.model_dump() for b, f in BrokersFigures.model_validate(s.get(cls.key) or {}).brokers.items()}
                       for s in samples]
                names = sorted({b for x in per for b in x})
                return {b: [(x.get(b) or {}).get(field) if metric is None else ((x.get(b) or {}).get("metrics") or {}).get(metric)
                            for x in per] for b in names}
            return series
        return [Panel("pulsar_broker_lookup_pending_requests per broker", "pending lookups",
                      per_broker(None, "pulsar_broker_lookup_pending_requests")),
                Panel("owned bundles per broker", "bundles", per_broker("owned_bundles"))]

    def start(self, ctx) -> None:
        for n in range(1, ctx.settings.brokers + 1):
            self.loop(ctx, self._fast, self.period_secs, n)
            if self.profile == "full":
                self.loop(ctx, self._slow, self.slow_period_secs, n)
                # ownership on its own loop: a health check that takes 10 s during a roll must not
                # leave the split comparison without two fresh answers (unknown seconds)
                self.loop(ctx, self._ownership, self.slow_period_secs, n)

    def _fast(self, ctx, n: int) -> None:
        url = ctx.lab.broker_admin_url(n)
        metrics = scrape(f"{url}/metrics/", BROKER_METRICS)
        self.update({"metrics": metrics, "metrics_ok": metrics is not None}, under=f"broker-{n}")
        if self.profile == "full":
            self.update({"shallow_ok": health.shallow(url, timeout=2).ok}, under=f"broker-{n}")

    def _slow(self, ctx, n: int) -> None:
        name, url = f"broker-{n}", ctx.lab.broker_admin_url(n)
        functional = health.functional(url, timeout=10)
        version = http.get_json(f"{url}/admin/v2/brokers/version", timeout=5)
        runtime = http.get_json(f"{url}/admin/v2/brokers/configuration/runtime", timeout=5)
        self.update({"functional_ok": functional.ok,
                     "functional_detail": None if functional.ok else functional.detail[:160],
                     "version": version if isinstance(version, str) else None,
                     "loadManagerClassName": runtime.get("loadManagerClassName") if isinstance(runtime, dict) else None,
                     **self._count_logs(ctx, name)}, under=name)

    def _ownership(self, ctx, n: int) -> None:
        """What broker-n says it owns (its own ownedNamespaces), for the split comparison."""
        name, url = f"broker-{n}", ctx.lab.broker_admin_url(n)
        owned = http.get_json(f"{url}/admin/v2/brokers/{ctx.settings.cluster}/{name}:8080/ownedNamespaces", timeout=5)
        # a failed answer keeps the last one: it ages out of the comparison after its freshness
        # window (owned_overlap / owned_answered), like any answer (one broker's answers failed
        # for 5 s while another rolled, and split-ownership went unknown on a harmless roll)
        if isinstance(owned, dict):
            with self._lock:
                self._owned[name] = (time.time(), set(owned))
        self.update({"owned_bundles": len(owned) if isinstance(owned, dict) else None}, under=name)

    def owned_overlap(self, fresh_secs: float = 15) -> list[dict]:
        """Bundles that two brokers each say they own, from their own ownedNamespaces answers
        taken within `fresh_secs` of each other (split ownership)."""
        with self._lock:
            now = time.time()
            owned = {b: bundles for b, (t, bundles) in self._owned.items() if now - t <= fresh_secs}
        by_bundle: dict[str, list[str]] = {}
        for b, bundles in sorted(owned.items()):
            for bundle in bundles:
                by_bundle.setdefault(bundle, []).append(b)
        return [{"bundle": k, "brokers": v} for k, v in sorted(by_bundle.items()) if len(v) > 1]

    def owned_answered(self, fresh_secs: float = 15) -> int:
        """How many brokers answered ownedNamespaces within `fresh_secs` (a split needs two)."""
        with self._lock:
            now = time.time()
            return sum(now - t <= fresh_secs for t, _ in self._owned.values())

    def _count_logs(self, ctx, service: str) -> dict:
        """{"log_counts": totals since the variant began, "log_new": counted in this call}
        (log_new is absent when the log could not be read: no evidence about this period)."""
        totals = self._log_totals.setdefault(service, {k: 0 for k in LOG_PATTERNS})
        state = ctx.lab.service_state(service)
        read = ctx.lab.read_log(service, since=self._log_since.get(state.incarnation)) if state.incarnation else None
        # replaced between the two calls: this read is another incarnation's, counted from its start next time
        if read is None or read.incarnation != state.incarnation:
            return {"log_counts": dict(totals), "log_new": None, "log_new_t": None}
        self._log_since[state.incarnation] = read.until
        new = {k: 0 for k in LOG_PATTERNS}
        for line in read.text.splitlines():
            for pattern_name, pattern in LOG_PATTERNS.items():
                if pattern.search(line):
                    new[pattern_name] += 1
        for k, n in new.items():
            totals[k] += n
        return {"log_counts": dict(totals), "log_new": new, "log_new_t": round(time.time(), 3)}

    def summary(self) -> dict:
        """Per broker, the notable log lines counted over the variant (e.g. lookups rejected for
        too many pending requests: a limit reached even when the hypothesis held)."""
        with self._lock:
            return {"log_counts": {b: dict(c) for b, c in self._log_totals.items()}}

    @classmethod
    def notes(cls, summary: dict) -> list[str]:
        """Lookups the brokers rejected for too many pending ones: said beside the verdict even
        when the hypothesis held."""
        counts = (summary or {}).get("log_counts") or {}
        hit = {b: (c or {}).get("too_many_pending_lookups", 0) for b, c in sorted(counts.items())}
        hit = {b: n for b, n in hit.items() if n}
        if not hit:
            return []
        return [f"limit reached: the brokers rejected {sum(hit.values())} lookups for too many pending requests "
                f"({', '.join(f'{b} {n}' for b, n in hit.items())}); the clients retried them"]

    @classmethod
    def status(cls, figures: dict) -> str:
        def view(v):
            return "?" if v is None else "ok" if v else "FAIL"
        brokers = BrokersFigures.model_validate(figures or {}).brokers
        if not brokers:
            return ""
        return "  ".join(f"{n}:{view(b.shallow_ok)}/{view(b.functional_ok)}" for n, b in sorted(brokers.items())) \
            + "  (shallow/functional)"

    @classmethod
    def report_blocks(cls, summary, samples, events, variant, run_dir) -> list[tuple]:
        """The brokers at the end of the variant, with the peak pending lookups over it."""
        last = next((s for s in reversed(samples) if s.get(cls.key)), None)
        if not last:
            return []
        peak: dict[str, float] = {}
        for s in samples:
            for name, br in BrokersFigures.model_validate(s.get(cls.key) or {}).brokers.items():
                p = br.metric("pulsar_broker_lookup_pending_requests")
                if p is not None:
                    peak[name] = max(peak.get(name, 0), p)
        rows = []
        for name, br in sorted(BrokersFigures.model_validate(last[cls.key]).brokers.items()):
            rows.append([name, br.version or "-", words(br.loadManagerClassName or "-"),
                         words(br.shallow_ok), words(br.functional_ok), fmt(br.owned_bundles),
                         fmt(peak.get(name), 0), fmt(br.metric("pulsar_broker_lookup_failures_total"), 0),
                         words({k: c for k, c in br.log_counts.items() if c}) or "-"])
        return [("h3", "Brokers at the end (peak pending lookups over the variant)"),
                ("table", ["broker", "version", "load manager", "shallow", "functional", "owned bundles",
                           "peak pending lookups", "lookup failures", "notable log lines"], rows)]


@register("probe")
class PulsarCluster(Probe):
    type: Literal["pulsar-cluster"] = "pulsar-cluster"
    period_secs: Annotated[float, Field(ge=0.5, le=600)] = 5.0
    lookup_sample: Annotated[int, Field(ge=0, le=1000, description="workload topics looked up per period")] = 10
    ask_every_broker: bool = Field(False, description="also compare what every broker says it owns (its own "
                                                      "ownedNamespaces): a bundle two brokers own is a split")
    key: ClassVar[str] = "cluster"
    figures: ClassVar = ClusterFigures
    _owners: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def panels(cls) -> list[Panel]:
        def system_topics(samples):
            names = sorted({t for s in samples for t in (((s.get("cluster") or {}).get("system_topics") or {}).get("exists") or {})})
            out = {}
            for i, t in enumerate(names):
                vals = [(((s.get("cluster") or {}).get("system_topics") or {}).get("exists") or {}).get(t) for s in samples]
                out[t.split("/")[-1]] = [None if v is None else int(v) + i * 0.04 for v in vals]
            return out

        def unowned(samples):
            def count(s):
                raw = s.get(cls.key)
                own = ClusterFigures.model_validate(raw).ownership if isinstance(raw, dict) else None
                return own.unowned if own else None
            return {"unowned of sampled": [count(s) for s in samples]}
        return [Panel("extensible load manager system topics (1 = exists)", "exists", system_topics, (-0.2, 1.3)),
                Panel("sampled workload topics without an owner", "topics", unowned)]

    def _broker_urls(self, ctx) -> list[str]:
        """Every broker's admin URL, those whose shallow check passed last first."""
        brokers = (ctx.probe("brokers").latest() if ctx.probe("brokers") else {})
        ns = range(1, ctx.settings.brokers + 1)
        ordered = sorted(ns, key=lambda n: not brokers.get(f"broker-{n}", {}).get("shallow_ok"))
        return [ctx.lab.broker_admin_url(n) for n in ordered]

    def _any_broker_url(self, ctx) -> str:
        return self._broker_urls(ctx)[0]

    def collect(self, ctx) -> dict:
        url = self._any_broker_url(ctx)
        # Listing (not stats) so that looking never creates a topic: a non-persistent topic is
        # created on demand when something asks for it.
        listed: dict[str, list | None] = {}
        for domain in ("persistent", "non-persistent"):
            got = http.get_json(f"{url}/admin/v2/{domain}/pulsar/system?includeSystemTopic=true", timeout=5)
            listed[domain] = got if isinstance(got, list) else None
        exists = {}
        for fqn in SYSTEM_TOPICS:
            names = listed[fqn.split("://")[0]]
            exists[fqn] = None if names is None else any(n == fqn or n.startswith(fqn + "-partition-") for n in names)
        present = [t for t, e in exists.items() if e]
        with ThreadPoolExecutor(max_workers=max(1, len(present))) as pool:
            owners = dict(zip(present, pool.map(lambda t: owner_of(url, t), present)))
        out = {"system_topics": {"exists": exists, "owner": owners},
               "proxy": {"metrics": scrape(f"{ctx.lab.proxy_admin_url}/metrics/", PROXY_METRICS)}}
        if self.ask_every_broker and ctx.probe("brokers") is not None:
            out["split"] = ctx.probe("brokers").owned_overlap()
            out["split_brokers_answered"] = ctx.probe("brokers").owned_answered()
        topics = ctx.workload.sample_topics() if hasattr(ctx.workload, "sample_topics") else []
        if topics and self.lookup_sample:
            start = int(time.time() / self.period_secs) * self.lookup_sample
            sample = [topics[(start + i) % len(topics)] for i in range(min(self.lookup_sample, len(topics)))]
            outcomes: dict[str, list] = {"owned": [], "unowned": [], "rejected": [], "no-answer": []}
            # asked side by side: one hanging lookup must not hold the others (and the probe) back
            def ask(at):
                with ThreadPoolExecutor(max_workers=min(5, len(sample))) as pool:
                    return list(pool.map(lambda t: lookup(at, t), sample))
            answers, asked, passed_over = ask(url), url, None
            if all(lookup_outcome(r) == "no-answer" and r.error != "timeout" for r in answers):
                # the broker asked was not there at all (connections refused or reset: the one being
                # restarted, whose last shallow check still passed): ask the next broker once, and
                # the sample says so. A broker that is there but does not answer (timeouts: a hang)
                # is not passed over: that is what lookup-rejections is for
                other = next((u for u in self._broker_urls(ctx) if u != url), None)
                if other is not None:
                    answers, asked, passed_over = ask(other), other, url
            for t, resp in zip(sample, answers):
                kind = lookup_outcome(resp)
                outcomes[kind].append({"topic": t, "answer": resp.describe()[:160]} if kind != "owned" else t)
                if kind == "owned":
                    with self._lock:
                        self._owners[base_topic(t)] = owner_host(resp)
            out["ownership"] = {"sampled": len(sample), "asked": asked, "passed_over": passed_over,
                                "unowned": len(outcomes["unowned"]), "rejected": len(outcomes["rejected"]),
                                "no_answer": len(outcomes["no-answer"]),
                                "failed_sample": (outcomes["unowned"] + outcomes["rejected"] + outcomes["no-answer"])[:3]}
        return out

    def max_staleness(self) -> float:
        # one collection asks listings (5 s), owners and lookups side by side (5 s each; a second
        # broker when the first was not there), the proxy (3 s)
        return 2 * self.period_secs + 20.0

    def owners(self) -> dict[str, str]:
        """Last known owner (broker host) of each workload topic looked up so far."""
        with self._lock:
            return dict(self._owners)

    @classmethod
    def report_blocks(cls, summary, samples, events, variant, run_dir) -> list[tuple]:
        """The load manager's system topics at the end of the variant: there or not, and their owner."""
        last = next((s for s in reversed(samples) if s.get(cls.key)), None)
        if not last:
            return []
        st = ClusterFigures.model_validate(last[cls.key]).system_topics or {}
        if not st.get("exists"):
            return []
        owners = st.get("owner") or {}
        return [("p", "System topics at the end: " + "; ".join(
            f"{k.split('/')[-1]} {'exists' if x else 'absent' if x is False else 'unknown'}"
            + (f" (owner {owners.get(k)})" if owners.get(k) else "")
            for k, x in st["exists"].items()))]


# -- `chaoslab status`: the Pulsar cluster's roles -------------------------------------------------
@status_view("brokers")
def broker_table(brokers: list) -> StatusView:
    rows = []
    for b in brokers or []:
        lm = (b["loadManagerClassName"] or "-").rsplit(".", 1)[-1]
        rows.append([b["name"], b["container"] or "-", b["version"] or "-", lm,
                     "yes" if b["healthy"] else f"NO {b.get('health_detail') or b['state']}"[:60],
                     "yes" if b["shallow_healthy"] else "no", str(b["owned_bundles"] if b["owned_bundles"] is not None else "-")])
    return StatusView(title="Pulsar brokers",
                      columns=["broker", "container", "version", "loadManagerClassName", "healthy", "shallow", "bundles"],
                      rows=rows, healthy=all(b["healthy"] for b in brokers or []))


@status_view("proxy")
def proxy_line(p: dict) -> StatusView:
    return StatusView(lines=[f"proxy     {p['state']:10} {p['service_url']}  admin {p['admin_url']}"])


@status_view("zookeeper")
def zookeeper_line(z: dict) -> StatusView:
    return StatusView(lines=[f"zookeeper {z['state']:10}"])


@status_view("bookies")
def bookies_line(bookies: list) -> StatusView:
    return StatusView(lines=["bookies   " + ", ".join(f"{b['name']} {b['state']}" for b in bookies or [])])
