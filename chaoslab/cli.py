"""chaoslab command line: `chaoslab validate|plan|doctor|schema|up|down|status|build|experiment|gate|replay`.

Every error a user can act on is one line on stderr and a non-zero exit (errors.LabError).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from chaoslab.spec.base import as_reason
from chaoslab.errors import LabError

err = Console(stderr=True, soft_wrap=True)
out = Console(width=None if sys.stdout.isatty() else 160)


def _log(message: str) -> None:
    err.print(f"chaoslab: {message}", highlight=False, markup=False)


def cmd_build(args) -> int:
    from chaoslab.lab.cluster import Lab
    images = Lab(log=_log).build_images(args.version or [], train_cds=True if args.cds else None)
    for role, tag in images.items():
        out.print(f"{role:14} {tag}")
    return 0


def cmd_up(args) -> int:
    from chaoslab.lab.cluster import Lab
    from chaoslab.lab.lock import LabLock
    lab = Lab(log=_log)
    lab.client  # no engine: say so first
    nodes = args.rabbitmq_nodes if args.rabbitmq_nodes is not None else _env_nodes()
    with LabLock(lab.project, what="chaoslab up"):
        seconds = lab.up(pico=args.pico, nano=args.nano, pulsar=not args.no_pulsar, rabbitmq_nodes=nodes)
    parts = [] if args.no_pulsar else [f"proxy {lab.proxy_service_url}, admin {lab.proxy_admin_url}"]
    parts += [f"{lab.settings.rabbitmq_service(n)} {lab.settings.rabbitmq_amqp_url(n)}" for n in range(1, nodes + 1)]
    _log(f"lab healthy in {seconds:.0f} s — " + "; ".join(parts))
    return 0


def _env_nodes() -> int:
    """RABBITMQ_NODES (`RABBITMQ_NODES=3 make up`), 1 by default; the lab has 1 or 3."""
    raw = os.environ.get("RABBITMQ_NODES", "1").strip() or "1"
    if raw not in ("1", "3"):
        raise LabError(f"RABBITMQ_NODES={raw!r}: the lab runs 1 RabbitMQ node or a cluster of 3")
    return int(raw)


def cmd_down(args) -> int:
    from chaoslab.lab.cluster import Lab
    from chaoslab.lab.lock import LabLock
    lab = Lab(log=_log)
    lab.client  # no engine: say so first
    with LabLock(lab.project, what="chaoslab down"):
        lab.down()
    _log("lab removed")
    return 0


def cmd_status(args) -> int:
    from chaoslab.lab.cluster import Lab
    from chaoslab.lab.status import collect
    status = collect(Lab(log=_log))
    views = status_views(status)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status, views)
    healthy = status["up"] and all(v.healthy is not False for v in views.values())
    return 0 if healthy else 1


def status_views(status: dict) -> dict:
    """Each role of the lab's status as its registered StatusView (spec.base.status_view; the
    probe layer registers them); a role nobody registered reads as one line of words."""
    from chaoslab.report import words
    from chaoslab.spec.base import STATUS_VIEWS, StatusView, load_package
    load_package("chaoslab.probes")
    out = {}
    for role, part in status.items():
        if role in ("project", "up"):
            continue
        if role in STATUS_VIEWS:
            out[role] = STATUS_VIEWS[role](part)
        elif part not in (None, [], {}):
            out[role] = StatusView(lines=[f"{role:9} {words(part)}"])
    return out


def print_status(status: dict, views: dict | None = None) -> None:
    if not status["up"]:
        out.print("lab is not running ('make up' starts it)")
        return
    for view in (status_views(status) if views is None else views).values():
        if view.columns and view.rows:
            table = Table(title=view.title or None)
            for col in view.columns:
                table.add_column(col)
            for row in view.rows:
                table.add_row(*[str(c) for c in row])
            out.print(table)
        for line in view.lines:
            out.print(line, highlight=False)


def cmd_validate(args) -> int:
    """Each file: one line, ok or its first error; exit 2 when any is not valid (a pre-commit
    hook passes every staged experiment file at once)."""
    from chaoslab.spec.experiment import load
    bad = 0
    for file in args.file:
        try:
            exp = load(file)
        except LabError as exc:
            err.print(f"chaoslab: {exc}", highlight=False, markup=False)
            bad += 1
            continue
        out.print(f"{file}: ok ({exp.name}: variants {', '.join(v.name for v in exp.variants)}; "
                  f"primary {exp.primary.name})", highlight=False)
    return 2 if bad else 0


def cmd_plan(args) -> int:
    """A dry run: what each variant would do and change, what it needs, how long it should take.
    Exit 2 for an invalid file (one line) or a release the run could not have."""
    from chaoslab import plan
    result = plan.build(args.file, variants=args.variant, offline=args.offline)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        plan.render(result, out)
    for problem in result["problems"] if args.json else []:
        _log(problem)
    return result["exit_code"]


def cmd_doctor(args) -> int:
    """Can this machine run the lab? One line per check (each problem with its fix); exit 2 when
    something fatal is missing."""
    from chaoslab import doctor
    findings = doctor.run_checks(doctor.Context(files=args.file or [doctor.DEFAULT_FILE], offline=args.offline))
    if args.json:
        print(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        doctor.render(findings, out)
    return doctor.exit_code(findings)


def cmd_schema(args) -> int:
    from chaoslab.spec.experiment import json_schema
    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_report(args) -> int:
    """Rebuild report.md / report.html (and grafana-annotations.json) of a run folder from its
    journal alone (nothing runs)."""
    from chaoslab.record import read
    from chaoslab.report import build_report
    from chaoslab.report.annotations import write_annotations
    run = args.run
    if not (run / "journal.jsonl").is_file() or not (run / "results.json").is_file():
        raise LabError(f"{run}: not a run folder (journal.jsonl and results.json are needed)")
    try:
        if not read(run / "journal.jsonl"):
            raise LabError(f"{run / 'journal.jsonl'}: no readable record (empty, or not a journal chaoslab wrote)")
        report = build_report(run)
        annotations = write_annotations(run)
    except LabError:
        raise
    except Exception as exc:
        # whatever else a damaged run folder holds: one line, never a traceback
        raise LabError(f"{run}: cannot build a report from this run folder ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:160]})") from None
    out.print(f"report: {report} (and report.html); Grafana annotations: {annotations}", highlight=False)
    return 0


def make_runner(exp, args, run_dir=None, variants=None, keep=None, live=None):
    """A runner with the console's progress, the live metrics handler when one is served
    (`live`), and the report and the Grafana annotations as finishers."""
    from chaoslab.progress import ConsoleProgress
    from chaoslab.report import build_report
    from chaoslab.report.annotations import write_annotations
    from chaoslab.run.runner import Runner
    runner = Runner(exp, run_dir=run_dir, keep=args.keep if keep is None else keep, variants=variants, log=_log,
                    handlers=[ConsoleProgress(err), *([live] if live is not None else [])],
                    finishers=[build_report, write_annotations])
    if live is not None:
        live.run_dir = runner.run_dir
    return runner


def live_metrics(args):
    """The live metrics of a command's runs (chaoslab.live): a context that yields the handler
    to give each runner, or None. A bad --metrics-port / --metrics-linger is refused here, before
    anything starts."""
    from chaoslab import live
    return live.live_metrics(live.metrics_port(args.metrics_port), live.linger_secs(args.metrics_linger), log=_log)


def cmd_experiment(args) -> int:
    """An experiment file, run. Refusals (a broken file, a bad --repeat) are exit 2 with one
    line, and with --junit / --json / on GitHub Actions they are written there too, so a
    pipeline never reads them as green."""
    try:
        return _experiment(args)
    except LabError as exc:
        _refused(args, "experiment", Path(args.file).stem, exc, {"experiment": Path(args.file).stem,
                                                                 "run_folder": None, "variants": []})
        raise
    except KeyboardInterrupt:
        _interrupted_early(args, Path(args.file).stem)
        raise


def _experiment(args) -> int:
    from chaoslab import ci
    from chaoslab.spec.experiment import load
    exp = load(args.file)  # a broken file stops here, before any container starts
    if not 1 <= args.repeat <= 100:
        raise LabError(f"--repeat must be between 1 and 100, got {args.repeat}")
    metrics = live_metrics(args)
    _on_sigterm()
    with metrics as live:
        if args.repeat > 1:
            return repeat_experiment(exp, args, live)
        say = _say(args)
        runner = make_runner(exp, args, run_dir=args.out, variants=args.variant, live=live)
        _log(f"run folder {runner.run_dir}")
        code = _run(runner)
        junit = _run_junit(runner, code, args.junit)   # before the bundle: the bundle holds it
        try:
            bundle = finish_bundle(runner, args.tar) if runner.journal is not None else None
        except KeyboardInterrupt:   # while packing: the run stands, the command was interrupted
            code, bundle = 130, None
            junit = _run_junit(runner, code, args.junit)
        print_verdict(runner, code, say)
        if bundle:
            say.print(f"bundle: {bundle}  (chaoslab replay {bundle})")
        if junit:
            say.print(f"junit: {junit}", highlight=False)
        word = ci.run_verdict(runner, code)
        # a run folder's first screen opens with the run's title and verdict; a run that never began has none
        began = runner.journal is not None
        ci.github("" if began else f"## chaoslab {exp.name}: {word} (exit {code})\n\n{runner.error or ''}", code == 0,
                  f"chaoslab {exp.name}: {word}", ci.problem(runner, code), [runner.run_dir] if began else [],
                  stream=_annotations(args), log=_log)
        if args.json:
            print(json.dumps(ci.run_json(runner, code, junit, bundle), indent=2, default=str))
        return code


def repeat_experiment(exp, args, live=None) -> int:
    """The selected variants N times, each run on fresh labs; failures/N per variant with a 95 %
    interval, in rates.json beside the N run folders. Each run folder holds its own junit.xml;
    --junit PATH (default <folder of the runs>/junit.xml) holds the series, one testsuite per run."""
    import time

    from chaoslab import ci
    from chaoslab.rates import summary
    from chaoslab.settings import RUNS_DIR
    say = _say(args)
    base = args.out or RUNS_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{exp.name}-x{args.repeat}"
    runners, codes = [], []
    try:
        for i in range(1, args.repeat + 1):
            runner = make_runner(exp, args, run_dir=base / f"run-{i}", variants=args.variant,
                                 keep=args.keep and i == args.repeat, live=live)
            runners.append(runner)
            codes.append(130)   # until it has its own
            _log(f"run {i}/{args.repeat}: {runner.run_dir}")
            codes[-1] = _run(runner)
            _run_junit(runner, codes[-1])
            if runner.journal is not None:
                finish_bundle(runner, args.tar)
            _log(f"run {i}/{args.repeat}: {ci.run_verdict(runner, codes[-1])}")
            if codes[-1] == 130:
                break
    except KeyboardInterrupt:   # outside a run (between runs, while packing one): the series stops
        if not runners:
            raise
        codes[-1] = 130
        _run_junit(runners[-1], 130)
    names = [v.name for v in runners[0].selected]
    rates = {n: summary([r.verdict for rn in runners for r in rn.results if r.name == n]) for n in names}
    base.mkdir(parents=True, exist_ok=True)
    (base / "rates.json").write_text(json.dumps({"experiment": exp.name, "repeat": args.repeat, "exit_codes": codes,
                                                 "variants": rates}, indent=2))
    table = Table(title=f"{exp.name}: {len(codes)} runs")
    for col in ("variant", "failed / judged", "rate", "95 % interval", "not judged"):
        table.add_column(col)
    for n, r in rates.items():
        table.add_row(n, f"{r['failures']} / {r['runs']}", "-" if r["rate"] is None else f"{r['rate']:.2f}",
                      f"{r['interval_95'][0]:.2f}-{r['interval_95'][1]:.2f}", str(r["not_judged"]))
    say.print(table)
    final = 130 if 130 in codes else 1 if 1 in codes else 2 if 2 in codes else 0
    junit = ci.junit_series(args.junit or base / "junit.xml", runners, codes)
    say.print(f"rates: {base / 'rates.json'}")
    say.print(f"junit: {junit} (one testsuite per run)", highlight=False)
    word = ci.series_verdict(runners, codes, final)
    decisive = next(r for r, c in zip(runners, codes) if c == final)
    head = "\n".join([f"## chaoslab {exp.name}: {word} over {len(codes)} runs (exit {final})", "",
                      f"Exit codes {codes}. Failed / judged runs per variant:", "",
                      "| variant | failed / judged | 95 % interval | not judged |", "|---|---|---|---|",
                      *(f"| {n} | {r['failures']} / {r['runs']} | {r['interval_95'][0]:.2f}-{r['interval_95'][1]:.2f} "
                        f"| {r['not_judged']} |" for n, r in rates.items()), "",
                      f"The first run that ended {final}: `{decisive.run_dir}`."])
    ci.github(head, final == 0, f"chaoslab {exp.name}: {word}", ci.problem(decisive, final),
              [decisive.run_dir] if decisive.journal is not None else [], stream=_annotations(args), log=_log)
    if args.json:
        print(json.dumps({"experiment": exp.name, "run_folder": str(base), "verdict": word, "exit_code": final,
                          "repeat": args.repeat, "exit_codes": codes, "junit": str(junit), "rates": rates,
                          "runs": [ci.run_json(r, c, r.run_dir / "junit.xml") for r, c in zip(runners, codes)]},
                         indent=2, default=str))
    return final


def _run(runner) -> int:
    """runner.run(). A lab error or an interrupt that comes before the run could start (the lab
    busy, a release that cannot be had, a run folder already used) is that run's exit code, its
    reason kept on the runner, so that it is written like any other run: never green."""
    try:
        return runner.run()
    except KeyboardInterrupt:
        _log("interrupted")
        return 130
    except LabError as exc:
        runner.error = runner.error or str(exc)
        _log(str(exc))
        return exc.exit_code


def _run_junit(runner, code: int, path: Path | None = None) -> Path | None:
    """The run's JUnit XML: in its run folder (unless the folder holds another run: the run was
    refused before it began) and at `path` (--junit) when given. The path a CI reads."""
    from chaoslab import ci
    written = None
    if runner.journal is not None or not runner.run_dir.exists():
        written = ci.junit(runner.run_dir / "junit.xml", runner, code)
    if path:
        written = ci.junit(path, runner, code)
    return written


def _say(args) -> Console:
    """Where the human output goes: stdout, or stderr when stdout holds the one --json object."""
    return err if getattr(args, "json", False) else out


def _annotations(args):
    """Where GitHub ::error commands go: stdout, or stderr with --json (see ci.annotate: the
    runner reads workflow commands on both streams). None: sys.stdout when written."""
    return sys.stderr if getattr(args, "json", False) else None


def _refused(args, what: str, name: str, exc: LabError, fields: dict) -> None:
    """A command refused before anything ran: JUnit (--junit) with one <error type="REFUSED">,
    the --json object, and on GitHub Actions the step summary and an ::error."""
    from chaoslab import ci
    if getattr(exc, "_ci_reported", False):
        return
    exc._ci_reported = True
    if args.junit:
        ci.junit(args.junit, None, exc.exit_code, message=f"refused: {exc}", kind="REFUSED", name=name)
    ci.github(f"## chaoslab {what}: REFUSED (exit {exc.exit_code})\n\n{exc}", False, f"chaoslab {what}: REFUSED",
              str(exc), stream=_annotations(args), log=_log)
    if args.json:
        print(json.dumps({**fields, "verdict": "REFUSED", "exit_code": exc.exit_code, "reason": str(exc)}, indent=2))


def _interrupted_early(args, name: str) -> None:
    """Ctrl-C before any run began (while the gate resolves a release's settings, say): JUnit
    (--junit) still says INTERRUPTED."""
    from chaoslab import ci
    if args.junit and not Path(args.junit).exists():
        ci.junit(args.junit, None, 130, message="interrupted before a verdict", name=name)


def finish_bundle(runner, make_tar: bool):
    from chaoslab import bundle
    try:
        return bundle.finish(runner.run_dir, make_tar)
    except Exception as exc:
        _log(f"could not finish the bundle: {exc}")
        return runner.run_dir


def _on_sigterm() -> None:
    """Ctrl-C and SIGTERM both interrupt the run (and trigger its rollback). SIGINT is set
    explicitly: a shell starting us in the background would otherwise leave it ignored."""
    import signal

    def on_term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_gate(args) -> int:
    """The gate: refusals (bad input, unknown settings) are exit 2 with one line, and with
    --junit / --json / on GitHub Actions they are written there too, so a pipeline never reads
    them as green."""
    try:
        return _gate(args)
    except LabError as exc:
        _refused(args, "gate", "gate", exc, {"runs": 0})
        raise
    except KeyboardInterrupt:
        _interrupted_early(args, "gate")
        raise


def _gate(args) -> int:
    from chaoslab import ci, gate
    base = gate.load_base(args.experiment)
    conf = gate.read_broker_conf(args.broker_conf) if args.broker_conf else {}
    lab_conf, translated, problems = gate.scale_change(base, conf)
    exp = gate.gate_experiment(base, args.from_version, args.to_version, lab_conf)
    if args.repeat is None:
        from chaoslab.rates import GATE_DEFAULT_REPEAT
        noop = gate.is_noop(exp, conf)
        args.repeat = 1 if noop else GATE_DEFAULT_REPEAT
        if noop:
            _log(f"gate: the change is a no-op (same release {exp.versions.to}, no settings): one run, "
                 "a plain rolling restart; --repeat N runs it more")
    if not 1 <= args.repeat <= 50:
        raise LabError(f"--repeat must be between 1 and 50, got {args.repeat}")
    say = _say(args)  # with --json, stdout holds the one JSON object
    if translated:
        _log("gate: through the experiment's scale model, production -> lab: "
             + ", ".join(f"{k} {v}" for k, v in translated.items()))
    if problems:
        # never SAFE for a change the lab cannot stand for; nothing is started
        message = "; ".join(problems)
        say.print(f"GATE: INCONCLUSIVE - {message}", highlight=False)
        if args.junit:
            ci.junit(args.junit, None, 2, message=f"the lab cannot represent the change: {message}",
                     kind="INCONCLUSIVE", name="gate")
        ci.github(f"## chaoslab gate: INCONCLUSIVE (exit 2)\n\nThe lab cannot represent the change: {message}",
                  False, "chaoslab gate: INCONCLUSIVE", f"the lab cannot represent the change: {message}",
                  stream=_annotations(args), log=_log)
        if args.json:
            print(json.dumps({"verdict": "INCONCLUSIVE", "exit_code": 2, "runs": 0, "reason": message,
                              "unrepresentable": problems}, indent=2))
        return 2
    # the releases, then the change's keys against the target release's own settings, before
    # any container starts or is removed
    from chaoslab.lab.broker_settings import check_broker_settings
    from chaoslab.lab.flavour import flavour_of
    from chaoslab.settings import LabSettings
    flavour = flavour_of(LabSettings.from_env())   # the lab's own images, or official ones (PULSAR_IMAGE)
    for release in dict.fromkeys([exp.versions.from_, exp.versions.to]):
        flavour.check_release(release)
    check_broker_settings(exp.versions.to, lab_conf, resolve=True, log=_log)
    metrics = live_metrics(args)
    _on_sigterm()
    with metrics as live:
        return _gate_runs(args, exp, conf, say, live)


def _gate_runs(args, exp, conf: dict, say, live) -> int:
    from chaoslab import ci, gate
    # one run: its JUnit in its run folder and at --junit. A series: each run's in its folder,
    # the series at --junit (one testsuite per run)
    single = args.junit if args.repeat == 1 else None
    runners, codes, written = [], [], 0
    try:
        for attempt in range(1, args.repeat + 1):
            run_dir = args.out if args.repeat == 1 else (args.out / f"run-{attempt}" if args.out else None)
            runner = make_runner(exp, args, run_dir=run_dir, keep=args.keep and attempt == args.repeat, live=live)
            _log(f"gate{f' run {attempt}/{args.repeat}' if args.repeat > 1 else ''}: {exp.primary.description}; "
                 f"run folder {runner.run_dir}")
            runners.append(runner)
            codes.append(2)
            codes[-1] = runner.run()
            code = codes[-1]
            junit_path = _run_junit(runner, code, single)
            written += 1
            bundle = finish_bundle(runner, args.tar)
            _print_gate(say, runner, code, junit_path, bundle)
            if code in (1, 130):
                break  # unsafe once is unsafe; an interrupt stops the series
    except KeyboardInterrupt:
        codes[-1:] = [130]
    except LabError as exc:
        if not runners or codes[-1] != 2:
            raise
        runners[-1].error = runners[-1].error or str(exc)
        err.print(f"chaoslab: {exc}", highlight=False, markup=False)
    finally:
        if runners and written < len(runners):
            _run_junit(runners[-1], codes[-1], single)
    junit = single or (runners[0].run_dir / "junit.xml" if len(runners) == 1 and args.repeat == 1 else None)
    if args.junit and args.repeat > 1 and runners:
        junit = ci.junit_series(args.junit, runners, codes)
    final = 130 if 130 in codes else 1 if 1 in codes else 2 if 2 in codes else 0
    result = gate.summary(runners, codes, final, conf)
    result["junit"] = str(junit) if junit else None
    if args.repeat > 1:
        say.print(f"GATE over {len(codes)} run(s): {result['verdict']} (exit codes {codes})")
    if result.get("advice"):
        say.print("how else to make this change: " + result["advice"]["lines"][0], highlight=False, markup=False)
        for line in result["advice"]["lines"][1:]:
            say.print(f"  - {line}", highlight=False, markup=False)
    decisive = next((r for r, c in zip(runners, codes) if c == final), runners[-1] if runners else None)
    ci.github(gate.markdown_head(result, exp.primary.description), final == 0, f"chaoslab gate: {result['verdict']}",
              ci.problem(decisive, final), [decisive.run_dir] if decisive is not None and decisive.journal is not None else [],
              stream=_annotations(args), log=_log)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    return final


def _print_gate(say, runner, code: int, junit_path, bundle) -> None:
    from chaoslab.gate import observations
    from chaoslab.run.runner import violation_text
    from chaoslab.spec.base import as_reason
    change = runner.results[0] if runner.results else None
    verdict = change.verdict if change else None
    if code == 0:
        say.print("GATE: SAFE - the steady state held through the change, every condition judged")
    elif code == 1 and change:
        say.print("GATE: UNSAFE")
        for reason in change.reasons:
            say.print(f"  - {as_reason(reason)['text']}", highlight=False)
        if change.first_violations:
            say.print(f"  evidence (first violated conditions): {'; '.join(violation_text(v) for v in change.first_violations[:4])}",
                      highlight=False)
    elif code == 130:
        say.print("GATE: INTERRUPTED - no verdict")
    elif verdict == "INCONCLUSIVE":
        say.print("GATE: INCONCLUSIVE - the lab could not tell: no violation was seen, but the evidence is incomplete")
        for reason in change.reasons:
            say.print(f"  - {as_reason(reason)['text']}", highlight=False)
    else:
        why = (as_reason(change.reasons[0])["text"] if change and change.reasons else None) or runner.error or "see the run folder"
        say.print(f"GATE: LAB ERROR - the lab itself failed; this is not a verdict on the change: {why}", highlight=False)
    for note in (change.notes if change else []):
        say.print(f"  note: {note}", highlight=False)
    for line in (observations(change) if change else []):
        say.print(f"  {line}", highlight=False)
    say.print(f"report: {runner.run_dir / 'report.md'}  junit: {junit_path}  bundle: {bundle}")


def cmd_replay(args) -> int:
    import time

    from chaoslab import bundle
    from chaoslab.spec.experiment import load
    folder = bundle.open_bundle(args.bundle)
    exp = load(folder / "experiment.yaml", env={})  # exactly as run: no new substitutions
    # everything read and checked before anything starts: a damaged or partial bundle is one line
    manifest = bundle.read_manifest(folder)
    before = bundle.summary(folder)
    unknown = [v for v in manifest.get("variants") or [] if v not in {x.name for x in exp.variants}]
    if unknown:
        raise LabError(f"{folder / 'manifest.json'}: variants {', '.join(unknown)} are not in its experiment.yaml")
    out_dir = args.out or folder.parent / f"{folder.name}-replay-{time.strftime('%Y%m%dT%H%M%S')}"
    metrics = live_metrics(args)
    _on_sigterm()
    with metrics as live:
        runner = make_runner(exp, args, run_dir=out_dir, variants=manifest.get("variants"), live=live)
        _log(f"replaying {folder.name} (seed {manifest.get('seed')}, versions {manifest.get('versions')}) into {out_dir}")
        code = runner.run()
        finish_bundle(runner, False)
        return _replay_table(folder, before, out_dir, code)


def _replay_table(folder, before: dict, out_dir, code: int) -> int:
    from chaoslab import bundle
    try:
        after = bundle.summary(out_dir)
    except LabError as exc:   # the replay ended without results: compare with nothing
        _log(f"replay: {exc}")
        after = {}
    table = Table(title=f"replay of {folder.name}")
    for col in ("variant", "original", "replay", "detection s", "decision s", "resolution s", "lost"):
        table.add_column(col)
    for name in [k for k in before if k != "exit_code"]:
        a, b = before.get(name) or {}, after.get(name) or {}
        table.add_row(name, a.get("verdict", "-"), b.get("verdict", "-"),
                      f"{a.get('detection_s')} / {b.get('detection_s')}", f"{a.get('decision_s')} / {b.get('decision_s')}",
                      f"{a.get('resolution_s')} / {b.get('resolution_s')}", f"{a.get('lost')} / {b.get('lost')}")
    out.print(table)
    out.print(f"original exit {before.get('exit_code')}, replay exit {code}; replay report: {out_dir / 'report.md'}")
    return code


def print_verdict(runner, code: int, say: Console | None = None) -> None:
    from chaoslab.ci import run_verdict
    from chaoslab.report import words
    from chaoslab.spec.base import as_reason
    say = say or out
    word = run_verdict(runner, code)
    if runner.results:
        table = Table(title=f"{runner.exp.name}: {word}")
        for col in ("variant", "role", "parameters", "verdict", "reason"):
            table.add_column(col)
        for r in runner.results:
            table.add_row(r.name, r.role, words(r.params, 60), r.verdict, (as_reason(r.reasons[0])["short"] if r.reasons else "")[:90])
        say.print(table)
    if runner.journal is not None:
        say.print(f"report: {runner.run_dir / 'report.md'} (and report.html)")
    say.print(f"VERDICT: {word}" + (f" - {runner.error}" if runner.error else ""), highlight=False, markup=False)


class _OutFolder(argparse.Action):
    """--out: a folder to create (or an empty one). A path at a file, or under one, is refused
    here with one line and exit 2, before anything starts."""

    def __call__(self, parser, namespace, values, option_string=None):
        path = Path(values)
        for p in (path, *path.parents):
            if p.exists():
                if not p.is_dir():
                    what = "is a file" if p == path else f"is under {p}, which is a file"
                    parser.exit(2, f"chaoslab: {option_string} {path}: {what}; give a new or empty folder\n")
                break
        setattr(namespace, self.dest, path)


def _metrics_flags(p) -> None:
    from chaoslab.live import DEFAULT_LINGER_SECS, DEFAULT_PORT, PORT_ENV
    p.add_argument("--metrics-port", default=None, metavar="N",
                   help=f"serve live Prometheus metrics on 127.0.0.1:N while it runs (default {PORT_ENV} or "
                        f"{DEFAULT_PORT}; 0 or off: none). A port that is taken: one line, the run goes on without")
    p.add_argument("--metrics-linger", type=float, default=None, metavar="SECS",
                   help=f"after the run, serve the verdict this long before stopping (default {DEFAULT_LINGER_SECS:g})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chaoslab", description="Chaos-engineering lab for message-bus platforms")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build (or reuse) every image the lab needs")
    p.add_argument("--version", action="append", help="also build this Pulsar release")
    p.add_argument("--cds", action="store_true", help="also train class-data sharing into each Pulsar image (a "
                   "one-node cluster run per release, ~75 s each; each later JVM start is faster: docs/cold-start.md)")
    p.set_defaults(func=cmd_build)
    p = sub.add_parser("up", help="bring the lab up and wait until it is healthy")
    p.add_argument("--pico", type=int, default=None, help="pico VM containers (default PICO_VMS or 2)")
    p.add_argument("--nano", type=int, default=None, help="nano VM containers (default NANO_VMS or 0)")
    p.add_argument("--rabbitmq-nodes", type=int, choices=(1, 3), default=None,
                   help="one RabbitMQ node or a cluster of 3 (default RABBITMQ_NODES or 1)")
    p.add_argument("--no-pulsar", action="store_true", help="RabbitMQ only: no ZooKeeper, bookies, brokers, proxy or VMs")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="remove the lab's containers, networks and volumes")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="brokers (version, load manager, health, bundles), proxy, RabbitMQ, VMs")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("validate", help="check experiment files without starting anything")
    p.add_argument("file", nargs="+")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("plan", help="a dry run of an experiment file: each variant's steps in order, what each "
                       "changes (service, release, settings before -> after), the hypothesis, the releases and images "
                       "it needs, how long it should take; nothing is started")
    p.add_argument("file")
    p.add_argument("--variant", action="append", help="only this variant (repeatable)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.add_argument("--offline", action="store_true", help="do not ask Maven whether a release exists (unknown instead)")
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("doctor", help="check this machine for the lab: engine, compose, cgroups, memory, ports, disk, "
                       "Maven, the build tools; one line per problem with its fix")
    p.add_argument("file", nargs="*", help="experiment files whose releases Maven must serve "
                   "(default experiments/transfer-shedder.yaml)")
    p.add_argument("--json", action="store_true", help="a JSON list of {check, ok, detail, fix, fatal}")
    p.add_argument("--offline", action="store_true", help="do not ask Maven about the releases")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("schema", help="print the JSON Schema of experiment files (for editors)")
    p.set_defaults(func=cmd_schema)
    p = sub.add_parser("experiment", help="run an experiment file against a fresh lab; prints a verdict")
    p.add_argument("file")
    p.add_argument("--variant", action="append", help="run only this variant (repeatable)")
    p.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    p.add_argument("--out", action=_OutFolder, default=None, help="run folder (default runs/<time>-<name>)")
    p.add_argument("--tar", action="store_true", help="also pack the run folder into one .tar.gz bundle")
    p.add_argument("--repeat", type=int, default=1, help="run the variants N times, each on fresh labs, and report "
                   "failures/N with a 95 %% interval (rates.json)")
    p.add_argument("--junit", type=Path, default=None, help="JUnit XML path (default <run folder>/junit.xml; with "
                   "--repeat, <folder of the runs>/junit.xml, one testsuite per run)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout: experiment, run folder, "
                   "verdict, exit code, per variant its verdict, reasons, first violation and final checks")
    _metrics_flags(p)
    p.set_defaults(func=cmd_experiment)
    p = sub.add_parser("gate", help="validate a proposed upgrade/config change: exit 0 safe, 1 unsafe, 2 lab error")
    p.add_argument("--from", dest="from_version", help="Pulsar release the brokers run now (default: the experiment's)")
    p.add_argument("--to", dest="to_version", help="Pulsar release to roll to (default: the experiment's)")
    p.add_argument("--broker-conf", type=Path, help="broker.conf key=value lines applied to each broker as it is rolled")
    p.add_argument("--experiment", type=Path, default=None, help="experiment to take the workload, probes, hypothesis and "
                   "method from; its method must use $version and $broker_config (default experiments/transfer-shedder.yaml)")
    p.add_argument("--junit", type=Path, default=None, help="JUnit XML path (default <run folder>/junit.xml)")
    from chaoslab.rates import GATE_DEFAULT_REPEAT
    p.add_argument("--repeat", type=int, default=None, help="run the change N times, each on a fresh lab: unsafe if "
                   f"any run is. Default {GATE_DEFAULT_REPEAT}, set from the measured failure rate of the incident's "
                   "change (1 for a no-op change: same release, no settings); --json reports the detection power "
                   "and false-alarm rate of N runs, docs/findings/ the measurements behind them")
    p.add_argument("--out", action=_OutFolder, default=None)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--tar", action="store_true")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout: verdict, runs, failed runs, "
                   "failure-rate bound, first violation with its evidence, what each probe observed (observations)")
    _metrics_flags(p)
    p.set_defaults(func=cmd_gate)
    p = sub.add_parser("replay", help="re-run the experiment of a bundle and compare the two runs")
    p.add_argument("bundle", type=Path, help="a run folder or its .tar.gz")
    p.add_argument("--out", action=_OutFolder, default=None)
    p.add_argument("--keep", action="store_true")
    _metrics_flags(p)
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("report", help="rebuild a run folder's report from its journal (nothing runs)")
    p.add_argument("run", type=Path, help="a run folder")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("reference", help="print the vocabulary reference (docs/vocabulary.md)")
    p.add_argument("--check", action="store_true", help="exit 1 when docs/vocabulary.md is not what it prints")
    p.set_defaults(func=lambda args: __import__("chaoslab.reference", fromlist=["cli"]).cli(args))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LabError as exc:
        err.print(f"chaoslab: {exc}", highlight=False, markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("chaoslab: interrupted", highlight=False)
        return 130
    except Exception as exc:  # a bug: one line and exit 2 ("could not tell"), never 1 (= unsafe)
        import tempfile
        import traceback
        path = Path(tempfile.gettempdir()) / "chaoslab-last-error.txt"
        try:
            path.write_text(traceback.format_exc())
            where = f" (traceback in {path})"
        except OSError:
            where = ""
        err.print(f"chaoslab: internal error: {type(exc).__name__}: {str(exc)[:300]}{where}", highlight=False, markup=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
