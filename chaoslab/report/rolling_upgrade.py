"""Markdown + HTML report with PNG plots, from runs/<id>/journal.jsonl and results.json."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from chaoslab.report import blocks as B
from chaoslab.report.plots import variant_figure

TIMELINE_EVENTS = {"variant-start", "lab-up", "steady-state-held", "no-steady-state", "upgrade-start",
                   "upgrade-done", "upgrade-wait-timeout", "abort", "rollback-start", "rollback-step",
                   "rollback-done", "recovery-start", "recovery-topics-deleted", "recovery-done",
                   "final-health", "variant-end", "interrupted", "lab-error"}


def _clock(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S") if t else "-"


def _fmt(v, digits=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    records, results, title, b = B.open_run(run_dir)
    variants = results.get("variants", [])
    sm = results.get("scale_model")
    if sm:
        b.append(("p", f"Scale model: factor {sm.get('factor')} - {sm.get('note')}. Lookup limits and workload are "
                       "scaled down together; read pending-lookup figures against the scaled limit."))
    if variants:
        b.append(("h2", "Variants side by side"))
        rows = []
        for v in variants:
            k, loss = v.get("kpis", {}), v.get("loss") or {}
            rows.append([v["name"], v["role"], v["to_version"], v["verdict"], "yes" if v["aborted"] else "no",
                         _fmt(v["longest_violation_secs"]), v["violated_seconds"],
                         _fmt(k.get("detection_after_injection_secs")), _fmt(k.get("decision_after_injection_secs")),
                         _fmt(k.get("resolution_after_injection_secs")),
                         f"{loss.get('acked', '-')}/{loss.get('received', '-')}/{loss.get('lost', '-')}/{loss.get('duplicated', '-')}"])
        b.append(("table", ["variant", "role", "to", "verdict", "aborted", "longest violation s", "violated s",
                            "detection +s", "decision +s", "resolution +s", "acked/received/lost/dup"], rows))
        b.append(("p", "KPIs are seconds after the injection (first upgrade step): detection = first hypothesis "
                       "violation, decision = abort, resolution = hypothesis holding again."))
    for v in variants:
        b.append(("h2", f"Variant {v['name']} ({v['role']}): {v['verdict']}"))
        if v.get("description"):
            b.append(("p", v["description"]))
        if v.get("reasons"):
            b.append(("list", v["reasons"]))
        if v.get("steps"):
            b.append(("h3", "Rolling upgrade: what the operator's check said, and what the functional check said"))
            b.append(("table", ["broker", "waited for", "passed", "secs", "shallow ok", "functional ok", "functional detail"],
                      [[s["broker"], s["waited_for"], s["wait_ok"], s["wait_secs"], s["shallow_ok"], s["functional_ok"],
                        s.get("functional_detail") or ""] for s in v["steps"]]))
        if v.get("rollback"):
            b.append(("p", f"Rollback: ok={v['rollback']['ok']} in {v['rollback']['secs']} s; steps {v['rollback']['steps']}"))
        if v.get("recovery"):
            b.append(("p", f"Recovery (stop all, start one, delete system topics, start the rest): "
                           f"ok={v['recovery']['ok']} in {v['recovery']['secs']} s; deleted {v['recovery']['deleted']}"))
        samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
        events = [r for r in records if r["type"] == "event" and v["started"] <= r["t"] <= (v["ended"] or 1e18)]
        if samples:
            last = samples[-1]
            peak = {}
            for s in samples:
                for name, br in (s.get("brokers") or {}).items():
                    p = (br.get("metrics") or {}).get("pulsar_broker_lookup_pending_requests")
                    if p is not None:
                        peak[name] = max(peak.get(name, 0), p)
            rows = []
            for name, br in sorted((last.get("brokers") or {}).items()):
                m = br.get("metrics") or {}
                rows.append([name, br.get("version"), (br.get("loadManagerClassName") or "-").rsplit(".", 1)[-1],
                             br.get("shallow_ok"), br.get("functional_ok"), br.get("owned_bundles"),
                             _fmt(peak.get(name), 0), _fmt(m.get("pulsar_broker_lookup_failures_total"), 0),
                             json.dumps({k: c for k, c in (br.get("log_counts") or {}).items() if c})])
            b.append(("h3", "Brokers at the end (peak pending lookups over the variant)"))
            b.append(("table", ["broker", "version", "load manager", "shallow", "functional", "owned bundles",
                                "peak pending lookups", "lookup failures", "notable log lines"], rows))
            st = (last.get("system_topics") or {}).get("exists") or {}
            owners = (last.get("system_topics") or {}).get("owner") or {}
            if st:
                b.append(("p", "System topics at the end: " + ", ".join(
                    f"{k.split('/')[-1]}={'exists' if v2 else 'absent' if v2 is False else 'unknown'}"
                    + (f" (owner {owners[k]})" if owners.get(k) else "") for k, v2 in st.items())))
            errors = {}
            for s in samples:
                for k2, c in (s["client"].get("errors") or {}).items():
                    errors[k2] = max(errors.get(k2, 0), c)
            if errors:
                b.append(("p", f"Client errors (peak per {results.get('hypothesis', {}).get('window_secs', '?')} s window): {errors}"))
            png = variant_figure(samples, events, run_dir / f"plot-{v['name']}.png", f"{v['name']} -> {v['to_version']}")
            if png:
                b.append(("img", png.name, f"{v['name']}: pending lookups, publish success/latency, owned bundles, system topics"))
        b.append(("h3", "Timeline"))
        b.append(("table", ["time (UTC)", "event", "details"],
                  [[_clock(e["t"]), e["name"], json.dumps({k: x for k, x in e.items() if k not in ("t", "type", "name")})[:180]]
                   for e in events if e.get("name") in TIMELINE_EVENTS]))
    return B.write(run_dir, b, title)
