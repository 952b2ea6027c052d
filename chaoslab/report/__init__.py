"""One report for every experiment, built from a run folder alone (journal.jsonl, results.json):
verdicts side by side, then per variant its reasons, final checks, steps (from step-end), what
the rollback undid, the workload's accounting, the plots its probes declare with every step
shaded, and a timeline in words."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from chaoslab.report import blocks as B
from chaoslab.report.chain import links as chain_links
from chaoslab.report.flip import classify as classify_flip
from chaoslab.report.flip import describe as describe_flip
from chaoslab.report.plots import variant_figure
from chaoslab.spec.base import REGISTRY, as_reason, load_package

MIB = 2 ** 20
QUIET_EVENTS = {"handler-error"}


def _clock(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S") if t else "-"


def words(value, limit: int = 220) -> str:
    """A value as words for a table cell: k=v pairs, lists joined; never a Python repr."""
    def w(v):
        if v is None:
            return ""
        if isinstance(v, dict):
            return ", ".join(f"{k}={w(x)}" for k, x in v.items() if x not in (None, "", [], {}))
        if isinstance(v, (list, tuple)):
            return "; ".join(w(x) for x in v)
        if isinstance(v, float):
            return f"{v:.1f}" if abs(v) < 1e6 else f"{v:.3g}"
        if isinstance(v, bool):
            return "yes" if v else "no"
        return str(v).rsplit(".", 1)[-1] if isinstance(v, str) and v.startswith("org.apache.") else str(v)
    text = w(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(v, digits=1):
    if v is None:
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


# how the runner's own events read in a timeline; any other event reads as "name: k=v, ..."
EVENT_WORDS = {
    "step-start": lambda e: f"step {e['step']} ({e['step_type']}) starts: {words(e.get('spec'))}",
    "step-end": lambda e: (f"step {e['step']} {'done' if e.get('ok') else 'FAILED'} after {_fmt(e.get('secs'))} s: "
                           f"{words(e.get('result'))}"),
    "undo-start": lambda e: f"undo {e['step']} starts",
    "undo-end": lambda e: f"undo {e['step']} after {_fmt(e.get('secs'))} s: {words(e.get('result')) or 'nothing to undo'}",
    "abort": lambda e: f"ABORT: {e.get('reason')}",
    "lab-up": lambda e: f"fresh lab healthy in {_fmt(e.get('secs'))} s",
    "variant-end": lambda e: f"variant ends: {e.get('verdict')}" + (f" ({words([as_reason(r)['short'] for r in e['reasons']], 160)})" if e.get("reasons") else ""),
}


def describe(e: dict) -> str:
    if e.get("name") in EVENT_WORDS:
        return EVENT_WORDS[e["name"]](e)
    rest = {k: v for k, v in e.items() if k not in ("t", "type", "name", "variant")}
    return f"{e.get('name')}" + (f": {words(rest)}" if rest else "")


def _panels(samples: list[dict]) -> list:
    load_package("chaoslab.probes")
    keys = set().union(*(s.keys() for s in samples[:5])) if samples else set()
    return [p for cls in REGISTRY["probe"].values() if cls.key in keys for p in cls.panels()]


def _natural(name: str) -> list:
    """vm-x-2 before vm-x-10."""
    import re
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _workload_blocks(v: dict) -> list[tuple]:
    w = v.get("workload") or {}
    out = []
    if w.get("loss"):
        l = w["loss"]
        out.append(("p", f"Workload: {l['sent']} sent, {l['acked']} acknowledged, {l['received']} received, "
                         f"{l['lost']} acknowledged but never delivered, {l.get('unknown', 0)} neither delivered nor "
                         f"provably lost (books {'closed' if l.get('books_closed', True) else 'not closed'}: "
                         f"{l.get('closed_by') or 'n/a'}), {l['duplicated']} duplicated."))
    if w.get("per_vm"):
        t = w["totals"]
        out.append(("p", f"VM group {w.get('group')}: {w.get('count')} {w.get('flavour')} VMs, buffer {words(w.get('buffer'))}. "
                         f"Per event: generated {t['generated']} = delivered {t['delivered']} + dropped by policy "
                         f"{t['dropped_by_policy']} + failed sends {t['failed_sends']} + held at stop {t.get('held_at_stop', 0)} "
                         f"+ lost {t['lost']} + unknown {t.get('unknown', 0)} (books that could not close: "
                         f"{', '.join(w.get('books_open') or []) or 'none'}). Duplicates {t.get('duplicates', 0)}; the sink gave up on "
                         f"{t.get('failed_but_delivered', 0)} events the broker had stored; OOM-killed {len(w.get('oom_killed') or [])}."))
        out.append(("table", ["VM", "generated", "delivered", "dropped", "failed", "held", "lost", "unknown", "dup", "exit",
                              "OOM", "peak MiB", "pgmajfault"],
                    [[n, x["generated"], x["delivered"], x["dropped_by_policy"], x["failed_sends"], x.get("held_at_stop", 0),
                      x["lost"], x.get("unknown", 0), x.get("duplicates", 0), (x.get("agent_end") or {}).get("exit_code"),
                      "yes" if x["oom_killed"] else "no",
                      round((x.get("peak_memory_bytes") or 0) / MIB, 1), x.get("pgmajfault")]
                     for n, x in sorted(w["per_vm"].items(), key=lambda kv: _natural(kv[0]))]))
    return out


def _brokers_table(samples: list[dict]) -> list[tuple]:
    last = next((s for s in reversed(samples) if s.get("brokers")), None)
    if not last:
        return []
    peak = {}
    for s in samples:
        for name, br in (s.get("brokers") or {}).items():
            p = (br.get("metrics") or {}).get("pulsar_broker_lookup_pending_requests")
            if p is not None:
                peak[name] = max(peak.get(name, 0), p)
    rows = []
    for name, br in sorted(last["brokers"].items()):
        m = br.get("metrics") or {}
        rows.append([name, br.get("version") or "-", words(br.get("loadManagerClassName") or "-"),
                     words(br.get("shallow_ok")), words(br.get("functional_ok")), _fmt(br.get("owned_bundles")),
                     _fmt(peak.get(name), 0), _fmt(m.get("pulsar_broker_lookup_failures_total"), 0),
                     words({k: c for k, c in (br.get("log_counts") or {}).items() if c}) or "-"])
    out = [("h3", "Brokers at the end (peak pending lookups over the variant)"),
           ("table", ["broker", "version", "load manager", "shallow", "functional", "owned bundles",
                      "peak pending lookups", "lookup failures", "notable log lines"], rows)]
    st = ((last.get("cluster") or {}).get("system_topics") or {})
    if st.get("exists"):
        out.append(("p", "System topics at the end: " + "; ".join(
            f"{k.split('/')[-1]} {'exists' if x else 'absent' if x is False else 'unknown'}"
            + (f" (owner {st.get('owner', {}).get(k)})" if (st.get("owner") or {}).get(k) else "")
            for k, x in st["exists"].items())))
    return out


def _views_blocks(v: dict, events: list[dict], run_dir: Path) -> list[tuple]:
    """Per broker: how long each of the three views' verdicts lasted; the evidence kept."""
    out = []
    views = (v.get("probes") or {}).get("views") or {}
    if views.get("seconds"):
        states = ["healthy", "green-but-broken", "shallow-only", "down", "unknown"]
        out.append(("h3", "Brokers seen three ways (seconds in each state)"))
        out.append(("p", "healthy: shallow check, Pulsar's health check and the workload's operations on its topics all "
                         "fine; green-but-broken: both checks pass while its topics' lookups or publishes fail (the "
                         "incident's broker); shallow-only: the operator's check passes, Pulsar's fails; down: the "
                         "shallow check fails."))
        out.append(("table", ["broker", *states, "first green-but-broken (+s)"],
                    [[b, *[c.get(s, 0) for s in states],
                      _fmt(views["first"][f"{b}:green-but-broken"] - v["started"], 0) if f"{b}:green-but-broken" in views.get("first", {}) else "-"]
                     for b, c in sorted(views["seconds"].items())]))
    load = v.get("observer") or {}
    if load:
        out.append(("h3", "What the lab itself asked of the brokers (observer load)"))
        out.append(("table", ["target", "HTTP requests", "per second", "by path"],
                    [[t, x["requests"], _fmt(x.get("per_sec"), 2), words(dict(sorted(x["by_path"].items(), key=lambda kv: -kv[1])[:5]))]
                     for t, x in sorted(load.items())]))
    remediators = {n: m for n, m in (v.get("monitors") or {}).items() if isinstance(m, dict) and "rates" in m}
    if remediators:
        out.append(("h3", "What the monitoring would have ordered (would-be remediations)"))
        out.append(("table", ["monitor", "rules", "actions", "per minute before", "during", "after", "amplification"],
                    [[n, words(m.get("rules")), words(m.get("by_action")) or "0",
                      *[_fmt(((m["rates"].get(p) or {}).get("per_minute")), 2) for p in ("before", "during", "after")],
                      _fmt(m.get("amplification"), 2) if m.get("amplification") is not None else (m.get("amplification_note") or "-")]
                     for n, m in sorted(remediators.items())]))
    kept = [e for e in events if e.get("name") in ("thread-dump", "logs-kept")]
    if kept:
        t0 = v.get("started") or 0
        out.append(("h3", "Evidence kept"))
        out.append(("links", [(f"+{e['t'] - t0:.0f} s {'thread dump' if e['name'] == 'thread-dump' else 'log'} of "
                               f"{e.get('container')} ({e.get('reason')})", _rel(e.get("file"), run_dir)) for e in kept]))
    return out


