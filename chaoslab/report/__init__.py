"""One report for every experiment, built from a run folder alone (journal.jsonl, results.json,
experiment.yaml): verdicts side by side, then per variant its reasons, final checks, steps (from
step-end), what the rollback undid, and what its own vocabulary says (the workload's accounting,
each probe's and monitor's blocks, the plots its probes declare with every step shaded), and a
timeline in words. The sections an experiment declares (`report:`, stories) come after the key
times. This module knows no system under test: everything specific is said by the classes that
produced the data (spec.base: report_blocks, why, notes, changed)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from chaoslab.report import blocks as B
from chaoslab.text import fmt as _fmt
from chaoslab.text import words
from chaoslab.report.plots import variant_figure
from chaoslab.spec.base import REGISTRY, RunView, as_reason, load_package, probe_class, probe_why

QUIET_EVENTS = {"handler-error"}
VOCABULARY = ("chaoslab.steps", "chaoslab.probes", "chaoslab.workload", "chaoslab.monitor", "chaoslab.stories")


def _clock(t: float | None) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%H:%M:%S") if t else "-"


# how the runner's own events read in a timeline; any other event reads as "name: k=v, ..."
EVENT_WORDS = {
    "step-start": lambda e: f"step {e['step']} ({e['step_type']}) starts: {words(e.get('spec'))}",
    "step-end": lambda e: (f"step {e['step']} {'done' if e.get('ok') else 'FAILED'} after {_fmt(e.get('secs'))} s: "
                           f"{words(e.get('result'))}"),
    "undo-start": lambda e: f"undo {e['step']} starts",
    "undo-end": lambda e: f"undo {e['step']} after {_fmt(e.get('secs'))} s: {words(e.get('result')) or 'nothing to undo'}",
    "abort": lambda e: f"ABORT: {as_reason(e['reason'])['text'] if isinstance(e.get('reason'), dict) else e.get('reason')}",
    "lab-up": lambda e: f"fresh lab healthy in {_fmt(e.get('secs'))} s",
    "phase": lambda e: f"phase {e.get('phase')} begins",
    "variant-end": lambda e: f"variant ends: {e.get('verdict')}" + (
        f" ({words([as_reason(r)['short'] for r in e['reasons']], 160)})" if isinstance(e.get("reasons"), list) and e["reasons"] else ""),
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


def _experiment_doc(run_dir: Path) -> dict:
    """The experiment as run (experiment.yaml in the run folder), as plain data; {} when there
    is none or it cannot be read (a report is still built)."""
    import yaml
    try:
        doc = yaml.safe_load((Path(run_dir) / "experiment.yaml").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _section(doc: dict, name: str, v: dict):
    """One section of the experiment document with the variant's parameters put in (None when
    it cannot be read)."""
    from chaoslab.spec.experiment import substitute
    try:
        return substitute(doc.get(name), v.get("params") or {}, name, set())
    except Exception:
        return None


def vocabulary(v: dict, doc: dict) -> dict:
    """Which workload, probes and monitors a variant ran: {"workload": type, "probes": {key: type},
    "monitors": {name: type}}. From results.json's `vocabulary` when the runner wrote it; else
    the probes from the keys of their summaries and samples, the workload and monitors from the
    experiment as run."""
    given = v.get("vocabulary")
    if isinstance(given, dict):
        return {"workload": given.get("workload"), "probes": dict(given.get("probes") or {}),
                "monitors": dict(given.get("monitors") or {})}
    probes = {k: cls.model_fields["type"].default for k in (v.get("probes") or {}) if (cls := probe_class(k))}
    workload = _section(doc, "workload", v)
    monitors = {}
    for m in _section(doc, "monitors", v) or []:
        if isinstance(m, dict) and isinstance(m.get("type"), str):
            monitors[str(m.get("name") or m["type"])] = m["type"]
    return {"workload": workload.get("type") if isinstance(workload, dict) else None, "probes": probes,
            "monitors": monitors}


def _vocabulary_blocks(v: dict, samples: list[dict], events: list[dict], run_dir: Path, doc: dict) -> list[tuple]:
    """What the variant's own vocabulary says about it: its workload's accounting, each probe's
    blocks, each monitor type's blocks (their classes' report_blocks)."""
    used = vocabulary(v, doc)
    out = []
    wcls = REGISTRY["workload"].get(used["workload"] or "")
    if wcls is not None and isinstance(v.get("workload"), dict):
        out += wcls.report_blocks(v["workload"])
    summaries = v.get("probes") or {}
    keys = list(dict.fromkeys([*used["probes"], *summaries, *(k for s in samples[:5] for k in s)]))
    for key in keys:
        cls = REGISTRY["probe"].get(used["probes"].get(key, "")) or probe_class(key)
        if cls is not None:
            summary = summaries.get(key)
            out += cls.report_blocks(summary if isinstance(summary, dict) else {}, samples, events, v, run_dir)
    by_type: dict[str, dict] = {}
    for name, m in (v.get("monitors") or {}).items():
        mtype = used["monitors"].get(name)
        if mtype in REGISTRY["monitor"] and isinstance(m, dict):
            by_type.setdefault(mtype, {})[name] = m
    for mtype, found in by_type.items():
        out += REGISTRY["monitor"][mtype].report_blocks(found)
    return out


def _observer_blocks(v: dict) -> list[tuple]:
    load = v.get("observer") or {}
    if not load:
        return []
    return [("h3", "What the lab itself asked of each target (observer load)"),
            ("table", ["target", "HTTP requests", "per second", "by path"],
             [[t, x["requests"], _fmt(x.get("per_sec"), 2), words(dict(sorted(x["by_path"].items(), key=lambda kv: -kv[1])[:5]))]
              for t, x in sorted(load.items())])]


def _evidence_blocks(v: dict, events: list[dict], run_dir: Path) -> list[tuple]:
    kept = [e for e in events if e.get("name") in ("thread-dump", "logs-kept")]
    if not kept:
        return []
    t0 = v.get("started") or 0
    return [("h3", "Evidence kept"),
            ("links", [(f"+{e['t'] - t0:.0f} s {'thread dump' if e['name'] == 'thread-dump' else 'log'} of "
                        f"{e.get('container')} ({e.get('reason')})", _rel(e.get("file"), run_dir)) for e in kept])]


def _rel(path: str | None, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except (TypeError, ValueError):
        return str(path)


def stories(doc: dict) -> tuple[list, list[str]]:
    """The stories the experiment declares (`report:`), built from the registry, and a line for
    each one that cannot be read (an unknown type, a bad field): those are said, not fatal."""
    out, problems = [], []
    declared = doc.get("report") or []
    for i, item in enumerate(declared if isinstance(declared, list) else []):
        kind = item.get("type") if isinstance(item, dict) else None
        cls = REGISTRY["story"].get(kind) if isinstance(kind, str) else None
        if cls is None:
            problems.append(f"report[{i}]: no story of type {kind!r} is known here")
            continue
        try:
            out.append(cls.model_validate(item))
        except Exception as exc:
            problems.append(f"report[{i}] ({kind}): {' '.join(str(exc).split())[:160]}")
    return out, problems


def _story_part(story, part: str, run: RunView) -> list:
    try:
        return getattr(story, part)(run)
    except Exception as exc:   # a story that cannot read this run folder says so; the report goes on
        return [f"{story.type}: could not be read from this run folder ({type(exc).__name__}: {exc})"[:200]] \
            if part == "why" else [("p", f"{story.type}: could not be read from this run folder ({type(exc).__name__})")]


def _first_screen(variants: list[dict], run: RunView, told: list) -> list[tuple]:
    """What an on-call engineer needs first: why the verdict, the KPIs, the sections the
    experiment declares (stories); then the plots and the timeline further down."""
    out = []
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
        why += probe_why(decisive.get("probes") or {})
        for v in variants:
            if v is not decisive:
                why.append(f"{v['name']} ({v['role']}): {v['verdict']}"
                           + (f" - {as_reason(v['reasons'][0])['short']}" if v.get("reasons") else ""))
        why += [f"Note: {n}" for n in decisive.get("notes") or []]
        for story in told:
            why += _story_part(story, "why", run)
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
        for story in told:
            out += _story_part(story, "blocks", run)
        out.append(("p", "Raw data: journal.jsonl (every sample and event), results.json, log-excerpts.md, logs/."))
        out.append(("links", [("journal.jsonl", "journal.jsonl"), ("results.json", "results.json"),
                              ("log-excerpts.md", "log-excerpts.md"), ("experiment.yaml", "experiment.yaml")]))
    return out


def plain_violation(v: dict) -> str:
    from chaoslab.spec.base import Violation
    return Violation(**v).plain()


def _step_cell(s: dict, skip: tuple) -> str:
    """What a step did and saw: its class's words for what it changed, then the rest of its result."""
    cls = REGISTRY["step"].get(s.get("type") or "")
    changed = cls.changed(s) if cls is not None else ""
    rest = words({k: x for k, x in s.items() if k not in skip})
    return f"{changed}. {rest}" if changed and rest else changed or rest


