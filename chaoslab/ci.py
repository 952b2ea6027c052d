"""What a CI system reads from `chaoslab experiment` and `chaoslab gate`: JUnit XML, the `--json`
object, and on GitHub Actions a step summary and `::error` workflow commands (docs/ci.md).

JUnit: one <testsuite> per run (a series, --repeat N, is a <testsuites> holding one per run).
In it, per variant, in this order (test case name, classname):

    <variant>: <description>      chaoslab.<experiment>            the variant's verdict
    condition <type>              chaoslab.<experiment>.<variant>  each steady-state condition
    check <name>                  chaoslab.<experiment>.<variant>  each final check
    <broker> healthy after roll   chaoslab.<experiment>.<variant>  each rolled broker

and a skipped case for each selected variant the run never reached. Only the variants that
decide the run's verdict (runner.deciding: the primary, or every variant run when the primary
was not) can fail or error; the others' verdicts are said in <system-out>, so a run that exits 0
is green. FAIL is a <failure> whose message names the first violation; INCONCLUSIVE, ERROR and
INTERRUPTED are <error>s, and a run that exits 2 or 130 always holds at least one <error>: a CI
system must never read it as passed. Nothing here changes a verdict or an exit code.
"""

from __future__ import annotations

import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from chaoslab.run.runner import VERDICTS, deciding, violation_text
from chaoslab.spec.base import as_reason

# the reasons that say the steady-state hypothesis itself failed (Runner._verdict)
HYPOTHESIS_KINDS = ("aborted", "violated", "still-violated")
NOT_JUDGED = ("ERROR", "INTERRUPTED")


# -- what a run says ---------------------------------------------------------------------------------
def run_verdict(runner, code: int) -> str:
    """The run's verdict word as its journal's run-end says it: PASS, FAIL, ERROR, INTERRUPTED,
    or INCONCLUSIVE for an exit 2 whose deciding variants could not tell (and no lab error)."""
    word = VERDICTS.get(code, "ERROR")
    if code == 2 and runner is not None and runner.results and not runner.error:
        verdicts = {r.verdict for r in deciding(runner.results)}
        if "INCONCLUSIVE" in verdicts and not verdicts & {"INTERRUPTED", "FAIL", "ERROR"}:
            word = "INCONCLUSIVE"
    return word


def series_verdict(runners: list, codes: list[int], final: int) -> str:
    """A series' word (--repeat N): that of its exit code; an exit 2 is INCONCLUSIVE only when
    every run that ended 2 was."""
    words = {run_verdict(r, c) for r, c in zip(runners, codes) if c == final}
    return "INCONCLUSIVE" if final == 2 and words == {"INCONCLUSIVE"} else VERDICTS.get(final, "ERROR")


def hypothesis_violations(r) -> list[dict]:
    """The violations behind the reasons that say the hypothesis failed (abort, violated past the
    tolerance, still violated at the end), in the order the reasons give them."""
    return [v for x in r.reasons if as_reason(x)["kind"] in HYPOTHESIS_KINDS for v in as_reason(x)["violations"]]


def first_violation(r) -> dict | None:
    """The variant's first violation: the tracker's first violated second, else the first
    violation a reason carries; None when nothing was violated."""
    if r.first_violations:
        return r.first_violations[0]
    return next((v for x in r.reasons for v in as_reason(x)["violations"]), None)


def headline(r) -> str:
    """One line for a variant that is not PASS: its first reason's headline, and for a FAIL the
    first violation behind it."""
    head = as_reason(r.reasons[0])["short"] if r.reasons else {"FAIL": "hypothesis violated"}.get(r.verdict, r.verdict.lower())
    v = first_violation(r) if r.verdict == "FAIL" else None
    if v is None or head.startswith("first violation"):
        return head
    return f"{head}; first violation: {violation_text(v)}"


def not_run(runner) -> list[str]:
    """Selected variants the run never reached (it ended before them)."""
    done = {r.name for r in runner.results}
    return [v.name for v in getattr(runner, "selected", []) if v.name not in done]


