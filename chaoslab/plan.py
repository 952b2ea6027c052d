"""`chaoslab plan FILE`: what a run of an experiment would do, without starting anything.

Per variant, the steps in the order the runner takes them (the file as the loader expands it:
`extends`, `${VAR}`, `$param`, disabled steps left out), with their phase (before / method /
rollback / after), when each starts (offsets from the method's start, from the file's `after`,
`delay_secs`, `at_secs` and each step's own bounds), and what each changes: which service, which
release (from -> to), which setting (its value before -> after, and where the value before comes
from: the image's broker.conf, the experiment's lab.broker_config, an earlier step, Pulsar's own
default). Each step type says that itself (`Step.describe`, spec/base.py), the plan only lays
the steps out. Then the hypothesis with its bounds, the probes and checks, the releases and
images the run needs and whether they can be had, and how long it should take: from the file's
bounds and from the last run of the same experiment in runs/.

Nothing here starts, builds, resolves with side effects or writes anything. Maven is asked
(one jar, the way `chaoslab gate` asks) unless `offline`; the engine only whether an image exists.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from chaoslab.errors import LabError
from chaoslab.record import records
from chaoslab.settings import RUNS_DIR, LabSettings
from chaoslab.spec.base import Change
from chaoslab.spec.experiment import Experiment, load
from chaoslab.spec.planning import IMAGE_DEFAULT, PlannedLab
from chaoslab.text import words

# what a step's lab-driver needs (Step.needs) asks of the host (`chaoslab doctor` checks them)
NEEDS_HOST = {"pause": "the cgroup freezer", "cpu-quota": "the CFS CPU quota (cgroup cpu)",
              "vm-groups": "cgroup memory and blkio/io (VM caps, hypervisor budgets)",
              "thread-dump": "a JDK's jlink on the host (else SIGQUIT dumps)"}
ENGINE_TIMEOUT_SECS = 5


# -- times -------------------------------------------------------------------------------------------
def span(lo: float, hi: float | None) -> dict:
    return {"min_secs": round(lo, 1), "max_secs": None if hi is None else round(hi, 1)}


def add(a: tuple, b: tuple) -> tuple:
    return a[0] + b[0], None if a[1] is None or b[1] is None else a[1] + b[1]


def secs_words(lo: float, hi: float | None) -> str:
    def n(x):
        return f"{x:,.0f}" if x >= 10 else f"{x:.3g}"
    if hi is None:
        return f"≥ {n(lo)} s"
    if abs(hi - lo) < 0.05:
        return f"{n(lo)} s"
    return f"{n(lo)}..{n(hi)} s"


def start_words(lo: float, hi: float | None) -> str:
    """When a step starts, from the method's start: t+0, t+5..201 s, t+5 s or later."""
    if hi is None:
        return f"t+{secs_words(lo, lo)} or later"
    return "t+0" if hi == 0 else f"t+{secs_words(lo, hi)}"


def schedule(steps: list, secs: dict[str, tuple]) -> dict[str, dict]:
    """When each method step starts and ends, as (low, high) offsets from the method's start, the
    way the runner starts them (chaoslab/run/runner.py `_method`): once the step it follows has
    ended (`after`, else the previous step; none with `at_secs`), plus `delay_secs`, and not
    before `at_secs`. `secs`: each step's (low, high) duration by id."""
    out: dict[str, dict] = {}
    for i, step in enumerate(steps):
        dep = step.after or (None if step.at_secs is not None else (steps[i - 1].id if i else None))
        base = out[dep]["end"] if dep else (0.0, 0.0)
        lo, hi = base[0] + step.delay_secs, None if base[1] is None else base[1] + step.delay_secs
        if step.at_secs is not None:
            lo, hi = max(lo, step.at_secs), None if hi is None else max(hi, step.at_secs)
        out[step.id] = {"after": dep, "start": (lo, hi), "end": add((lo, hi), secs[step.id])}
    return out