def _read_run(run_dir: Path) -> tuple:
    """A run folder read for its report: journal records, results, title, experiment document,
    the stories it declares (and the lines for those that cannot be read), the opening blocks."""
    for package in VOCABULARY:
        load_package(package)
    records, results, title, opening = B.open_run(run_dir)
    doc = _experiment_doc(run_dir)
    told, problems = stories(doc)
    return records, results, title, doc, told, problems, opening


def first_screen(run_dir: Path) -> tuple[list[tuple], list[dict], list[tuple]]:
    """The report's first screen, for a reader other than report.md (a CI step summary): the
    opening blocks (title, verdict and exit code, run facts), the variants as results.json holds
    them, and the blocks under the opening (why, the evidence of coverage, key times, the
    sections the experiment declares)."""
    run_dir = Path(run_dir)
    records, results, _, _, told, _, opening = _read_run(run_dir)
    variants = results.get("variants", [])
    return opening, variants, _first_screen(variants, RunView(run_dir, results, records), told)


def verdict_table(variants: list[dict]) -> tuple:
    """The variants' verdicts in one table block: variant, role, verdict, the first reason."""
    return ("table", ["variant", "role", "verdict", "reason"],
            [[v["name"], v["role"], v["verdict"], as_reason(v["reasons"][0])["short"] if v.get("reasons") else "-"]
             for v in variants])


