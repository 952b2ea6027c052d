"""The incident's chain, link by link (LINKS below: a flip that left a broker up but broken,
lookups piling up, VMs buffering and thrashing, monitoring amplifying, a slow RabbitMQ node):
was it observed in this variant, and with what number. Read from the run folder alone (results and journal samples). A link the
experiment did not watch (no probe for it) says so instead of "no"."""

from __future__ import annotations

LINKS = [
    (1, "upgrade + load-manager change applied broker by broker"),
    (2, "a flipped broker's load manager fails while the broker stays up"),
    (3, "the roll goes on because the operator's check says healthy"),
    (4, "lookups queue up to the limit (pending lookups, TooManyRequests)"),
    (5, "topics stop loading: writes or lookups stop"),
    (6, "rollback fails / metadata conflict"),
    (7, "agents buffer in memory up to the VM's cap"),
    (8, "memory pressure: major faults, disk reads, host PSI"),
    (9, "tasks stuck in D state"),
    (10, "monitoring orders remediations (amplification)"),
    (11, "the RabbitMQ fallback slows on one node"),
]
ELM = "ExtensibleLoadManagerImpl"
LASTING_SECS = 10   # a broker state held this long is not a restart's transient


def _row(n, seen, number):
    return {"link": n, "what": dict(LINKS)[n], "observed": seen, "number": number}


def links(v: dict, samples: list[dict], pending_limit: float | None = None, conflicts: dict | None = None) -> list[dict]:
    """`conflicts`: the metadata conflict the brokers logged (report/flip.metadata_conflicts)."""
    rows = []
    steps = v.get("steps") or []
    rolls = [s for s in steps if s.get("type") == "roll-broker"]
    flips = [s for s in rolls if ELM in str(s.get("config") or "") or ELM in str(v.get("params") or "")]
    has_brokers = any(s.get("brokers") for s in samples)
    # 1
    rows.append(_row(1, bool(flips) if rolls else None,
                     f"{len(flips)} of {len(rolls)} brokers rolled with the flip" if rolls else "no roll in this experiment"))
    # 2: on a broker rolled with the flip
    flipped = {s["broker"] for s in flips}
    views = (v.get("probes") or {}).get("views") or {}
    gbb = {b: c.get("green-but-broken", 0) for b, c in (views.get("seconds") or {}).items() if c.get("green-but-broken")}
    # shallow-only: the process answers /status.html, Pulsar's health check fails (it stays up)
    # (a broker restarting is briefly shallow-only or green-but-broken: 10 s or more counts)
    shallow_only = {b: c.get("shallow-only", 0) for b, c in (views.get("seconds") or {}).items()
                    if c.get("shallow-only", 0) >= LASTING_SECS and b in {s["broker"] for s in flips}}
    last = (samples[-1].get("brokers") or {}) if samples else {}
    elm_errors = {b: sum(((last.get(b) or {}).get("log_counts") or {}).get(k, 0) for k in
                         ("failed_to_set_role", "failed_to_start_load_manager", "registry_already_closed")) for b in flipped}
    if not has_brokers:
        rows.append(_row(2, None, "brokers not probed"))
    else:
        seen = any(b in flipped and secs >= LASTING_SECS for b, secs in gbb.items()) or any(elm_errors.values()) \
            or bool(shallow_only)
        parts = [f"{b} green-but-broken {s} s" + ("" if b in flipped else " (not flipped)") for b, s in gbb.items()]
        parts += [f"{b} shallow-only {s} s" for b, s in shallow_only.items()]
        parts += [f"{b}: {n} load-manager errors logged" for b, n in elm_errors.items() if n]
        rows.append(_row(2, seen, "; ".join(parts) or "no flipped broker failed"))
    # 3
    rolled_on = [s for i, s in enumerate(rolls[:-1]) if s.get("shallow_ok") and not s.get("functional_ok")]
    lasting_gbb = {b: secs for b, secs in gbb.items() if secs >= LASTING_SECS}
    rows.append(_row(3, bool(rolled_on) or (bool(lasting_gbb) and len(rolls) > 1) if rolls else None,
                     ", ".join(f"{s['broker']} passed the shallow wait while Pulsar's check failed" for s in rolled_on)
                     or ("a green-but-broken broker (" + ", ".join(f"{b} {secs} s" for b, secs in lasting_gbb.items())
                         + "), and the roll went on" if lasting_gbb and len(rolls) > 1 else "no")))
    # 4
    peak = max(((((s.get("brokers") or {}).get(b) or {}).get("metrics") or {}).get("pulsar_broker_lookup_pending_requests") or 0
                for s in samples for b in (s.get("brokers") or {})), default=0) if has_brokers else None
    tmr = max(((s.get("client") or {}).get("too_many_requests") or 0 for s in samples), default=0)
    if peak is None:
        rows.append(_row(4, None, "brokers not probed"))
    else:
        limit = pending_limit or 0
        rows.append(_row(4, (limit and peak >= 0.8 * limit) or tmr > 0,
                         f"peak pending lookups {peak:.0f}" + (f" of {limit:.0f}" if limit else "") + f", TooManyRequests {tmr} in a window"))
    # 5
    clients = [s["client"] for s in samples if s.get("phase") in ("method", "rollback", "recovery", "after")
               and "publish_ok" in (s.get("client") or {})]
    if not clients:
        rows.append(_row(5, None, "no client workload"))
    else:
        no_pub = sum(1 for c in clients if c.get("publish_ok", 0) == 0)
        no_lookup = sum(1 for c in clients if c.get("lookups_expected") and c.get("lookup_ok", 1) == 0)
        rows.append(_row(5, no_pub >= LASTING_SECS or no_lookup >= LASTING_SECS,
                         f"{no_pub} s without a completed publish, {no_lookup} s without a completed lookup"))
    # 6
    undone, rbs = v.get("undone") or [], v.get("rollbacks") or []
    log_conflicts = max((((s.get("brokers") or {}).get(b) or {}).get("log_counts") or {}).get("metadata_conflict", 0)
                    for s in samples[-1:] for b in (s.get("brokers") or {})) if has_brokers else 0
    failed_undo = [u["step"] for u in undone if not u.get("ok", True)]
    recovery = [r for r in rbs if r.get("type") == "recover-system-topics" and not r.get("skipped")]
    if not (undone or rbs or has_brokers):
        rows.append(_row(6, None, "no rollback"))
    else:
        topics = (conflicts or {}).get("topics") or 0
        by = ", ".join(f"{b} {n}" for b, n in ((conflicts or {}).get("by_broker") or {}).items())
        rows.append(_row(6, bool(failed_undo or recovery or topics),
                         "; ".join(filter(None, [f"undo failed: {', '.join(failed_undo)}" if failed_undo else "",
                                                 f"incident recovery ran ({recovery[0].get('secs')} s)" if recovery else "",
                                                 f"metadata conflict: {topics} topics written by two brokers ({by})"
                                                 if topics else "",
                                                 f"BadVersion/conflict lines in broker logs: {log_conflicts}"
                                                 if log_conflicts and not topics else ""])) or "no"))
    # 7-9
    w = v.get("workload") or {}
    vms = (v.get("probes") or {}).get("vms") or {}
    host = ((v.get("probes") or {}).get("host") or {}).get("host_peak") or {}
    if not vms:
        rows += [_row(n, None, "no VMs in this experiment") for n in (7, 8, 9)]
    else:
        limit_mib = max((((x.get("memory_limit_bytes") or 0) / 2**20) for x in (w.get("per_vm") or {}).values()), default=0)
        peak = (f"peak VM memory {vms.get('vm_memory_max_mib')} of {limit_mib:.0f} MiB, peak buffer "
                f"{vms.get('agent_buffer_events_max'):.0f} events; OOM-killed {len(w.get('oom_killed') or [])}")
        if (w.get("buffer") or {}).get("type") == "disk":  # the events sit in files: memory at the cap is page cache
            rows.append(_row(7, False, f"disk buffer: {peak} (the memory at the cap is the buffer files' page cache)"))
        else:
            rows.append(_row(7, limit_mib > 0 and vms.get("vm_memory_max_mib", 0) >= 0.95 * limit_mib, peak))
        pgmaj = sum((x.get("pgmajfault") or 0) for x in (w.get("per_vm") or {}).values())
        # thrash: the group's VMs re-read pages from disk, or the host spent a quarter of its time stalled
        rows.append(_row(8, pgmaj > 1000 or max(host.get("memory_some_avg10") or 0, host.get("io_some_avg10") or 0) > 25,
                         f"{pgmaj} major faults, host memory PSI {host.get('memory_some_avg10')}, io PSI {host.get('io_some_avg10')}"))
        rows.append(_row(9, (host.get("d_state_longest_secs") or 0) >= 120,
                         f"longest D state {host.get('d_state_longest_secs')} s (the kernel's hung-task limit is 120 s)"))
    # 10
    rem = [m for m in (v.get("monitors") or {}).values() if isinstance(m, dict) and "rates" in m]
    if not rem:
        rows.append(_row(10, None, "no would-be remediator"))
    else:
        first = rem[0]
        amp = first.get("amplification")
        if amp is not None:
            number = f"{first['actions']} would-be actions ({first['name']}), {amp:.1f}x the rate before the fault"
        elif first["actions"]:
            number = f"{first['actions']} would-be actions ({first['name']}), none before the fault"
        else:
            number = f"0 would-be actions ({first['name']}): nothing for the monitoring to amplify"
        rows.append(_row(10, bool(first["actions"]) and (amp is None or amp >= 2), number))
    rows.append(_rabbitmq_link(v, samples))
    return rows


