"""Pre-upgrade validation gate: run the rolling-upgrade method with the user's change and answer
safe (0) / unsafe (1) / the lab itself failed (2, never "safe").

    chaoslab gate [--from V] [--to V] [--broker-conf FILE] [--experiment FILE] [--junit PATH]

The gate's experiment is a model copy of a rolling-upgrade experiment (transfer-shedder by
default) with one variant, `change`, whose parameters are the user's release and settings: its
method must use `$version` and `$broker_config`. Each roll-broker step's undo restores exactly the
settings it changed; the base file's declared rollback steps (the incident's system-topic
recovery) are left out, they belong to that incident. JUnit XML and the usual run folder are written.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from chaoslab.settings import REPO_ROOT, check_version
from chaoslab.spec.experiment import Experiment, SpecError, Variant, load

DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "transfer-shedder.yaml"
VERDICT_WORDS = {0: "SAFE", 1: "UNSAFE", 2: "LAB ERROR", 130: "INTERRUPTED"}

_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(.*)$")


def read_broker_conf(path: Path) -> dict[str, str]:
    """broker.conf-style `key=value` lines; comments and blank lines ignored."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"--broker-conf {path}: {exc.strerror}") from None
    conf = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise SpecError(f"--broker-conf {path}, line {n}: expected key=value, got {line[:60]!r}")
        conf[m.group(1)] = m.group(2).strip()
    return conf


def gate_experiment(base: Experiment, from_: str | None, to: str | None, broker_conf: dict[str, str]) -> Experiment:
    versions = base.versions.model_copy(update={"from_": check_version(from_) if from_ else base.versions.from_,
                                                "to": check_version(to) if to else base.versions.to})
    description = (f"rolling upgrade {versions.from_} -> {versions.to}"
                   + (f" with {', '.join(f'{k}={v}' for k, v in broker_conf.items())}" if broker_conf else ""))
    change = Variant(name="change", role="primary", description=description,
                     params={"version": "to", "broker_config": dict(broker_conf)})
    exp = base.model_copy(update={"name": "gate", "title": f"gate: {description}", "versions": versions,
                                  "variants": [change], "rollbacks": []})
    exp._source = ""  # its own YAML is written into the bundle, so replay re-runs exactly this gate
    try:
        exp.plan(change)
    except SpecError as exc:
        raise SpecError(f"the gate's experiment must roll brokers with `version: $version` and "
                        f"`broker_config: $broker_config`: {exc}") from None
    return exp


def is_noop(exp: Experiment, broker_conf: dict[str, str]) -> bool:
    """Same release and no settings: the rolling upgrade is a plain rolling restart."""
    return not broker_conf and exp.versions.to == exp.versions.from_


def junit(path: Path, runner, code: int) -> None:
    suite = ET.Element("testsuite", name="chaoslab-gate", tests="0", failures="0", errors="0")
    cases = 0
    failures = errors = 0
    for r in runner.results:
        case = ET.SubElement(suite, "testcase", classname=f"chaoslab.{runner.exp.name}", name=f"{r.name}: {r.description}",
                             time=f"{max(0.0, r.ended - r.started):.1f}")
        cases += 1
        if r.verdict == "FAIL":
            failures += 1
            f = ET.SubElement(case, "failure", message=(r.reasons[0] if r.reasons else "hypothesis violated"))
            f.text = "\n".join(r.reasons + [f"final checks: {[(c['name'], c['outcome'], c['evidence']) for c in r.checks]}"])
        elif r.verdict == "ERROR":
            errors += 1
            ET.SubElement(case, "error", message=(r.reasons[0] if r.reasons else "lab error"))
        for step in (s for s in r.steps if s["type"] == "roll-broker" and "functional_ok" in s):
            sc = ET.SubElement(suite, "testcase", classname=f"chaoslab.{runner.exp.name}.{r.name}",
                               name=f"{step['broker']} healthy after roll", time=f"{step['wait_secs']}")
            cases += 1
            if not step["functional_ok"]:
                failures += 1
                ET.SubElement(sc, "failure", message=f"{step['broker']}: functional check failed "
                                                     f"({step.get('functional_detail')}); shallow={step['shallow_ok']}")
    if code == 2 and not runner.results:
        case = ET.SubElement(suite, "testcase", classname="chaoslab", name="lab")
        ET.SubElement(case, "error", message="the lab itself failed (see the run folder)")
        cases += 1
        errors += 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def green_but_broken(result) -> dict[str, int]:
    """Brokers the broker-views probe found green-but-broken, with the seconds they were."""
    seconds = ((result.probes or {}).get("views") or {}).get("seconds") or {}
    return {b: c["green-but-broken"] for b, c in sorted(seconds.items()) if c.get("green-but-broken")}


def summary(runners: list, codes: list[int], final: int) -> dict:
    """`chaoslab gate --json`: one object a CI step can read."""
    from chaoslab.rates import wilson
    from chaoslab.run.runner import violation_text
    judged = [c for c in codes if c in (0, 1)]
    failed = judged.count(1)
    lo, hi = wilson(failed, len(judged))
    first = None
    gbb: dict[str, int] = {}
    for runner in runners:
        for r in runner.results:
            if first is None and r.verdict == "FAIL":
                v = r.first_violations[0] if r.first_violations else None
                first = {"run": str(runner.run_dir), "reason": r.reasons[0] if r.reasons else None,
                         "violation": v, "text": violation_text(v) if v else None,
                         "failed_checks": [c for c in r.checks if c["outcome"] == "fail"]}
            for b, secs in green_but_broken(r).items():
                gbb[b] = gbb.get(b, 0) + secs
    return {"verdict": VERDICT_WORDS.get(final, "LAB ERROR"), "exit_code": final, "runs": len(codes),
            "judged_runs": len(judged), "failed_runs": failed, "failure_rate_interval_95": [round(lo, 3), round(hi, 3)],
            "failure_rate_upper_95": round(hi, 3) if failed == 0 and judged else None,
            "first_violation": first, "green_but_broken": gbb,
            "run_folders": [str(r.run_dir) for r in runners]}


def load_base(path: Path | None) -> Experiment:
    return load(path or DEFAULT_EXPERIMENT)