def variant_json(r, decides: bool) -> dict:
    v = first_violation(r)
    return {"name": r.name, "role": r.role, "verdict": r.verdict, "decides": decides,
            "reasons": [as_reason(x)["text"] for x in r.reasons],
            "first_violation": {"violation": v, "text": violation_text(v)} if v else None,
            "checks": [{"name": c["name"], "outcome": c["outcome"], "evidence": c.get("evidence", "")} for c in r.checks],
            "coverage": r.coverage, "notes": list(r.notes)}


def run_json(runner, code: int, junit: Path | None = None, bundle: Path | None = None) -> dict:
    """`chaoslab experiment --json`: one object a CI step can read."""
    decide = {id(r) for r in deciding(runner.results)}
    report = Path(runner.run_dir) / "report.md"
    return {"experiment": runner.exp.name, "run_folder": str(runner.run_dir), "verdict": run_verdict(runner, code),
            "exit_code": code, "error": runner.error, "junit": str(junit) if junit else None,
            "report": str(report) if report.exists() else None, "bundle": str(bundle) if bundle else None,
            "variants": [variant_json(r, id(r) in decide) for r in runner.results], "not_run": not_run(runner)}


def problem(runner, code: int, message: str | None = None) -> str:
    """Why a run is not green, for an ::error: the first deciding variant that is not PASS (its
    headline, and for a FAIL the first violation and the failed checks), else the lab's error."""
    lines = []
    for r in (deciding(runner.results) if runner is not None else []):
        if r.verdict == "PASS":
            continue
        head = as_reason(r.reasons[0])["short"] if r.reasons else r.verdict.lower()
        lines.append(f"{r.name} {r.verdict}: {head}")
        v = first_violation(r) if r.verdict == "FAIL" else None
        if v:
            lines.append(f"first violation: {violation_text(v)}")
        lines += [f"final check {c['name']} failed: {c.get('evidence', '')}" for c in r.checks if c["outcome"] == "fail"]
        break
    if not lines:
        lines.append(message or (runner.error if runner is not None else None)
                     or {130: "interrupted before a verdict"}.get(code, "the lab itself failed (see the run folder)"))
    if runner is not None:
        lines.append(f"run folder: {runner.run_dir}")
    return "\n".join(lines)


