"""Pre-upgrade validation gate: run the rolling-upgrade method with the user's change and answer
safe (0) / unsafe (1) / the lab itself failed (2, never "safe").

    chaoslab gate [--from V] [--to V] [--broker-conf FILE] [--experiment FILE] [--junit PATH]

The gate's experiment is a model copy of a rolling-upgrade experiment (transfer-shedder by
default) with one variant, `change`, whose parameters are the user's release and settings: its
method must use `$version` and `$broker_config`. Each roll-broker step's undo restores exactly the
settings it changed; the base file's declared rollback steps (the incident's system-topic
recovery) are left out, they belong to that incident. JUnit XML (chaoslab.ci), the usual run
folder and, on GitHub Actions, a step summary and an ::error are written (chaoslab/cli.py).
"""

from __future__ import annotations

import re
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


def markdown_head(result: dict, description: str) -> str:
    """The top of the gate's CI step summary (Markdown), from summary(): the verdict and exit
    code, the change, the runs, the first violation, the procedure advice of an UNSAFE change."""
    lo, hi = result["failure_rate_interval_95"]
    lines = [f"## chaoslab gate: {result['verdict']} (exit {result['exit_code']})", "", f"Change: {description}.", "",
             f"{result['runs']} run(s): {result['failed_runs']} failed of {result['judged_runs']} judged "
             f"(failure rate, 95 % interval {lo:.2f}-{hi:.2f})."]
    first = result.get("first_violation") or {}
    if first.get("text") or first.get("reason"):
        lines += ["", f"First violation: {first.get('text') or first.get('reason')}"]
    for item in result.get("not_judged") or []:
        lines += ["", f"Not judged ({item.get('verdict', 'lab error')}): "
                      + "; ".join(item.get("reasons") or [item.get("reason") or "see the run folder"])]
    if result.get("advice"):
        lines += ["", "How else to make this change:", "", *(f"- {line}" for line in result["advice"]["lines"])]
    return "\n".join(lines)


def load_base(path: Path | None) -> Experiment:
    return load(path or DEFAULT_EXPERIMENT)