def build_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    records, results, title, doc, told, problems, b = _read_run(run_dir)
    variants = results.get("variants", [])
    b.extend(_first_screen(variants, RunView(run_dir, results, records), told))
    if problems:
        b.append(("list", problems))
    sm = results.get("scale_model") or {}
    if sm.get("factor", 1) != 1:
        b.append(("p", f"Scale model: factor {_fmt(sm.get('factor'), 0)} - {sm.get('note')}. Limits and workload are scaled down "
                       "together; read the figures against the scaled limits."))
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
                        _step_cell(s, ("id", "type", "ok", "secs", "started"))]
                       for s in v["steps"]]))
        if v.get("undone") or v.get("rollbacks"):
            b.append(("h3", "Rollback"))
            b.append(("table", ["what", "step", "ok", "secs", "details"],
                      [["undo", u["step"], words(u.get("ok")), _fmt(u.get("secs")),
                        words({k: x for k, x in u.items() if k not in ("step", "type", "ok", "secs")})] for u in v.get("undone", [])]
                      + [["rollback step", r["id"], words(r.get("ok")), _fmt(r.get("secs")),
                          words({k: x for k, x in r.items() if k not in ("id", "type", "ok", "secs", "started")})]
                         for r in v.get("rollbacks", [])]))
        samples = [r for r in records if r["type"] == "sample" and r.get("variant") == v["name"]]
        events = [r for r in records if r["type"] == "event" and r.get("variant") == v["name"]]
        b.extend(_vocabulary_blocks(v, samples, events, run_dir, doc))
        b.extend(_observer_blocks(v))
        b.extend(_evidence_blocks(v, events, run_dir))
        b.append(("h3", "Timeline"))
        t0 = v.get("started") or (events[0]["t"] if events else 0)
        b.append(("table", ["time (UTC)", "+s", "what happened"],
                  [[_clock(e["t"]), _fmt(e["t"] - t0, 0), describe(e)] for e in events if e.get("name") not in QUIET_EVENTS]))
    return B.write(run_dir, b, title)