# -- JUnit XML ---------------------------------------------------------------------------------------
def suite(runner, code: int, message: str | None = None, kind: str | None = None, name: str | None = None,
          suite_name: str | None = None) -> ET.Element:
    """The run as one <testsuite> (layout: this module's docstring). `runner` None: nothing ran
    (a refused input); `message` and `kind` then say why, in one <error> case."""
    exp = runner.exp.name if runner is not None else (name or "chaoslab")
    s = ET.Element("testsuite", name=suite_name or f"chaoslab-{exp}")
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def case(classname: str, title: str, secs: float | None = None, failure=None, error=None, skipped=None, out=None):
        c = ET.SubElement(s, "testcase", classname=_xml(classname), name=_xml(title))
        if secs is not None:
            c.set("time", f"{max(0.0, secs):.1f}")
        counts["tests"] += 1
        if failure:
            ET.SubElement(c, "failure", message=_xml(failure[0])).text = _xml(failure[1])
            counts["failures"] += 1
        if error:
            ET.SubElement(c, "error", type=error[0], message=_xml(error[1])).text = _xml(error[2])
            counts["errors"] += 1
        if skipped:
            ET.SubElement(c, "skipped", message=_xml(skipped))
            counts["skipped"] += 1
        if out:
            ET.SubElement(c, "system-out").text = _xml(out)
        return c

    results = list(runner.results) if runner is not None else []
    decide = {id(r) for r in deciding(results)}
    for r in results:
        decides = id(r) in decide
        own = f"chaoslab.{exp}.{r.name}"
        texts = [as_reason(x)["text"] for x in r.reasons]
        failure = error = out = None
        if not decides:
            out = (f"{r.verdict} (role {r.role}: the primary variant decides the run's verdict, not this one)"
                   + "".join(f"\n{t}" for t in texts))
        elif r.verdict == "FAIL":
            failure = (headline(r), "\n".join(texts + [f"final check {c['name']}: {c['outcome']} ({c.get('evidence', '')})"
                                                       for c in r.checks]))
        elif r.verdict in ("INCONCLUSIVE", *NOT_JUDGED):
            error = (r.verdict, f"{r.verdict}: {headline(r)}", "\n".join(texts + list(r.notes)))
        case(f"chaoslab.{exp}", f"{r.name}: {r.description}" if r.description else r.name,
             (r.ended or r.started) - r.started, failure, error, None, out)

        violated = hypothesis_violations(r)
        for cond, cov in (r.coverage or {}).items():
            said = (f"judged {cov.get('judged_secs')} of {cov.get('method_secs')} method seconds "
                    f"({cov.get('share', 0):.0%}), violated {cov.get('violated_secs', 0)} s"
                    + (f"; not judged: {'; '.join(cov['unknown_because'])}" if cov.get("unknown_because") else ""))
            failure = error = skipped = None
            mine = [v for v in violated if v.get("condition") == cond]
            short_of = next((as_reason(x) for x in r.reasons if as_reason(x)["kind"] == "coverage"
                             and as_reason(x).get("subject") == cond), None)
            if decides and r.verdict == "FAIL" and mine:
                first = next((v for v in r.first_violations if v.get("condition") == cond), mine[0])
                failure = (f"first violation: {violation_text(first)}",
                           "\n".join(t for x, t in zip(r.reasons, texts) if as_reason(x)["kind"] in HYPOTHESIS_KINDS))
            elif decides and short_of:
                error = ("INCONCLUSIVE", short_of["short"], short_of["text"])
            elif decides and r.verdict in NOT_JUDGED:
                skipped = f"not judged to the end: the variant ended {r.verdict}"
            case(own, f"condition {cond}", None, failure, error, skipped, said)

        for c in r.checks:
            said = f"{c['outcome']}: {c.get('evidence', '')}"
            failure = error = None
            if decides and c["outcome"] == "fail":
                failure = (f"final check {c['name']} failed: {c.get('evidence', '')}", said)
            elif decides and c["outcome"] == "unknown":
                error = ("INCONCLUSIVE", f"final check {c['name']} could not judge: {c.get('evidence', '')}", said)
            case(own, f"check {c['name']}", None, failure, error, None, said)

        for step in (s_ for s_ in r.steps if s_.get("type") == "roll-broker" and "functional_ok" in s_):
            failure = out = None
            if not step["functional_ok"]:
                note = (f"{step['broker']}: functional check failed right after the roll "
                        f"({step.get('functional_detail')}); shallow={step.get('shallow_ok')}")
                if decides and r.verdict == "FAIL":
                    failure = (note, note)
                else:   # the hypothesis decides; a moment's failed check beside a PASS is a note
                    out = note
            case(own, f"{step['broker']} healthy after roll", step.get("wait_secs"), failure, None, None, out)

    for missing in (not_run(runner) if runner is not None else []):
        case(f"chaoslab.{exp}", missing, None, None, None, f"not run: the run ended before this variant (exit {code})")

    if (code in (2, 130) and counts["errors"] == 0) or (code != 0 and counts["failures"] + counts["errors"] == 0):
        # whatever produced it, a run that is not green reads as not green
        kind = kind or {130: "INTERRUPTED", 1: "FAIL"}.get(code, "ERROR")
        why = message or (runner.error if runner is not None else None) or {
            130: "interrupted before a verdict", 1: "failed"}.get(code, "the lab itself failed (see the run folder)")
        case("chaoslab", exp, None, None, (kind, f"{kind}: {why}", why))
    if counts["tests"] == 0:
        case("chaoslab", exp)
    for key, n in counts.items():
        s.set(key, str(n))
    return s