def _rel(path: str | None, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except (TypeError, ValueError):
        return str(path)


def _flip_mechanisms(variants: list[dict], records: list[dict], run_dir: Path) -> dict[str, dict]:
    """For variants that rolled brokers: how the flip failed (report/flip.py), from the run folder."""
    out = {}
    for v in variants:
        if not any(st.get("type") == "roll-broker" for st in v.get("steps") or []):
            continue
        samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
        try:
            out[v["name"]] = classify_flip(samples, run_dir / "logs" / v["name"],
                                           since=(v.get("kpis") or {}).get("injection_t"), pending_bound=_pending_bound(records))
        except Exception:   # evidence that cannot be read says nothing; the report goes on
            continue
    return out


def _pending_bound(records: list[dict]) -> float | None:
    """Pending lookups that count as piled up: 80 % of the brokers' limit."""
    limit = _pending_limit(records)
    return 0.8 * limit if limit else None


def _first_screen(variants: list[dict], records: list[dict], results: dict, run_dir: Path) -> list[tuple]:
    """What an on-call engineer needs first: why the verdict, the incident's chain link by link,
    the KPIs; then the plots and the timeline further down."""
    out = []
    flips = _flip_mechanisms(variants, records, run_dir)
    decisive = next((v for v in variants if v["role"] == "primary"), None) or \
        next((v for v in variants if v["verdict"] != "PASS"), variants[0] if variants else None)
    if decisive:
        k = decisive.get("kpis") or {}
        head = f"{decisive['name']} ({decisive['role']}) {decisive['verdict']}"
        if decisive.get("reasons"):
            head += ": " + as_reason(decisive["reasons"][0])["short"]
        elif decisive.get("violated_seconds") and not decisive.get("aborted"):
            head += (f": every final check passed; the hypothesis was violated for {decisive['violated_seconds']} s "
                     "during the run without an abort (this experiment is judged by its final checks)")
        else:
            head += ": the steady state held and every final check passed"
        why = []
        firsts = decisive.get("first_violations") or []
        if firsts:
            at = k.get("detection_t")
            when = f"at {_clock(at)} (+{_fmt(k.get('detection_after_injection_secs'), 0)} s after the method began)" if at else ""
            why.append(f"First violation {when}: " + "; ".join(plain_violation(fv) for fv in firsts[:4]))
        if k.get("decision_t"):
            why.append(f"Aborted at {_clock(k['decision_t'])} (+{_fmt(k.get('decision_after_injection_secs'), 0)} s): "
                       f"violated longer than the tolerance, then every step was undone")
        why += [f"Final check {c['name']} failed: {c['evidence']}" for c in decisive.get("checks", []) if c["outcome"] == "fail"]
        gbb = {b: c["green-but-broken"] for b, c in (((decisive.get("probes") or {}).get("views") or {}).get("seconds") or {}).items()
               if c.get("green-but-broken")}
        if gbb:
            why.append("Green-but-broken (both health checks passed while its topics failed): "
                       + ", ".join(f"{b} for {s} s" for b, s in gbb.items()))
        for v in variants:
            if v is not decisive:
                why.append(f"{v['name']} ({v['role']}): {v['verdict']}"
                           + (f" - {as_reason(v['reasons'][0])['short']}" if v.get("reasons") else ""))
        why += [f"Note: {n}" for n in decisive.get("notes") or []]
        for v in variants:
            c = flips.get(v["name"])
            if c and (v["verdict"] != "PASS" or c["mechanism"] != "none"):
                why.append(f"How the flip failed in {v['name']}: {describe_flip(c)}")
        out += [("h2", "Why"), ("p", head + "."), ("list", why)]
        cov = decisive.get("coverage") or {}
        if cov:
            out.append(("h3", "Evidence: how much of the method each condition could judge"))
            out.append(("table", ["condition", "judged s / method s", "share", "unknown because"],
                        [[name, f"{c['judged_secs']} / {c['method_secs']}", f"{c['share']:.0%}",
                          "; ".join(c.get("unknown_because") or []) or "-"] for name, c in cov.items()]))
    if variants:
        out.append(("h2", "Key times (UTC; seconds after the method began)"))
        rows = []
        for v in variants:
            k = v.get("kpis") or {}
            rows.append([v["name"], v["verdict"], _clock(k.get("injection_t")),
                         *[f"{_clock(k.get(f'{x}_t'))} (+{_fmt(k.get(f'{x}_after_injection_secs'), 0)})" if k.get(f"{x}_t") else "-"
                           for x in ("detection", "decision", "resolution")]])
        out.append(("table", ["variant", "verdict", "event (method began)", "detection", "decision (abort)", "resolution"], rows))
        limit = ((results.get("lab") or {}).get("broker_config") or {}).get("maxConcurrentLookupRequest")
        per = {v["name"]: chain_links(v, [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]],
                                      float(limit) if limit else _pending_limit(records),
                                      conflicts=(flips.get(v["name"]) or {}).get("conflicts")) for v in variants}
        watched = [row["link"] for row in next(iter(per.values())) if any(
            next(x for x in rows_ if x["link"] == row["link"])["observed"] is not None for rows_ in per.values())]
        out.append(("h2", "The incident's chain, link by link"))
        out.append(("table", ["link", "what", *[v["name"] for v in variants]],
                    [[n, next(r["what"] for r in next(iter(per.values())) if r["link"] == n),
                      *[_cell(next(r for r in per[v["name"]] if r["link"] == n)) for v in variants]] for n in watched]))
        out.append(("p", "Links of the incident's chain this experiment does not watch are left out. "
                         "Raw data: journal.jsonl (every sample and event), results.json, log-excerpts.md, logs/."))
        out.append(("links", [("journal.jsonl", "journal.jsonl"), ("results.json", "results.json"),
                              ("log-excerpts.md", "log-excerpts.md"), ("experiment.yaml", "experiment.yaml")]))
    return out