# -- the last run ----------------------------------------------------------------------------------
def last_run(runs_dir: Path, name: str) -> Path | None:
    """The newest run folder of the experiment `name` under runs_dir (runs/<time>-<name>/, and
    the run-N/ folders of a --repeat), by its run id (which starts with its time)."""
    found = []
    for results in [*runs_dir.glob("*/results.json"), *runs_dir.glob("*/run-*/results.json")]:
        if not (results.parent / "journal.jsonl").is_file():
            continue
        try:
            data = json.loads(results.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("experiment") == name:
            found.append((str(data.get("run_id") or ""), results.stat().st_mtime, str(results.parent)))
    return Path(max(found)[2]) if found else None


def run_timings(run_dir: Path) -> dict:
    """Per variant of a run folder, from its journal (chaoslab/record.py): how long the lab took
    to come up, the steady state to hold, the method, the rollback, the after-phase and checks,
    the whole variant, each step and each undo; and its verdict."""
    variants: dict[str, dict] = {}
    run: dict = {"run": str(run_dir), "variants": variants}
    for r in records(run_dir / "journal.jsonl", types=("run-start", "event", "run-end")):
        if r["type"] == "run-start":
            run["run_id"] = r.get("run_id")
            continue
        if r["type"] == "run-end":
            run["verdict"] = r.get("verdict")
            continue
        name, v = r.get("variant"), None
        if not name:
            continue
        v = variants.setdefault(name, {"steps": {}, "undo": {}, "marks": {}})
        ev, t, marks = r.get("name"), r["t"], v["marks"]
        if ev == "variant-start":
            marks["start"] = t
        elif ev == "lab-up":
            marks["lab"] = t
            v["lab_up_secs"] = r.get("secs")
        elif ev == "steady-state-held":
            marks["steady"] = t
        elif ev == "step-end" and isinstance(r.get("secs"), (int, float)):
            v["steps"][r.get("step")] = r["secs"]
            key = "rollback_end" if "rollback" in marks else "method_end"
            marks[key] = max(marks.get(key, t), t)
        elif ev == "rollback-start":
            marks["rollback"] = t
        elif ev in ("rollback-done", "undo-end"):
            if ev == "undo-end" and isinstance(r.get("secs"), (int, float)):
                v["undo"][r.get("step")] = r["secs"]
            marks["rollback_end"] = max(marks.get("rollback_end", t), t)
        elif ev == "variant-end":
            marks["end"] = t
            v["verdict"] = r.get("verdict")
    for v in variants.values():
        m = v.pop("marks")

        def between(a, b):
            return round(m[b] - m[a], 1) if a in m and b in m and m[b] >= m[a] else None
        method_end = "rollback" if "rollback" in m else "method_end"
        v["steady_secs"] = between("lab" if "lab" in m else "start", "steady")
        v["method_secs"] = between("steady", method_end)
        v["rollback_secs"] = between("rollback", "rollback_end")
        v["after_secs"] = between("rollback_end" if "rollback_end" in m else method_end, "end")
        v["total_secs"] = between("start", "end")
    return run


# -- the plan ------------------------------------------------------------------------------------------
def change_words(c: dict) -> str:
    def value(x):
        return "unset" if x is None else words(x, 90)
    source = c.get("source") or ""
    source = "image default" if source == IMAGE_DEFAULT else source
    before = value(c["before"]) + (f" ({source})" if source and c["what"] == "setting" else "")
    if c["what"] == "release":
        same = " (the same release: a restart)" if c["before"] == c["after"] else ""
        return f"{c['service']} release {value(c['before'])} -> {value(c['after'])}{same}"
    if c["what"] == "setting":
        return f"{c['service']} {c['key']}: {before} -> {value(c['after'])}"
    back = "" if c.get("lasting", True) else " (put back by the step itself)"
    return f"{c['service']} {c['what']}: {value(c['before'])} -> {value(c['after'])}{back}"


def _changes(cs: list[Change]) -> list[dict]:
    return [c.as_dict() for c in cs]


def _item(x, skip: tuple[str, ...] = ("type",)) -> dict:
    """A probe's, condition's or check's settings (defaults included)."""
    return {k: v for k, v in x.model_dump(mode="json").items() if k not in skip}


def _written(x) -> dict:
    """The item with its fields, and `set`: the ones the file sets (not left at their defaults)."""
    return {"type": x.type, **_item(x), "set": sorted(set(x.model_dump(exclude_defaults=True)) - {"type"})}


def bound_words(cond: dict) -> str:
    parts = []
    for k, v in cond.items():
        if k == "type":
            continue
        if k == "min":
            parts.append(f"≥ {words(v)}" if not isinstance(v, float) else f"≥ {v:g}")
        elif k == "max":
            parts.append(f"≤ {words(v)}" if not isinstance(v, float) else f"≤ {v:g}")
        elif v not in (None, [], {}, ""):
            parts.append(f"{k}={words(v, 60)}")
    return f"{cond['type']} " + ", ".join(parts) if parts else cond["type"]


def variant_plan(exp: Experiment, variant, lab: PlannedLab | None, settings: LabSettings, first: bool) -> tuple[dict, PlannedLab]:
    plan = exp.plan(variant)
    fresh = plan.lab.fresh == "per-variant" or first or lab is None
    if fresh:
        lab = PlannedLab(exp, plan, settings)
    lab.workload = plan.workload
    rows: list[dict] = []
    ss = plan.steady_state
    services = settings.services(pulsar=plan.lab.pulsar, rabbitmq_nodes=plan.lab.rabbitmq_nodes)
    from chaoslab.spec.experiment import _services_words
    lab_words = (("a fresh lab" if fresh else "the lab the previous variant left (lab.fresh: once)")
                 + f": {_services_words(services)}"
                 + (f"; Pulsar {exp.versions.from_} (proxy {settings.proxy_version})" if plan.lab.pulsar else "")
                 + (f"; VMs: {plan.lab.pico_vms} pico, {plan.lab.nano_vms} nano" if plan.lab.pico_vms or plan.lab.nano_vms else ""))
    rows.append({"phase": "before", "id": "lab", "type": None, "when": "first", "does": lab_words,
                 "changes": [], "secs": span(0, None)})
    rows.append({"phase": "before", "id": "workload", "type": plan.workload.type, "when": "then",
                 "does": f"start the workload ({plan.workload.type}), {len(plan.probes)} probe(s) and "
                         f"{len(plan.monitors)} monitor(s)", "changes": [], "secs": span(0, None)})
    rows.append({"phase": "before", "id": "steady-state", "type": None, "when": "then",
                 "does": f"the hypothesis must hold {ss.hold_secs:g} s (within {ss.hold_secs + ss.grace_secs:g} s, "
                         "else the variant ends ERROR and nothing is changed)", "changes": [],
                 "secs": span(ss.hold_secs, ss.hold_secs + ss.grace_secs)})
    # the method: each step describes itself against the lab as planned so far
    described = {}
    for step in plan.method:
        d = described[step.id] = step.describe(lab)
        lab.apply(d.changes, step.id)
    times = schedule(plan.method, {k: d.secs for k, d in described.items()})
    for step in plan.method:
        d, t = described[step.id], times[step.id]
        when = start_words(*t["start"])
        if step.after or step.at_secs is not None or step.delay_secs:
            how = [f"after {step.after}" if step.after else "", f"at {step.at_secs:g} s" if step.at_secs is not None else "",
                   f"+{step.delay_secs:g} s delay" if step.delay_secs else ""]
            when += f" ({', '.join(h for h in how if h)})"
        rows.append({"phase": "method", "id": step.id, "type": step.type, "when": when,
                     "start": span(*t["start"]), "does": d.does, "changes": _changes(d.changes),
                     "secs": span(*d.secs), "needs": sorted(step.needs()),
                     "undo_when": step.undo_when, "ok_required": step.ok_required})
    unbounded = [s.id for s in plan.method if described[s.id].secs[1] is None]
    ends = [times[s.id]["end"] for s in plan.method]
    method = (max(e[0] for e in ends), None if any(e[1] is None for e in ends) else max(e[1] for e in ends))
    # the rollback: undo at the end (undo_when: at-end) always; the rest only after an abort
    at_end = [s for s in reversed(plan.method) if s.undo_when == "at-end" and described[s.id].undo]
    on_abort = [s for s in reversed(plan.method) if s.undo_when == "on-abort" and described[s.id].undo]
    undo_total = (0.0, 0.0)
    for step in at_end:
        d = described[step.id]
        rows.append({"phase": "rollback", "id": f"undo {step.id}", "type": step.type, "when": "at the end",
                     "does": f"undo: {d.undo}", "changes": _changes(d.undo_changes), "secs": span(*d.undo_secs)})
        undo_total = add(undo_total, d.undo_secs)
        lab.apply(d.undo_changes, f"undo {step.id}")
    for step in on_abort:
        d = described[step.id]
        rows.append({"phase": "rollback", "id": f"undo {step.id}", "type": step.type,
                     "when": "on abort", "does": f"undo: {d.undo}",
                     "changes": _changes(d.undo_changes), "secs": span(*d.undo_secs)})
    if plan.rollbacks:   # after an abort: the undo done first (the lab as it would be then)
        abort_lab = copy.deepcopy(lab)
        for step in on_abort:
            abort_lab.apply(described[step.id].undo_changes, f"undo {step.id}")
        for step in plan.rollbacks:
            d = step.describe(abort_lab)
            rows.append({"phase": "rollback", "id": step.id, "type": step.type, "when": "on abort, then",
                         "does": d.does, "changes": _changes(d.changes), "secs": span(*d.secs),
                         "needs": sorted(step.needs())})
    after = plan.after
    after_secs = (0.0 if after.until_held_secs is not None else after.secs, after.secs)
    rows.append({"phase": "after", "id": "after", "type": None, "when": "then",
                 "does": (f"watch until the hypothesis held {after.until_held_secs:g} s (at most {after.secs:g} s)"
                          if after.until_held_secs is not None else f"watch {after.secs:g} s"),
                 "changes": [], "secs": span(*after_secs)})
    if plan.checks:
        rows.append({"phase": "after", "id": "checks", "type": None, "when": "then",
                     "does": "final checks: " + ", ".join(bound_words({"type": c.type, **_item(c)}) for c in plan.checks),
                     "changes": [], "secs": span(0, None)})
    steady = (ss.hold_secs, ss.hold_secs + ss.grace_secs)
    total = add(add(add(steady, method), undo_total), after_secs)
    out = {
        "name": variant.name, "role": variant.role, "description": variant.description, "params": variant.params,
        "lab": {"fresh": fresh, "pulsar": plan.lab.pulsar, "rabbitmq_nodes": plan.lab.rabbitmq_nodes,
                "pico_vms": plan.lab.pico_vms, "nano_vms": plan.lab.nano_vms, "services": services,
                "broker_config": dict(plan.lab.broker_config), "proxy_config": dict(plan.lab.proxy_config),
                "scale_model": plan.lab.scale_model.model_dump() if plan.lab.scale_model.factor != 1 else None},
        "workload": _written(plan.workload),
        "rows": rows,
        "hypothesis": {"window_secs": ss.window_secs, "hold_secs": ss.hold_secs, "grace_secs": ss.grace_secs,
                       "tolerance_secs": ss.tolerance_secs, "abort_on_violation": ss.abort_on_violation,
                       "min_coverage": ss.min_coverage,
                       "conditions": [{"type": c.type, **_item(c)} for c in ss.conditions]},
        "probes": [_written(p) for p in plan.probes],
        "monitors": [_written(m) for m in plan.monitors],
        "checks": [{"type": c.type, **_item(c)} for c in plan.checks],
        "duration": {"steady": span(*steady), "method": span(*method), "undo_at_end": span(*undo_total),
                     "after": span(*after_secs), "total_without_lab_start": span(*total),
                     "unbounded_by": unbounded},
    }
    return out, lab


def _releases(exp: Experiment, plans: list, settings: LabSettings) -> dict[str, dict]:
    """Every Pulsar release the selected variants run, with who needs it, and the proxy's."""
    out: dict[str, dict] = {}
    if not any(p.lab.pulsar for _v, p in plans):
        return out
    out[exp.versions.from_] = {"components": ["broker"], "used_by": {"the lab": ["every broker at the start"]}}
    for v, plan in plans:
        for item in [*plan.steps(), plan.workload]:
            for r in item.pulsar_releases():
                entry = out.setdefault(exp.release(r), {"components": ["broker"], "used_by": {}})
                entry["used_by"].setdefault(v.name, []).append(getattr(item, "id", None) or item.type)
    out.setdefault(settings.proxy_version, {"components": [], "used_by": {}})
    out[settings.proxy_version]["components"].append("proxy")
    out[settings.proxy_version]["used_by"].setdefault("the lab", []).append("the proxy")
    return out


def used_by_words(used_by: dict[str, list[str]]) -> str:
    """{control: [a, b], flip: [a, b]} -> "control, flip: a, b" (variants with the same steps together)."""
    groups: dict[tuple, list[str]] = {}
    for variant, ids in used_by.items():
        groups.setdefault(tuple(dict.fromkeys(ids)), []).append(variant)
    return "; ".join(f"{', '.join(vs)}: {', '.join(ids)}" for ids, vs in groups.items())


def check_releases(releases: dict[str, dict], offline: bool) -> list[dict]:
    from chaoslab.lab.releases import check_release_resolves
    out = []
    for release, entry in releases.items():
        row = {"release": release, "components": entry["components"], "used_by": entry["used_by"]}
        try:
            how = check_release_resolves(release, tuple(entry["components"]), maven=not offline)
        except LabError as exc:
            row.update(status="unresolvable", ok=False, detail=str(exc))
        else:
            if how is None:
                row.update(status="unknown (offline)", ok=None, detail="only Maven could tell; run without --offline")
            else:
                row.update(status="resolves", ok=True, detail=how)
        out.append(row)
    return out


def check_settings(exp: Experiment, plans: list) -> list[dict]:
    """Every broker setting a variant sets, against the target release's own list when it is at
    hand (build/pulsar/<release>/broker-settings.txt; read only, never made here): the run
    refuses a key the release does not have before the lab is touched."""
    from chaoslab.lab.broker_settings import SETTINGS_FILE, describe_unknown, read_settings_file, unknown_settings
    from chaoslab.lab.pulsar_dist import classpath_dir
    wanted: dict[str, set] = {}
    for _v, plan in plans:
        if not plan.lab.pulsar:
            continue
        wanted.setdefault(exp.versions.from_, set()).update(plan.lab.broker_config)
        for step in plan.steps():
            config, version = getattr(step, "broker_config", None), getattr(step, "version", None)
            if config and isinstance(version, str):
                wanted.setdefault(exp.release(version), set()).update(config)
    out = []
    for release, keys in wanted.items():
        if not keys:
            continue
        try:
            known = read_settings_file(classpath_dir(release) / SETTINGS_FILE)
        except LabError:
            known = None
        if known is None:
            out.append({"release": release, "keys": sorted(keys), "ok": None,
                        "detail": "not checked: the release's classpath is not assembled yet (the run checks them)"})
            continue
        bad = unknown_settings(sorted(keys), known)
        out.append({"release": release, "keys": sorted(keys), "ok": not bad,
                    "detail": describe_unknown(release, bad, known) if bad else "every key is one of the release's settings"})
    return out


def images_needed(releases: dict[str, dict], settings: LabSettings, pulsar: bool) -> list[str]:
    from chaoslab.lab.images import BASE_IMAGE, JRE_IMAGE, RABBITMQ_IMAGE, pulsar_image
    tags = [BASE_IMAGE, RABBITMQ_IMAGE]
    if pulsar:
        tags += [JRE_IMAGE, *(pulsar_image(r) for r in releases), settings.agent_image]
    return list(dict.fromkeys(tags))


def check_images(tags: list[str], engine=None) -> tuple[str, list[dict]]:
    """(engine status, per image: present / missing / unknown). `engine`: a callable returning a
    docker client or raising (default: chaoslab.lab.cluster.engine with a short timeout)."""
    if engine is None:
        from chaoslab.lab.cluster import engine as default_engine

        def engine():
            return default_engine(timeout=ENGINE_TIMEOUT_SECS)
    try:
        client = engine()
    except Exception as exc:
        why = " ".join(str(exc).split())[:300]
        return f"no engine answers: {why}", [{"image": t, "status": "unknown (no engine)", "ok": None} for t in tags]
    out = []
    for tag in tags:
        try:
            client.images.get(tag)
            out.append({"image": tag, "status": "present", "ok": True})
        except Exception as exc:
            missing = type(exc).__name__ == "ImageNotFound"
            out.append({"image": tag, "ok": None if not missing else False,
                        "status": "missing: the run builds it" if missing else f"unknown ({type(exc).__name__})"})
    return "answers", out


def build(path: str | Path, variants: list[str] | None = None, offline: bool = False, engine=None,
          runs_dir: Path | None = None, settings: LabSettings | None = None) -> dict:
    """The plan of an experiment file as data (what `chaoslab plan --json` prints). A broken file
    raises SpecError (one line); nothing is started."""
    path = Path(path)
    exp = load(path)
    settings = settings or LabSettings.from_env()
    settings = LabSettings(**{**settings.__dict__, "pulsar_from": exp.versions.from_, "pulsar_to": exp.versions.to})
    selected = [exp.variant(n) for n in dict.fromkeys(variants)] if variants else list(exp.variants)
    plans = [(v, exp.plan(v)) for v in selected]
    out_variants, lab = [], None
    for i, v in enumerate(selected):
        planned, lab = variant_plan(exp, v, lab, settings, first=i == 0)
        out_variants.append(planned)
    releases = _releases(exp, plans, settings)
    release_rows = check_releases(releases, offline)
    pulsar = any(p.lab.pulsar for _v, p in plans)
    engine_status, image_rows = check_images(images_needed(releases, settings, pulsar), engine)
    setting_rows = check_settings(exp, plans)
    runs_dir = Path(runs_dir or RUNS_DIR)
    last = last_run(runs_dir, exp.name) if runs_dir.is_dir() else None
    timings = run_timings(last) if last else None
    if timings:
        for v in out_variants:
            t = timings["variants"].get(v["name"])
            v["last_run"] = t
            if t:
                for row in v["rows"]:
                    key = row["id"].removeprefix("undo ") if row["id"].startswith("undo ") else row["id"]
                    src = t["undo"] if row["id"].startswith("undo ") else t["steps"]
                    if key in src:
                        row["last_run_secs"] = src[key]
                    elif row["id"] == "lab" and t.get("lab_up_secs") is not None:
                        row["last_run_secs"] = t["lab_up_secs"]
                    elif row["id"] == "steady-state" and t.get("steady_secs") is not None:
                        row["last_run_secs"] = t["steady_secs"]
                    elif row["id"] == "after" and t.get("after_secs") is not None:
                        row["last_run_secs"] = t["after_secs"]
    problems = [r["detail"] for r in release_rows if r["ok"] is False]
    problems += [r["detail"] for r in setting_rows if r["ok"] is False]
    total = (0.0, 0.0)
    for v in out_variants:
        d = v["duration"]["total_without_lab_start"]
        total = add(total, (d["min_secs"], d["max_secs"]))
    return {
        "file": str(path), "experiment": exp.name, "title": exp.title,
        "versions": exp.versions.model_dump(by_alias=True) if pulsar else {},
        "offline": offline, "variants": out_variants,
        "releases": release_rows, "broker_settings": setting_rows,
        "engine": engine_status, "images": image_rows,
        "last_run": ({"run": timings["run"], "run_id": timings.get("run_id"), "verdict": timings.get("verdict")}
                     if timings else None),
        "duration": {"file_without_lab_starts": span(*total),
                     # the selected variants' time in the last run (a variant it did not run adds nothing)
                     "last_run_secs": (round(sum((v.get("last_run") or {}).get("total_secs") or 0
                                                 for v in out_variants), 1) if timings else None)},
        "problems": problems,
        "exit_code": 2 if problems else 0,
    }


# -- for people ---------------------------------------------------------------------------------------
def _set_words(item: dict) -> str:
    """"pulsar-cluster (lookup_sample=10, ask_every_broker=yes)": only what the file sets."""
    shown = {k: item[k] for k in item.get("set", []) if k in item}
    return item["type"] + (f" ({words(shown, 160)})" if shown else "")


def param_words(params: dict) -> str:
    """A variant's parameters; one that stands for a whole section (a list of steps, a workload)
    is only named: the section is laid out below."""
    def one(k, v):
        if isinstance(v, list) or (isinstance(v, dict) and any(isinstance(x, (dict, list)) for x in v.values())):
            return f"{k}=(a section, laid out below)"
        return f"{k}={words(v, 160) or 'none'}"
    return ", ".join(one(k, v) for k, v in params.items())


def render(plan: dict, console) -> None:
    """The plan for people: per variant its lab, its steps (phase, when, step, the file's bounds,
    the last run's time; below each, what it does and changes), its hypothesis; then the
    releases, the broker settings, the images and the expected duration."""
    from rich.table import Table

    def say(text: str = "") -> None:
        console.print(text, highlight=False, markup=False)
    say(f"{plan['experiment']}: {plan['title']} ({plan['file']})")
    say("a dry run: nothing is started" + (f"; releases {words(plan['versions'])}" if plan["versions"] else ""))
    for v in plan["variants"]:
        say()
        say(f"variant {v['name']} ({v['role']})" + (f": {v['description']}" if v["description"] else ""))
        if v["params"]:
            say(f"  params: {param_words(v['params'])}")
        lab = v["lab"]
        if lab["broker_config"]:
            say(f"  brokers start with {words(lab['broker_config'])} (lab.broker_config) over the image's broker.conf")
        if lab["proxy_config"]:
            say(f"  the proxy starts with {words(lab['proxy_config'])} (lab.proxy_config)")
        say(f"  workload: {_set_words(v['workload'])}")
        cells = []
        for row in v["rows"]:
            s = row["secs"]
            file_secs = "-" if s["min_secs"] == 0 and s["max_secs"] is None else secs_words(s["min_secs"], s["max_secs"])
            last = row.get("last_run_secs")
            cells.append((row["phase"], row["when"], row["id"], file_secs, "-" if last is None else f"{last:g} s"))
        head = ("phase", "when", "step", "file", "last run")
        widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]

        def columns(c) -> str:
            return "  " + "  ".join(x.ljust(w) if i < 3 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths)))
        say(columns(head).rstrip())
        for row, c in zip(v["rows"], cells):
            say(columns(c).rstrip())
            say(f"      {row['does']}")
            for change in row.get("changes") or []:
                say(f"      - {change_words(change)}")
            if row.get("needs"):
                say("      - needs " + ", ".join(NEEDS_HOST.get(n, n) for n in row["needs"]))
        h = v["hypothesis"]
        abort = (f"abort after {h['tolerance_secs']:g} s violated" if h["abort_on_violation"]
                 else "never aborts (abort_on_violation: false)")
        say(f"  hypothesis, each second over {h['window_secs']:g} s ({abort}; a PASS needs "
            f"{h['min_coverage']:.0%} of the method judged): "
            + ("; ".join(bound_words(c) for c in h["conditions"]) or "no condition"))
        say("  probes: " + ("; ".join(_set_words(p) for p in v["probes"]) or "none")
            + ("; monitors: " + "; ".join(_set_words(m) for m in v["monitors"]) if v["monitors"] else ""))
        d = v["duration"]
        total = d["total_without_lab_start"]
        line = f"  expected: {secs_words(total['min_secs'], total['max_secs'])} from the file"
        if d["unbounded_by"]:
            line += f" ({', '.join(d['unbounded_by'])}: no bound in the file)"
        line += " plus the lab's start"
        last = v.get("last_run")
        if last and last.get("total_secs") is not None:
            line += f"; the last run took {last['total_secs']:g} s ({last.get('verdict') or 'no verdict'})"
        say(line)
    say()
    if plan["releases"]:
        table = Table(title="releases", box=None, pad_edge=False, header_style="bold", title_justify="left")
        for col in ("release", "status", "how"):
            table.add_column(col, no_wrap=True)
        table.add_column("needed by", overflow="fold")
        for r in plan["releases"]:
            table.add_row(r["release"], r["status"], r["detail"] if r["ok"] is not False else "see below",
                          used_by_words(r["used_by"]))
        console.print(table)
    unchecked = [s["release"] for s in plan["broker_settings"] if s["ok"] is None]
    for s in plan["broker_settings"]:
        if s["ok"] is not None:
            say(f"broker settings on {s['release']} ({', '.join(s['keys'])}): {'ok' if s['ok'] else 'PROBLEM'}: {s['detail']}")
    if unchecked:
        say(f"broker settings on {', '.join(unchecked)}: not checked here (the release's classpath is not assembled "
            "yet; the run checks them before the lab is touched)")
    by_status: dict[str, list[str]] = {}
    for i in plan["images"]:
        by_status.setdefault(i["status"], []).append(i["image"])
    engine = "the engine answers" if plan["engine"] == "answers" else "no engine answers"
    say(f"images ({engine}): " + "; ".join(f"{status}: {', '.join(tags)}" for status, tags in by_status.items()))
    d = plan["duration"]
    total = d["file_without_lab_starts"]
    line = (f"expected duration: {secs_words(total['min_secs'], total['max_secs'])} from the file, plus each fresh "
            "lab's start and any image build")
    if plan["last_run"]:
        line += (f"; the last run ({plan['last_run']['run_id']}, {plan['last_run']['verdict'] or 'no verdict'}) "
                 f"took {d['last_run_secs']:g} s")
    else:
        line += "; no earlier run of it in runs/"
    say(line)
    for p in plan["problems"]:
        say(f"PROBLEM: {p}")
    say("plan: PROBLEMS - the run would fail before it starts" if plan["problems"] else
        "plan ok: the file is valid and nothing it needs is known to be missing")