def junit(path: Path, runner, code: int, message: str | None = None, kind: str | None = None,
          name: str | None = None) -> Path:
    """One run's JUnit XML at `path` (its folders made)."""
    return _write(Path(path), suite(runner, code, message, kind, name))


def junit_series(path: Path, runners: list, codes: list[int], name: str | None = None) -> Path:
    """A series of runs (--repeat N) as one file: <testsuites>, one <testsuite> per run in order."""
    exp = runners[0].exp.name if runners else (name or "chaoslab")
    root = ET.Element("testsuites", name=f"chaoslab-{exp}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for i, (runner, code) in enumerate(zip(runners, codes), 1):
        s = suite(runner, code, suite_name=f"chaoslab-{exp} run-{i}")
        root.append(s)
        for key in totals:
            totals[key] += int(s.get(key, "0"))
    for key, n in totals.items():
        root.set(key, str(n))
    return _write(Path(path), root)


_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml(text) -> str:
    """Text XML 1.0 can hold: evidence quoted from a log may carry control characters."""
    return _NOT_XML.sub("?", str(text))


def _write(path: Path, root: ET.Element) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


# -- GitHub Actions ----------------------------------------------------------------------------------
def on_github() -> bool:
    return os.environ.get("GITHUB_ACTIONS") == "true"


def escape_data(text) -> str:
    """A workflow command's message, as GitHub's toolkit escapes it."""
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text) -> str:
    """A workflow command's property value: the message's escapes, and `:` and `,`."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(command: str, message: str, **properties) -> str:
    props = ",".join(f"{k}={escape_property(v)}" for k, v in properties.items() if v is not None)
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def annotate(title: str, message: str, stream=None) -> None:
    """An ::error workflow command, one line. On stdout, except where stdout must hold only the
    --json object: then on stderr. The runner reads workflow commands from both streams (its
    script handler runs an output manager on stdout and one on stderr, each handing lines to
    the same command manager), so the annotation is seen either way."""
    print(workflow_command("error", message, title=title), file=stream or sys.stdout, flush=True)


def append_summary(markdown: str, log=print) -> bool:
    """Append to the file $GITHUB_STEP_SUMMARY names (False when it is not set). A summary that
    cannot be written is said; it never changes the run's exit code."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        log(f"could not write the step summary to {path}: {exc.strerror or exc}")
        return False
    return True


def run_markdown(run_dir: Path, below: bool = False) -> str:
    """A run's first screen in Markdown, from its run folder as the report reads it: title,
    verdict and exit code, the variants' verdicts and first reasons, why, the evidence of
    coverage, key times (chaoslab.report.first_screen). `below`: every heading one level down,
    under a heading of the caller's."""
    from chaoslab.report import first_screen, verdict_table
    from chaoslab.report.blocks import md
    run_dir = Path(run_dir)
    try:
        opening, variants, screen = first_screen(run_dir)
    except Exception as exc:   # no journal (the run never started) or a damaged one: say so
        return f"Run folder `{run_dir}`: no report ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})."
    blocks = [*opening, *([verdict_table(variants)] if variants else []),
              *(b for b in screen if b[0] not in ("links", "img"))]
    blocks.append(("p", f"Run folder: `{run_dir}` (report.md, report.html, junit.xml, journal.jsonl)."))
    if not below:
        return md(blocks)
    return "\n".join("#" * (int(b[0][1]) + 1) + f" {b[1]}\n" if b[0] in ("h1", "h2", "h3") else md([b]) for b in blocks)


def github(head: str, green: bool, title: str, message: str, run_dirs: list = (), stream=None, log=print) -> None:
    """On GitHub Actions (GITHUB_ACTIONS=true) and nowhere else: append `head` (Markdown; ""
    for none: the run's own title and verdict open it) and each run folder's first screen to the
    step summary; for a run that is not green, one ::error with `title` and `message`."""
    if not on_github():
        return
    append_summary("\n\n".join([*([head] if head else []), *(run_markdown(d, below=bool(head)) for d in run_dirs)]), log)
    if not green:
        annotate(title, message, stream)
