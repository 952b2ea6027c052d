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

from chaoslab import procedures
from chaoslab.lab.broker_settings import control_character
from chaoslab.settings import REPO_ROOT, check_version
from chaoslab.spec.base import as_reason, probe_why
from chaoslab.spec.experiment import Experiment, SpecError, Variant, load

DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "transfer-shedder.yaml"
VERDICT_WORDS = {0: "SAFE", 1: "UNSAFE", 2: "INCONCLUSIVE", 130: "INTERRUPTED"}
# what each variant verdict means for the gate (exit 2 covers both: "the lab could not tell")
GATE_WORDS = {"PASS": "SAFE", "FAIL": "UNSAFE", "INCONCLUSIVE": "INCONCLUSIVE", "ERROR": "LAB ERROR",
              "INTERRUPTED": "INTERRUPTED"}

_LINE = re.compile(r"^[ \t]*([A-Za-z][A-Za-z0-9_.]*)[ \t]*=[ \t]*(.*?)[ \t]*$")


def read_broker_conf(path: Path) -> dict[str, str]:
    """broker.conf-style `key=value` lines; comments (#) and blank lines ignored.

    Values are taken literally (no Properties escapes or continuation lines), trimmed of spaces
    and tabs around them. The file must be UTF-8; a value must be one line of text (no control
    characters); a key may be set once. Anything else is a SpecError naming the line."""
    try:
        if Path(path).is_file() and Path(path).stat().st_size > 1 << 20:
            raise SpecError(f"--broker-conf {path}: larger than 1 MiB: not a broker.conf change")
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SpecError(f"--broker-conf {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError(f"--broker-conf {path}, line {line}: not UTF-8 text "
                        f"(byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    conf: dict[str, str] = {}
    seen: dict[str, int] = {}
    for n, line in enumerate(text.removeprefix("\ufeff").split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip(" \t") or line.lstrip(" \t").startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            where = control_character(line)
            raise SpecError(f"--broker-conf {path}, line {n}: "
                            + (f"the line has {where}" if where else f"expected key=value, got {line[:60]!r}"))
        key, value = m.group(1), m.group(2)
        where = control_character(value)
        if where:
            raise SpecError(f"--broker-conf {path}, line {n}: the value of {key} must be one line of text; "
                            f"it has {where}")
        if key in seen:
            raise SpecError(f"--broker-conf {path}, line {n}: {key} is already set on line {seen[key]}")
        seen[key] = n
        conf[key] = value
    return conf


def check_broker_conf_keys(exp: Experiment, broker_conf: dict[str, str], resolve: bool = True, log=print) -> None:
    """UnknownSetting (exit 2) for a key of `broker_conf` that the release the gate rolls to
    (exp.versions.to) does not have, naming the closest real key: Pulsar would ignore it and the
    gate would judge a change it never made. Reads the release's settings list (made with its
    classpath; with resolve=True the classpath is assembled first if need be - Maven, no
    container engine). Call it before anything is started or removed."""
    from chaoslab.lab.broker_settings import check_broker_settings
    check_broker_settings(exp.versions.to, broker_conf, resolve=resolve, log=log)


def scale_change(base: Experiment, conf: dict[str, str]) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The user's production settings in the lab's terms, through the base experiment's scale
    model: (settings for the lab, {key: "production -> lab"} for those translated, problems for
    values the lab cannot represent)."""
    model = base.plan(base.primary).lab.scale_model
    lab, translated, problems = {}, {}, []
    for key, value in conf.items():
        new, problem = model.to_lab(key, value)
        if problem:
            problems.append(problem)
        lab[key] = new
        if new != value:
            translated[key] = f"{value} -> {new}"
    return lab, translated, problems


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


def junit(path: Path, runner, code: int, message: str | None = None) -> None:
    """One test case per variant (and per rolled broker). FAIL is a <failure>; INCONCLUSIVE,
    ERROR and INTERRUPTED are <error>s: a CI system must never read them as green. A run that
    produced no variant result at all (the lab failed first, an interrupt, a refused change)
    is one <error> case with the reason."""
    suite = ET.Element("testsuite", name="chaoslab-gate", tests="0", failures="0", errors="0")
    cases = failures = errors = 0
    name = runner.exp.name if runner is not None else "gate"
    for r in (runner.results if runner is not None else []):
        case = ET.SubElement(suite, "testcase", classname=f"chaoslab.{name}", name=f"{r.name}: {r.description}",
                             time=f"{max(0.0, (r.ended or r.started) - r.started):.1f}")
        cases += 1
        if r.verdict == "FAIL":
            failures += 1
            f = ET.SubElement(case, "failure", message=(as_reason(r.reasons[0])["short"] if r.reasons else "hypothesis violated"))
            f.text = "\n".join(_texts(r.reasons) + [f"final checks: {[(c['name'], c['outcome'], c['evidence']) for c in r.checks]}"])
        elif r.verdict in ("ERROR", "INCONCLUSIVE", "INTERRUPTED"):
            errors += 1
            e = ET.SubElement(case, "error", type=r.verdict,
                              message=f"{r.verdict}: " + (as_reason(r.reasons[0])["short"] if r.reasons else r.verdict.lower()))
            e.text = "\n".join(_texts(r.reasons) + list(r.notes))
        for step in (s for s in r.steps if s["type"] == "roll-broker" and "functional_ok" in s):
            sc = ET.SubElement(suite, "testcase", classname=f"chaoslab.{name}.{r.name}",
                               name=f"{step['broker']} healthy after roll", time=f"{step['wait_secs']}")
            cases += 1
            if not step["functional_ok"]:
                note = (f"{step['broker']}: functional check failed right after the roll "
                        f"({step.get('functional_detail')}); shallow={step['shallow_ok']}")
                if code == 1:
                    failures += 1
                    ET.SubElement(sc, "failure", message=note)
                else:   # the hypothesis decides; a moment's failed check beside a SAFE run is a note
                    ET.SubElement(sc, "system-out").text = note
    if code != 0 and failures + errors == 0:
        # a non-zero run must never read as green, whatever produced it
        case = ET.SubElement(suite, "testcase", classname="chaoslab", name="gate")
        kind = {130: "INTERRUPTED", 1: "UNSAFE"}.get(code, "LAB ERROR")
        why = message or (getattr(runner, "error", None) if runner is not None else None) or {
            130: "interrupted before a verdict", 1: "unsafe"}.get(code, "the lab itself failed (see the run folder)")
        ET.SubElement(case, "error", type=kind, message=f"{kind}: {why}")
        cases += 1
        errors += 1
    if cases == 0:
        ET.SubElement(suite, "testcase", classname="chaoslab", name="gate")
        cases = 1
    suite.set("tests", str(cases))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def _texts(reasons: list) -> list[str]:
    return [as_reason(x)["text"] for x in reasons]


def observations(result) -> list[str]:
    """What the variant's probes say beside the verdict (their why(): e.g. a broker found
    green-but-broken, with its seconds), from its probe summaries."""
    return probe_why(result.probes or {})


def summary(runners: list, codes: list[int], final: int, broker_conf: dict[str, str] | None = None) -> dict:
    """`chaoslab gate --json`: one object a CI step can read."""
    from chaoslab.rates import wilson
    from chaoslab.run.runner import violation_text
    judged = [c for c in codes if c in (0, 1)]
    failed = judged.count(1)
    lo, hi = wilson(failed, len(judged))
    first = None
    seen: list[dict] = []
    inconclusive, notes, coverage = [], [], []
    for runner in runners:
        if getattr(runner, "error", None):
            inconclusive.append({"run": str(runner.run_dir), "reason": runner.error})
        for r in runner.results:
            if r.verdict in ("INCONCLUSIVE", "ERROR"):
                inconclusive.append({"run": str(runner.run_dir), "verdict": r.verdict, "reasons": _texts(r.reasons)})
            notes += r.notes
            coverage.append({"run": str(runner.run_dir), "variant": r.name, "coverage": r.coverage})
            if first is None and r.verdict == "FAIL":
                v = r.first_violations[0] if r.first_violations else None
                first = {"run": str(runner.run_dir), "reason": as_reason(r.reasons[0])["text"] if r.reasons else None,
                         "violation": v, "text": violation_text(v) if v else None,
                         "failed_checks": [c for c in r.checks if c["outcome"] == "fail"]}
            said = observations(r)
            if said:
                seen.append({"run": str(runner.run_dir), "variant": r.name, "says": said})
    verdict = VERDICT_WORDS.get(final, "LAB ERROR")
    if final == 2:
        verdicts = {r.verdict for runner in runners for r in runner.results}
        errored = any(getattr(runner, "error", None) for runner in runners)
        verdict = "INCONCLUSIVE" if verdicts == {"INCONCLUSIVE"} and not errored else "LAB ERROR"
    from chaoslab.rates import detection_power
    return {"verdict": verdict, "exit_code": final, "runs": len(codes),
            "detection_power": detection_power(max(1, len(codes))),
            "not_judged": inconclusive, "notes": notes, "coverage": coverage,
            "judged_runs": len(judged), "failed_runs": failed, "failure_rate_interval_95": [round(lo, 3), round(hi, 3)],
            "failure_rate_upper_95": round(hi, 3) if failed == 0 and judged else None,
            "first_violation": first, "observations": seen,
            "run_folders": [str(r.run_dir) for r in runners],
            # UNSAFE: the procedure measured SAFE for this change, or that none was (chaoslab/procedures.py)
            "advice": procedures.advice(broker_conf or {}) if final == 1 else None}


def load_base(path: Path | None) -> Experiment:
    return load(path or DEFAULT_EXPERIMENT)
