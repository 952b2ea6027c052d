"""Pre-upgrade validation gate: run the rolling-upgrade method with the user's change and answer
safe (0) / unsafe (1) / the lab itself failed (2, never "safe").

    chaoslab gate [--from V] [--to V] [--broker-conf FILE] [--experiment FILE] [--junit PATH]

The change replaces the transfer-shedder experiment's flip: brokers are rolled one at a time to
`--to` with FILE's `key=value` lines applied to each, under the same steady-state hypothesis,
abort and rollback. JUnit XML (for CI systems) and the usual run folder are written.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

from chaoslab.experiment.spec import Experiment, SpecError, load, parse
from chaoslab.settings import REPO_ROOT, check_version

DEFAULT_EXPERIMENT = REPO_ROOT / "experiments" / "transfer-shedder.yaml"
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
    versions = dataclasses.replace(base.versions, from_=check_version(from_) if from_ else base.versions.from_,
                                   to=check_version(to) if to else base.versions.to)
    description = (f"rolling upgrade {versions.from_} -> {versions.to}"
                   + (f" with {', '.join(f'{k}={v}' for k, v in broker_conf.items())}" if broker_conf else ""))
    # a rollback must at least revert what the change set, to the values the cluster ran before
    revert = {**{k: base.lab.broker_config.get(k, "") for k in broker_conf if k not in base.rollback.revert},
              **base.rollback.revert}
    revert = {k: v for k, v in revert.items() if v != ""}
    # The gate's own experiment file, so that its bundle replays exactly this gate (validated again).
    doc = yaml.safe_load(base.source)
    doc["name"] = "gate"
    doc["title"] = f"gate: {description}"
    doc["versions"] = {"from": versions.from_, "to": versions.to, "fixed": versions.fixed}
    doc.setdefault("rollback", {})["revert"] = revert
    doc["variants"] = [{"name": "change", "role": "primary", "to": "to", "description": description,
                        "broker_config": dict(broker_conf)}]
    text = "# written by chaoslab gate\n" + yaml.safe_dump(doc, sort_keys=False)
    return parse(text, env={})


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
            f.text = "\n".join(r.reasons + [f"first violations: {r.first_violations}", f"loss: {r.loss}"])
        elif r.verdict == "ERROR":
            errors += 1
            ET.SubElement(case, "error", message=(r.reasons[0] if r.reasons else "lab error"))
        for step in r.steps:
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


def load_base(path: Path | None) -> Experiment:
    exp = load(path or DEFAULT_EXPERIMENT)
    if not isinstance(exp, Experiment):
        raise SpecError(f"{path}: the gate needs a rolling-upgrade experiment")
    return exp