def _cell(row: dict) -> str:
    if row["observed"] is None:
        return f"not watched ({row['number']})"
    number = str(row["number"])
    if number.lower() in ("no", "yes", ""):
        return "OBSERVED" if row["observed"] else "no"
    return ("OBSERVED: " if row["observed"] else "no: ") + number


def _pending_limit(records: list[dict]) -> float | None:
    lab = next((r for r in records if r.get("name") == "lab-up"), {})
    value = (lab.get("broker_config") or {}).get("maxConcurrentLookupRequest")
    return float(value) if value else None


def describe_violation(v: dict) -> str:
    from chaoslab.spec.base import Violation
    return Violation(**v).text()


def plain_violation(v: dict) -> str:
    from chaoslab.spec.base import Violation
    return Violation(**v).plain()


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    records, results, title, b = B.open_run(run_dir)
    variants = results.get("variants", [])
    b.extend(_first_screen(variants, records, results, run_dir))
    sm = results.get("scale_model") or {}
    if sm.get("factor", 1) != 1:
        b.append(("p", f"Scale model: factor {_fmt(sm.get('factor'), 0)} - {sm.get('note')}. Limits and workload are scaled down "
                       "together; read pending-lookup figures against the scaled limit."))
    if variants:
        b.append(("h2", "Variants side by side"))
        rows = []
        for v in variants:
            k = v.get("kpis", {})
            rows.append([v["name"], v["role"], words(v.get("params"), 80) or "-", v["verdict"], "yes" if v["aborted"] else "no",
                         _fmt(v["longest_violation_secs"]), v["violated_seconds"],
                         _fmt(k.get("detection_after_injection_secs")), _fmt(k.get("decision_after_injection_secs")),
                         _fmt(k.get("resolution_after_injection_secs")),
                         ", ".join(f"{c['name']} {c['outcome']}" for c in v.get("checks", [])) or "-"])
        b.append(("table", ["variant", "role", "parameters", "verdict", "aborted", "longest violation s", "violated s",
                            "detection +s", "decision +s", "resolution +s", "final checks"], rows))
        b.append(("p", "KPIs are seconds after the method began: detection = first hypothesis violation, decision = "
                       "abort, resolution = the hypothesis holding again."))
    figures = {}
    for v in variants:
        samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
        events = [r for r in records if r["type"] == "event" and r.get("variant") == v["name"]]
        figures[v["name"]] = variant_figure(samples, events, _panels(samples), run_dir / f"plot-{v['name']}.png",
                                            f"{v['name']} ({v['verdict']}): {words(v.get('params'), 90)}")
    if any(figures.values()):
        b.append(("h2", "What the probes measured"))
        b.append(("p", "Shaded bands are the steps (the fault or operator action), green bands their undo, the red "
                       "dashed line the abort. One figure per variant, the decisive one first."))
        order = sorted(variants, key=lambda v: (v["role"] != "primary", v["verdict"] == "PASS"))
        for v in order:
            if figures[v["name"]]:
                b.append(("img", figures[v["name"]].name, f"{v['name']} ({v['role']}, {v['verdict']})"))
    b.append(("h2", "Each variant in detail"))
    for v in variants:
        b.append(("h2", f"Variant {v['name']} ({v['role']}): {v['verdict']}"))
        if v.get("description"):
            b.append(("p", v["description"]))
        if v.get("reasons"):
            b.append(("list", [as_reason(r)["text"] for r in v["reasons"]]))
        if v.get("checks"):
            b.append(("table", ["final check", "outcome", "value", "bound", "evidence"],
                      [[c["name"], c["outcome"], _fmt(c.get("value")), _fmt(c.get("bound")), c.get("evidence", "")]
                       for c in v["checks"]]))
        if v.get("steps"):
            b.append(("h3", "Steps"))
            b.append(("table", ["step", "type", "ok", "secs", "what it did and saw"],
                      [[s["id"], s["type"], words(s.get("ok")), _fmt(s.get("secs")),
                        words({k: x for k, x in s.items() if k not in ("id", "type", "ok", "secs", "started")})]
                       for s in v["steps"]]))
        if v.get("undone") or v.get("rollbacks"):
            b.append(("h3", "Rollback"))
            b.append(("table", ["what", "step", "ok", "secs", "details"],
                      [["undo", u["step"], words(u.get("ok")), _fmt(u.get("secs")),
                        words({k: x for k, x in u.items() if k not in ("step", "type", "ok", "secs")})] for u in v.get("undone", [])]
                      + [["rollback step", r["id"], words(r.get("ok")), _fmt(r.get("secs")),
                          words({k: x for k, x in r.items() if k not in ("id", "type", "ok", "secs", "started")})]
                         for r in v.get("rollbacks", [])]))
        b.extend(_workload_blocks(v))
        samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
        events = [r for r in records if r["type"] == "event" and r.get("variant") == v["name"]]
        b.extend(_brokers_table(samples))
        b.extend(_views_blocks(v, events, run_dir))
        b.append(("h3", "Timeline"))
        t0 = v.get("started") or (events[0]["t"] if events else 0)
        b.append(("table", ["time (UTC)", "+s", "what happened"],
                  [[_clock(e["t"]), _fmt(e["t"] - t0, 0), describe(e)] for e in events if e.get("name") not in QUIET_EVENTS]))
    return B.write(run_dir, b, title)
