"""`incident-chain`: the incident's chain, link by link (a flip that left a broker up but broken,
lookups piling up, VMs buffering and thrashing, monitoring amplifying, a slow RabbitMQ node; the
incident is told in docs/incident.md): was each link observed in a variant, and with what number.

The links are data (LINKS below), each with the reader of its evidence beside it. A reader gets
the variant's Facts (its results.json entry, its journal samples, what the flip is) and answers
(observed, number): observed None means the experiment did not watch that link (no probe, no
step for it), which the report says instead of "no". An experiment turns the section on:

    report:
      - {type: incident-chain}                 # every link it watches
      - {type: incident-chain, links: [11]}    # only the RabbitMQ link

"The flip" is a roll whose settings carry `flip` (default: loadManagerClassName set to the
extensible load manager), compared value by value with the step's own config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Callable, Literal

from pydantic import Field

from chaoslab.spec.base import RunView, Story, register
from chaoslab.stories.flip import metadata_conflicts
from chaoslab.text import fmt

ELM = "org.apache.pulsar.broker.loadbalance.extensions.ExtensibleLoadManagerImpl"
FLIP = {"loadManagerClassName": ELM}
LASTING_SECS = 10   # a broker state held this long is not a restart's transient


def is_flip(settings, flip: dict) -> bool:
    """Do these broker settings make the flip (every key of `flip` set to its value)?"""
    return isinstance(settings, dict) and bool(flip) and all(str(settings.get(k)) == str(v) for k, v in flip.items())


@dataclass
class Facts:
    """One variant as the link readers see it."""
    v: dict
    samples: list[dict]
    pending_limit: float | None = None
    conflicts: dict | None = None        # stories/flip.metadata_conflicts of the variant's kept logs
    flip: dict = field(default_factory=lambda: dict(FLIP))

    def __post_init__(self):
        # per-broker figures only: a probe error written beside the brokers is not a broker
        self.samples = [{**s, "brokers": {b: x for b, x in s["brokers"].items() if isinstance(x, dict)}}
                        if isinstance(s.get("brokers"), dict) else s for s in self.samples]
        steps = self.v.get("steps") or []
        self.rolls = [s for s in steps if s.get("type") == "roll-broker"]
        flipped_params = any(is_flip(p, self.flip) for p in (self.v.get("params") or {}).values())
        # a roll's own config decides; a roll that recorded none (it crashed first) goes by the params
        self.flips = [s for s in self.rolls
                      if (is_flip(s["config"], self.flip) if isinstance(s.get("config"), dict) else flipped_params)]
        self.flipped = {s.get("broker") for s in self.flips}
        self.has_brokers = any(s.get("brokers") for s in self.samples)
        views = (self.v.get("probes") or {}).get("views") or {}
        self.view_seconds = views.get("seconds") or {}
        self.gbb = {b: c.get("green-but-broken", 0) for b, c in self.view_seconds.items() if c.get("green-but-broken")}
        self.last_brokers = (self.samples[-1].get("brokers") or {}) if self.samples else {}


def _broker_metric(s: dict, b: str, name: str):
    return ((((s.get("brokers") or {}).get(b) or {}).get("metrics") or {}).get(name))


def link_1(f: Facts):
    if not f.rolls:
        return None, "no roll in this experiment"
    return bool(f.flips), f"{len(f.flips)} of {len(f.rolls)} brokers rolled with the flip"


def link_2(f: Facts):
    if not f.has_brokers:
        return None, "brokers not probed"
    # shallow-only: the process answers /status.html, Pulsar's health check fails (it stays up);
    # a broker restarting is briefly shallow-only or green-but-broken: 10 s or more counts
    shallow_only = {b: c.get("shallow-only", 0) for b, c in f.view_seconds.items()
                    if c.get("shallow-only", 0) >= LASTING_SECS and b in f.flipped}
    elm_errors = {b: sum(((f.last_brokers.get(b) or {}).get("log_counts") or {}).get(k, 0) for k in
                         ("failed_to_set_role", "failed_to_start_load_manager", "registry_already_closed"))
                  for b in f.flipped}
    seen = any(b in f.flipped and secs >= LASTING_SECS for b, secs in f.gbb.items()) or any(elm_errors.values()) \
        or bool(shallow_only)
    parts = [f"{b} green-but-broken {s} s" + ("" if b in f.flipped else " (not flipped)") for b, s in f.gbb.items()]
    parts += [f"{b} shallow-only {s} s" for b, s in shallow_only.items()]
    parts += [f"{b}: {n} load-manager errors logged" for b, n in elm_errors.items() if n]
    return seen, "; ".join(parts) or "no flipped broker failed"


def link_3(f: Facts):
    if not f.rolls:
        return None, "no"
    rolled_on = [s for s in f.rolls[:-1] if s.get("shallow_ok") and not s.get("functional_ok")]
    lasting = {b: secs for b, secs in f.gbb.items() if secs >= LASTING_SECS}
    went_on = bool(lasting) and len(f.rolls) > 1
    text = (", ".join(f"{s['broker']} passed the shallow wait while Pulsar's check failed" for s in rolled_on)
            or ("a green-but-broken broker (" + ", ".join(f"{b} {secs} s" for b, secs in lasting.items())
                + "), and the roll went on" if went_on else "no"))
    return bool(rolled_on) or went_on, text


def link_4(f: Facts):
    if not f.has_brokers:
        return None, "brokers not probed"
    peak = max((_broker_metric(s, b, "pulsar_broker_lookup_pending_requests") or 0
                for s in f.samples for b in (s.get("brokers") or {})), default=0)
    tmr = max(((s.get("client") or {}).get("too_many_requests") or 0 for s in f.samples), default=0)
    limit = f.pending_limit or 0
    return ((limit and peak >= 0.8 * limit) or tmr > 0,
            f"peak pending lookups {peak:.0f}" + (f" of {limit:.0f}" if limit else "") + f", TooManyRequests {tmr} in a window")


def link_5(f: Facts):
    clients = [s["client"] for s in f.samples if s.get("phase") in ("method", "rollback", "recovery", "after")
               and "publish_ok" in (s.get("client") or {})]
    if not clients:
        return None, "no client workload"
    no_pub = sum(1 for c in clients if c.get("publish_ok", 0) == 0)
    no_lookup = sum(1 for c in clients if c.get("lookups_expected") and c.get("lookup_ok", 1) == 0)
    return (no_pub >= LASTING_SECS or no_lookup >= LASTING_SECS,
            f"{no_pub} s without a completed publish, {no_lookup} s without a completed lookup")


def link_6(f: Facts):
    undone, rbs = f.v.get("undone") or [], f.v.get("rollbacks") or []
    if not (undone or rbs or f.has_brokers):
        return None, "no rollback"
    log_conflicts = max((((s.get("brokers") or {}).get(b) or {}).get("log_counts") or {}).get("metadata_conflict", 0)
                        for s in f.samples[-1:] for b in (s.get("brokers") or {})) if f.has_brokers else 0
    failed_undo = [u["step"] for u in undone if not u.get("ok", True)]
    recovery = [r for r in rbs if r.get("type") == "recover-system-topics" and not r.get("skipped")]
    topics = (f.conflicts or {}).get("topics") or 0
    by = ", ".join(f"{b} {n}" for b, n in ((f.conflicts or {}).get("by_broker") or {}).items())
    return (bool(failed_undo or recovery or topics),
            "; ".join(filter(None, [f"undo failed: {', '.join(failed_undo)}" if failed_undo else "",
                                    f"incident recovery ran ({recovery[0].get('secs')} s)" if recovery else "",
                                    f"metadata conflict: {topics} topics written by two brokers ({by})" if topics else "",
                                    f"BadVersion/conflict lines in broker logs: {log_conflicts}"
                                    if log_conflicts and not topics else ""])) or "no")


def _vm_facts(f: Facts):
    w = f.v.get("workload") or {}
    vms = (f.v.get("probes") or {}).get("vms") or {}
    host = ((f.v.get("probes") or {}).get("host") or {}).get("host_peak") or {}
    return w, vms, host


def link_7(f: Facts):
    w, vms, _ = _vm_facts(f)
    if not vms:
        return None, "no VMs in this experiment"
    limit_mib = max((((x.get("memory_limit_bytes") or 0) / 2**20) for x in (w.get("per_vm") or {}).values()), default=0)
    peak = (f"peak VM memory {vms.get('vm_memory_max_mib')} of {limit_mib:.0f} MiB, peak buffer "
            f"{vms.get('agent_buffer_events_max'):.0f} events; OOM-killed {len(w.get('oom_killed') or [])}")
    if (w.get("buffer") or {}).get("type") == "disk":  # the events sit in files: memory at the cap is page cache
        return False, f"disk buffer: {peak} (the memory at the cap is the buffer files' page cache)"
    return limit_mib > 0 and vms.get("vm_memory_max_mib", 0) >= 0.95 * limit_mib, peak


def link_8(f: Facts):
    w, vms, host = _vm_facts(f)
    if not vms:
        return None, "no VMs in this experiment"
    pgmaj = sum((x.get("pgmajfault") or 0) for x in (w.get("per_vm") or {}).values())
    # thrash: the group's VMs re-read pages from disk, or the host spent a quarter of its time stalled
    return (pgmaj > 1000 or max(host.get("memory_some_avg10") or 0, host.get("io_some_avg10") or 0) > 25,
            f"{pgmaj} major faults, host memory PSI {host.get('memory_some_avg10')}, io PSI {host.get('io_some_avg10')}")


def link_9(f: Facts):
    _, vms, host = _vm_facts(f)
    if not vms:
        return None, "no VMs in this experiment"
    per_hv = (((f.v.get("probes") or {}).get("hypervisors") or {}).get("hypervisors") or {})
    panic = next((m for m in (f.v.get("monitors") or {}).values() if isinstance(m, dict) and "hung_task_secs" in m), {})
    limit = panic.get("hung_task_secs") or 120
    if per_hv:   # per hypervisor: its own tasks, against the hung-task limit (declared when scaled)
        longest = {h: x["d_state_longest_secs"] for h, x in per_hv.items() if x.get("d_state_longest_secs") is not None}
        crashed = sorted(panic.get("crashed") or {})
        if not longest:
            return (True, f"crashed: {', '.join(crashed)}") if crashed else \
                (None, "the hypervisors' tasks could not be read: D state not observed")
        worst = max(longest, key=longest.get)
        return (bool(crashed) or longest[worst] >= limit,
                f"longest D state {longest[worst]:.1f} s in {worst} (hung-task limit {limit:.0f} s"
                + (", declared" if panic.get("declared") else "") + ")"
                + (f"; crashed: {', '.join(crashed)}" if crashed else ""))
    return ((host.get("d_state_longest_secs") or 0) >= 120,
            f"longest D state {host.get('d_state_longest_secs')} s (the kernel's hung-task limit is 120 s)")


def link_10(f: Facts):
    rem = [m for m in (f.v.get("monitors") or {}).values() if isinstance(m, dict) and "rates" in m]
    if not rem:
        return None, "no would-be remediator"
    def rates(m):
        return {k: ((m.get("rates") or {}).get(k) or {}).get("per_minute") for k in ("before", "during", "after")}

    def said(m):
        r = rates(m)
        amp = f", {m['amplification']:.1f}x before" if m.get("amplification") is not None else ""
        return f"{m['name']} {fmt(r['before'], 2)} / {fmt(r['during'], 2)} / {fmt(r['after'], 2)}{amp}"
    first = rem[0]
    r = rates(first)
    number = (f"would-be actions per minute before / during / after the fault: "
              + "; ".join(said(m) for m in rem) + f" ({first['actions']} by {first['name']})")
    if first.get("instrument_caveat"):
        number += f"; {first['instrument_caveat']}"
    worst = max(r["during"] or 0, r["after"] or 0)
    if r["before"] is None:
        return (None if worst else False), number + "; no baseline before the fault"
    return worst > 0 and (r["before"] == 0 or worst / r["before"] >= 2), number


def link_11(f: Facts):
    """Confirm latency while a RabbitMQ node was slow, against the steady state's."""
    rmq = [s for s in f.samples if (s.get("rabbitmq") or {}).get("confirm_p99_ms") is not None]
    if not rmq:
        return None, "not in this experiment"
    steps = f.v.get("steps") or []
    slow = [st for st in steps if st.get("type") == "slow-service" and str(st.get("service", "")).startswith("rabbitmq")]
    base = [s["rabbitmq"]["confirm_p99_ms"] for s in rmq if s.get("phase") == "steady"]
    during = [s["rabbitmq"]["confirm_p99_ms"] for s in rmq if s.get("phase") in ("method", "rollback")]
    base_p = max(base, default=None)
    peak = max(during, default=None)
    if not slow or peak is None:
        return None, "no RabbitMQ node was slowed"
    removed = [st for st in steps if st.get("type") == "remove-rabbitmq-node"]
    seen = base_p is not None and peak > max(3 * base_p, 1000)
    text = (f"confirm p99 peak {peak:.0f} ms while {slow[0].get('service')} was slow "
            f"(steady state: at most {base_p:.0f} ms)" if base_p is not None else f"confirm p99 peak {peak:.0f} ms")
    if removed:
        text += f"; node removed in {removed[0].get('remedy_secs')} s"
    return seen, text