def _rabbitmq_link(v: dict, samples: list[dict]) -> dict:
    """Link 11: confirm latency while a RabbitMQ node was slow, against the steady state's."""
    rmq = [s for s in samples if (s.get("rabbitmq") or {}).get("confirm_p99_ms") is not None]
    if not rmq:
        return _row(11, None, "not in this experiment")
    slow = [st for st in (v.get("steps") or []) if st.get("type") == "slow-service"
            and str(st.get("service", "")).startswith("rabbitmq")]
    base = [s["rabbitmq"]["confirm_p99_ms"] for s in rmq if s.get("phase") == "steady"]
    during = [s["rabbitmq"]["confirm_p99_ms"] for s in rmq if s.get("phase") in ("method", "rollback")]
    base_p = max(base, default=None)
    peak = max(during, default=None)
    if not slow or peak is None:
        return _row(11, None, "no RabbitMQ node was slowed")
    removed = [st for st in (v.get("steps") or []) if st.get("type") == "remove-rabbitmq-node"]
    seen = base_p is not None and peak > max(3 * base_p, 1000)
    text = (f"confirm p99 peak {peak:.0f} ms while {slow[0].get('service')} was slow "
            f"(steady state: at most {base_p:.0f} ms)" if base_p is not None else f"confirm p99 peak {peak:.0f} ms")
    if removed:
        text += f"; node removed in {removed[0].get('remedy_secs')} s"
    return _row(11, seen, text)