@dataclass(frozen=True)
class Link:
    number: int
    what: str
    read: Callable[[Facts], tuple]


LINKS = [
    Link(1, "upgrade + load-manager change applied broker by broker", link_1),
    Link(2, "a flipped broker's load manager fails while the broker stays up", link_2),
    Link(3, "the roll goes on because the operator's check says healthy", link_3),
    Link(4, "lookups queue up to the limit (pending lookups, TooManyRequests)", link_4),
    Link(5, "topics stop loading: writes or lookups stop", link_5),
    Link(6, "rollback fails / metadata conflict", link_6),
    Link(7, "agents buffer in memory up to the VM's cap", link_7),
    Link(8, "memory pressure: major faults, disk reads, host PSI", link_8),
    Link(9, "tasks stuck in D state", link_9),
    Link(10, "monitoring orders remediations (amplification)", link_10),
    Link(11, "the RabbitMQ fallback slows on one node", link_11),
]


def links(v: dict, samples: list[dict], pending_limit: float | None = None, conflicts: dict | None = None,
          flip: dict | None = None, only: list[int] | None = None) -> list[dict]:
    """Every link (or those in `only`) for one variant: {link, what, observed, number}."""
    f = Facts(v, samples, pending_limit, conflicts, dict(FLIP if flip is None else flip))
    rows = []
    for link in LINKS:
        if only is not None and link.number not in only:
            continue
        observed, number = link.read(f)
        rows.append({"link": link.number, "what": link.what, "observed": observed, "number": number})
    return rows


def _cell(row: dict) -> str:
    if row["observed"] is None:
        return f"not watched ({row['number']})"
    number = str(row["number"])
    if number.lower() in ("no", "yes", ""):
        return "OBSERVED" if row["observed"] else "no"
    return ("OBSERVED: " if row["observed"] else "no: ") + number


def pending_limit(run: RunView) -> float | None:
    """The brokers' lookup limit the lab ran with (the lab-up event's broker settings)."""
    value = (run.event("lab-up").get("broker_config") or {}).get("maxConcurrentLookupRequest")
    try:
        return float(value) if value else None
    except (TypeError, ValueError):
        return None


def conflicts_of(run: RunView, v: dict) -> dict | None:
    """The metadata conflict the variant's kept broker logs show after the method began."""
    log_dir = run.run_dir / "logs" / v["name"]
    if not log_dir.is_dir() or not any(s.get("type") == "roll-broker" for s in v.get("steps") or []):
        return None
    try:
        return metadata_conflicts(log_dir, since=(v.get("kpis") or {}).get("injection_t"))
    except Exception:   # evidence that cannot be read says nothing; the report goes on
        return None


@register("story")
class IncidentChain(Story):
    type: Literal["incident-chain"] = "incident-chain"
    links: list[Annotated[int, Field(ge=1, le=len(LINKS))]] | None = Field(
        None, description="show only these links (default: every link the experiment watches)")
    flip: dict[str, str] = Field(default_factory=lambda: dict(FLIP),
                                 description="the broker settings that make a roll 'the flip' (link 1-3)")

    def blocks(self, run: RunView) -> list[tuple]:
        variants = run.variants
        if not variants:
            return []
        limit = pending_limit(run)
        per = {v["name"]: {r["link"]: r for r in links(v, run.samples(v["name"]), limit, conflicts_of(run, v),
                                                        self.flip, self.links)} for v in variants}
        numbers = [link.number for link in LINKS if self.links is None or link.number in self.links]
        watched = [n for n in numbers if any(per[v["name"]][n]["observed"] is not None for v in variants)]
        if self.links is not None:   # asked for by number: shown even when not watched
            watched = numbers
        what = {link.number: link.what for link in LINKS}
        return [("h2", "The incident's chain, link by link"),
                ("table", ["link", "what", *[v["name"] for v in variants]],
                 [[n, what[n], *[_cell(per[v["name"]][n]) for v in variants]] for n in watched]),
                ("p", "The incident and its chain are told in docs/incident.md. "
                      + ("Links this experiment does not watch are left out." if self.links is None
                         else f"Shown: the links this experiment names ({', '.join(map(str, numbers))}) of the chain's "
                              f"{len(LINKS)}."))]
