"""The one runner. For each variant, one phase loop:

    lab -> workload -> probes -> steady state -> method (the hypothesis checked every second;
    abort when violated longer than the tolerance, or when a step fails) -> rollback (undo
    what was applied, newest first; declared rollback steps after an abort) -> after ->
    final checks -> verdict

Everything goes into runs/<id>/journal.jsonl as it happens (step-start/step-end for every step);
the report is built from that journal. The run's verdict is the primary variant's (or, when only
some variants were asked for, the worst of those run).

Exit codes: 0 PASS, 1 FAIL, 2 the lab itself failed, 130 interrupted.
"""

from __future__ import annotations

import json
import platform
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import psutil

from chaoslab import http
from chaoslab.errors import LabError
from chaoslab.lab.driver import LabDriver, LabShape
from chaoslab.run.context import Interrupted, RunContext, Tracker, VariantResult
from chaoslab.run.journal import Journal
from chaoslab.wait import sleep_unless, wait_until
from chaoslab.settings import RUNS_DIR, LabSettings
from chaoslab.spec.base import CheckResult, Reason, Violation, probe_notes
from chaoslab.spec.experiment import Experiment, Variant, source


def inconclusive_reasons(coverage: dict, min_coverage: float, checks: list[dict]) -> list[dict]:
    """Why a run without a violation is still not a PASS: conditions judged for too little of
    the method, final checks that could not look (Reason dicts)."""
    out = []
    for name, c in coverage.items():
        if c["method_secs"] == 0:
            out.append(Reason("coverage", f"{name}: the method ran no judged second",
                              short=f"{name} was never judged", subject=name))
        elif c["share"] < min_coverage:
            why = "; ".join(c["unknown_because"]) or "no figures"
            out.append(Reason("coverage", f"{name}: judged {c['judged_secs']} of {c['method_secs']} method seconds "
                                          f"({c['share']:.0%} < {min_coverage:.0%}); {c['unknown_secs']} s unknown: {why}",
                              short=f"{name} judged only {c['share']:.0%} of the method", subject=name))
    for c in checks:
        if c["outcome"] == "unknown":
            out.append(Reason("check-unknown", f"final check {c['name']} could not judge: {c['evidence']}",
                              short=f"final check {c['name']} could not judge", subject=c["name"]))
    return [r.as_dict() for r in out]


@contextmanager
def shielded(log=print):
    """Ctrl-C and SIGTERM are noted, not obeyed, while the lab is being cleaned up (a CI runner
    sends SIGTERM after SIGINT; a half-removed lab is worse than a slower exit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        log("cleaning up the lab: a second signal does not stop the clean-up, please wait")
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        signal.signal(sig, note)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def host_facts() -> dict:
    return {"cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(), "machine": platform.machine()}


def violation_text(v: dict) -> str:
    return Violation(**v).text()


def experiment_settings(experiment: Experiment, base: LabSettings | None = None) -> LabSettings:
    """The lab settings a run of `experiment` uses: `base` (or the environment's) with the
    experiment's releases."""
    base = base or LabSettings.from_env()
    return LabSettings(**{**base.__dict__, "pulsar_from": experiment.versions.from_, "pulsar_to": experiment.versions.to})


def default_lab(settings: LabSettings, log=print) -> LabDriver:
    """The driver a run gets when none is given: the compose lab on this host."""
    from chaoslab.lab.cluster import ComposeLab
    return ComposeLab(settings, log=log)


def step_index(plan, step) -> int | None:
    """A step's place in its list, from 1: the method's, or the declared rollback steps'."""
    for steps in (plan.method, plan.rollbacks):
        for i, s in enumerate(steps, 1):
            if s is step:
                return i
    return None


VERDICTS = {0: "PASS", 1: "FAIL", 2: "ERROR", 130: "INTERRUPTED"}
# exit code of a variant's verdict: INCONCLUSIVE is "the lab could not tell", like ERROR
CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 2, "ERROR": 2, "INTERRUPTED": 130}


def deciding(results: list) -> list:
    """The variant results that decide a run's verdict: the primary variant's, or every result
    when the primary was not run (only some variants were asked for)."""
    primary = next((r for r in results if r.role == "primary"), None)
    return [primary] if primary is not None else list(results)


class StepCrashed(LabError):
    """A step raised something other than a lab error: a bug or an unexpected answer. The
    run cannot say what the change did, so it ends ERROR (not FAIL)."""


class Sampler:
    """Once a second: every probe's latest figures -> one sample; each steady-state condition
    judges it (holds, violated or unknown); the tracker -> abort when violated longer than the
    tolerance, coverage per condition during the method; the journal. If the sampler itself
    fails (a journal it cannot write, a probe thread that died, any exception), the run's
    observer has failed: the context says so and the run ends ERROR, never PASS."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.started = time.time()

    def start(self) -> None:
        self.ctx.sampler_tick = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:   # a variant that failed before its sampler started
            self._thread.join(10)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.wait(1.0):
                self.tick()
        except BaseException as exc:  # the observer died: the run cannot be judged
            self.ctx.fail_observer(f"the sampler thread died: {type(exc).__name__}: {exc}"[:300])

    def sample(self) -> dict:
        ctx = self.ctx
        sample = {"phase": ctx.phase, "steps": list(ctx.running_steps),
                  "elapsed": round(time.time() - self.started, 1)}
        stale = {}
        for key, probe in ctx.probes.items():
            dead = probe.dead_threads()
            if dead:
                ctx.fail_observer(f"probe {probe.type}: thread {dead[0]} died")
            sample[key] = probe.latest()
            age = probe.staleness()
            if age is not None and age > probe.max_staleness():
                stale[key] = f"no answer for {age:.0f} s"
        if stale:
            sample["stale"] = stale
        return sample

    def tick(self) -> None:
        ctx, ss = self.ctx, self.ctx.plan.steady_state
        sample = self.sample()
        judgements = [cond.judge(sample) for cond in ss.conditions]
        outage = ctx.outage if ctx.phase == "method" else None
        excused = []
        # each condition's second as data, for the journal and every handler (live metrics):
        # its state, the figure it compared and its bound
        states = {j.condition: {"state": j.outcome, "value": j.value, "bound": j.bound} for j in judgements}
        if outage is not None:   # a declared planned outage: its conditions' violations are excused
            excused = [v for j in judgements if j.condition in outage["excuse"] for v in j.violations]
            for j in judgements:
                if j.condition in outage["excuse"] and j.outcome == "violated":
                    states[j.condition]["state"] = "excused"
            judgements = [j for j in judgements if j.condition not in outage["excuse"]]
            outage["secs"] += 1
            if excused:
                outage["excused_secs"] += 1
                for v in excused:
                    outage["violations"][v.name] = outage["violations"].get(v.name, 0) + 1
        violations = [v for j in judgements for v in j.violations]
        unknown = {j.condition: j.why for j in judgements if j.outcome == "unknown"}
        judged = [j.condition for j in judgements if j.outcome != "unknown"]
        found = [v.as_dict() for v in violations]
        if excused:
            sample["excused"] = [v.as_dict() for v in excused]
        # while the workload is being stopped, what clients do no longer says anything; a planned
        # outage's excused conditions are left out of their coverage (ctx.outage counts them apart)
        exceeded = ctx.phase != "finish" and ctx.tracker.update(time.time(), found, unknown, judged,
                                                                count=ctx.phase == "method",
                                                                excused=bool(excused),
                                                                exempt=sorted(outage["excuse"]) if outage else None)
        if exceeded and ctx.phase == "method" and ss.abort_on_violation:
            ctx.abort(f"hypothesis violated for more than {ss.tolerance_secs:.0f} s: "
                      + "; ".join(v.text() for v in violations[:3]),
                      short=f"hypothesis violated for more than {ss.tolerance_secs:.0f} s", violations=found[:3])
        if unknown:
            sample["unknown"] = unknown
        if states:
            sample["conditions"] = states
        ctx.last_sample = sample
        ctx.journal.write("sample", violations=found, **sample)
        ctx.sampler_tick = time.monotonic()


class Runner:
    def __init__(self, experiment: Experiment, run_dir: Path | None = None, keep: bool = False,
                 variants: list[str] | None = None, log=print, settings: LabSettings | None = None,
                 handlers: list | None = None, lab: LabDriver | None = None, finishers: list | None = None):
        """`lab`: the driver the run drives (chaoslab.lab.driver); by default the compose lab on
        this host, with `settings` (or the environment's) and the experiment's releases.
        `finishers`: called with the run folder once the journal is closed, whatever the verdict
        (the CLI passes the report builder: the runner itself knows no report)."""
        self.exp = experiment
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{experiment.name}"
        self.run_dir = Path(run_dir or RUNS_DIR / self.run_id)
        self.keep = keep
        self.log = log
        self.only = variants
        if lab is None:
            lab = default_lab(experiment_settings(experiment, settings), log)
        self.lab = lab
        self.settings = lab.settings
        self.handlers = list(handlers or [])
        self.finishers = list(finishers or [])
        self.journal: Journal | None = None
        self.results: list[VariantResult] = []
        self.interrupted = threading.Event()
        self.selected = self._select()
        self.lab_touched = False     # until then, the clean-up leaves any lab alone
        self.error: str | None = None

    # -- which variants ----------------------------------------------------------------------------
    def _select(self) -> list[Variant]:
        if not self.only:
            return list(self.exp.variants)
        return [self.exp.variant(name) for name in dict.fromkeys(self.only)]

    def verdict(self) -> str:
        """The run's verdict: the primary variant's, or (when only some variants were run) the
        worst of those run: INTERRUPTED, then FAIL (a violation seen is evidence), then ERROR and
        INCONCLUSIVE (the lab could not tell), then PASS."""
        if not self.results:
            return "ERROR"
        verdicts = {r.verdict for r in deciding(self.results)}
        for v in ("INTERRUPTED", "FAIL", "ERROR", "INCONCLUSIVE"):
            if v in verdicts:
                return v
        return "PASS"

    def exit_code(self) -> int:
        return CODES.get(self.verdict(), 2)

    # -- the run -------------------------------------------------------------------------------------
    def run(self) -> int:
        # a release that cannot be had is refused before the lab lock, before any lab is touched
        if self.needs_pulsar():
            self.lab.check_releases(self.releases())
        with self.lab.lock(self.run_dir, f"chaoslab {self.exp.name}"):
            return self._run()

    def _run(self) -> int:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise LabError(f"--out {self.run_dir} is a file, not a folder: choose another --out")
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise LabError(f"run folder {self.run_dir} already holds a run: choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "experiment.yaml").write_text(source(self.exp))
        self.journal = Journal(self.run_dir / "journal.jsonl", self.handlers)
        self.journal.write("run-start", run_id=self.run_id, experiment=self.exp.name, seed=self.exp.seed,
                           versions=self.exp.versions.model_dump(by_alias=True) if self.needs_pulsar() else {},
                           host=host_facts(), variants=[v.name for v in self.selected])
        self.write_manifest()
        code = 2
        try:
            self.lab.build_images(self.releases(), pulsar=self.needs_pulsar(), agent=self.needs_agent())
            self.write_manifest(images=True)
            builds = self.lab.provenance(self.releases()) if self.needs_pulsar() else {}
            if builds:   # the report names every release that ran from a build the user supplied
                self.journal.write("supplied-builds", builds=builds)
            self.before_lab()
            for i, variant in enumerate(self.selected):
                self.results.append(self.run_variant(variant, first=i == 0))
                self.save_results()
            code = self.exit_code()
        except (KeyboardInterrupt, Interrupted):
            self.interrupted.set()
            self.journal.context = {}
            self.journal.event("interrupted")
            code = 130
            self.log("interrupted: rolled back what was changed; " +
                     ("the lab is left running (--keep)" if self.keep else "removing the lab"))
        except LabError as exc:
            self.journal.context = {}
            self.error = str(exc)
            self.journal.event("lab-error", error=str(exc))
            self.log(f"lab error: {exc}")
            code = 2
        except Exception as exc:  # a bug or an unexpected answer: never a verdict on the change
            self.journal.context = {}
            self.error = f"internal error: {type(exc).__name__}: {exc}"[:400]
            (self.run_dir / "error.txt").write_text(traceback.format_exc())
            self.journal.event("internal-error", error=self.error, traceback="error.txt")
            self.log(f"{self.error} (traceback in {self.run_dir / 'error.txt'})")
            code = 2
        finally:
            with shielded(self.log):  # a second Ctrl-C / SIGTERM must not leave the lab half removed
                self.journal.context = {}
                self._save_quietly()
                try:
                    if self.lab_touched:
                        self.lab.remove_groups()
                        if not self.keep:
                            self.lab.down()
                except Exception as exc:
                    self.log(f"clean-up: {exc}")
                if self.journal.failure and code in (0, 1):
                    code = 2  # the record is incomplete: no verdict can stand on it
                    self.error = self.journal.failure
                word = VERDICTS.get(code, "ERROR")
                if code == 2 and self.results and self.verdict() == "INCONCLUSIVE" and not self.error:
                    word = "INCONCLUSIVE"
                self.journal.write("run-end", exit_code=code, verdict=word, error=self.error)
                self.journal.close()
                for finish in self.finishers:   # e.g. the report: built from the run folder alone
                    try:
                        finish(self.run_dir)
                    except Exception as exc:  # the journal is the record; a report bug must not hide it
                        self.log(f"{getattr(finish, '__name__', 'finisher')} failed: {exc}")
        return code

    def before_lab(self) -> None:
        """Everything that can be refused is refused before the lab is touched: the lab's and
        each step's own preflight (e.g. every broker setting must be one of its release's: Pulsar
        ignores unknown keys, so a misspelt one would be a change never made)."""
        for v in self.selected:
            plan = self.exp.plan(v)
            plan.lab.preflight(self.exp)
            for item in [*plan.steps(), plan.workload]:
                missing = item.needs() - set(self.lab.capabilities)
                if missing:
                    raise LabError(f"{getattr(item, 'id', None) or item.type} needs what this lab driver cannot do: "
                                   f"{', '.join(sorted(missing))} (it can: {', '.join(sorted(self.lab.capabilities)) or 'the core only'})")
            for step in plan.steps():
                step.preflight(self.exp)

    def _save_quietly(self) -> None:
        try:
            self.save_results()
        except Exception as exc:
            self.log(f"results.json could not be written: {exc}")

    def needs_pulsar(self) -> bool:
        return any(self.exp.plan(v).lab.pulsar for v in self.selected)

    def needs_agent(self) -> bool:
        """Whether any selected variant starts a VM (the lab's pico/nano VMs or a workload's VM
        groups): only then is the agent's image built (a cargo build on a cold machine)."""
        for v in self.selected:
            plan = self.exp.plan(v)
            if plan.lab.pulsar and (plan.lab.pico_vms or plan.lab.nano_vms):
                return True
            if any("vm-groups" in item.needs() for item in [*plan.steps(), plan.workload] if item is not None):
                return True
        return False

    def releases(self) -> list[str]:
        out = [self.exp.versions.from_]
        for v in self.selected:
            plan = self.exp.plan(v)
            for item in [*plan.steps(), plan.workload]:
                out += [self.exp.release(r) for r in item.pulsar_releases()]
        return list(dict.fromkeys(out))

    # -- one variant -----------------------------------------------------------------------------------
    def run_variant(self, variant: Variant, first: bool) -> VariantResult:
        plan = self.exp.plan(variant)
        j = self.journal
        j.context = {"variant": variant.name}
        ctx = RunContext(self.lab, j, self.run_dir, self.exp, variant, plan, self.interrupted, self.log)
        result = VariantResult(variant.name, variant.role, variant.description, dict(variant.params), started=time.time(),
                               vocabulary={"workload": plan.workload.type,
                                           "probes": {p.key: p.type for p in plan.probes},
                                           "monitors": {(getattr(m, "name", None) or m.type): m.type for m in plan.monitors}})
        j.event("variant-start", role=variant.role, description=variant.description, params=variant.params)
        if plan.lab.fresh == "per-variant" or first:
            self.lab_touched = True
            shape = LabShape(pulsar=plan.lab.pulsar, rabbitmq_nodes=plan.lab.rabbitmq_nodes, pico=plan.lab.pico_vms,
                             nano=plan.lab.nano_vms, broker_config=dict(plan.lab.broker_config or {}),
                             proxy_config=dict(plan.lab.proxy_config or {}))
            self.log(f"[{variant.name}] fresh lab {self.lab.describe(shape)} ...")
            self.lab.down()
            ctx.phase = "lab"
            secs = self.lab.up(shape, fresh=True)
            j.event("lab-up", secs=round(secs, 1), broker_config=plan.lab.broker_config,
                    proxy_config=plan.lab.proxy_config, scale_model=plan.lab.scale_model.model_dump())
        # from here on, a container's log is kept before anything replaces it (one file per incarnation)
        self.lab.evidence_dir = self.run_dir / "logs" / variant.name
        self.lab.on_evidence = j.event
        sampler = Sampler(ctx)
        applied: list = []
        self._requests_before = (http.request_counts(), time.time())
        try:
            ctx.phase = "workload"
            plan.workload.start(ctx)
            for probe in plan.probes:
                probe.start(ctx)
            for monitor in plan.monitors:
                monitor.start(ctx)
                j.handlers.append(monitor)
            sampler.start()
            # 1. the steady state, before anything is changed
            ctx.phase = "steady"
            ss = plan.steady_state
            held = wait_until(lambda: ctx.tracker.held_for(time.time()) >= ss.hold_secs,
                              ss.hold_secs + ss.grace_secs, interval=0.5,
                              stop=lambda: self.interrupted.is_set() or ctx.observer_problem() is not None)
            ctx.check_interrupt()
            if not held.ok:
                firsts = [violation_text(v) for v in ctx.tracker.first_violations[:3]]
                unknown = (ctx.last_sample or {}).get("unknown") or {}
                result.reasons.append(Reason(
                    "no-steady-state", f"steady state never held for {ss.hold_secs:.0f} s before the method "
                    f"(first violations: {'; '.join(firsts) or 'none'}"
                    + (f"; not judged: {'; '.join(f'{k}: {w}' for k, w in unknown.items())}" if unknown else "") + ")",
                    short=f"steady state never held for {ss.hold_secs:.0f} s before the method",
                    violations=list(ctx.tracker.first_violations[:3])).as_dict())
                j.event("no-steady-state", violations=ctx.tracker.first_violations)
                return self._finish(ctx, result, sampler, verdict="ERROR")
            j.event("steady-state-held", secs=ss.hold_secs)
            # 2. the method, watched
            ctx.tracker = Tracker(ss.tolerance_secs)
            ctx.phase = "method"
            result.kpis["injection_t"] = time.time()
            self._method(ctx, result, applied)
            # 3. rollback: undo what was applied; declared rollback steps after an abort
            self._roll_back(ctx, result, applied)
            # 4. after
            ctx.phase = "after"
            self._after(ctx)
            return self._finish(ctx, result, sampler)
        except BaseException as exc:
            interrupted = isinstance(exc, (KeyboardInterrupt, Interrupted))
            if interrupted:
                self.interrupted.set()
            reason = "interrupted" if interrupted else (
                str(exc) if isinstance(exc, LabError) else f"internal error: {type(exc).__name__}: {exc}")
            ctx.abort(reason if interrupted else f"lab error: {reason}")
            for t in ctx.step_threads:
                t.join(60)
            if interrupted and applied and ctx.phase in ("method", "rollback"):
                # the declared rollback runs on Ctrl-C / SIGTERM too; a second Ctrl-C skips it
                j.event("interrupted", during=ctx.phase, applied=[s.id for s in applied])
                try:
                    self._undo(ctx, result, [s for s in applied if s.undo_when != "never"])
                except BaseException:
                    j.event("rollback-skipped", reason="interrupted again")
            result.verdict = "INTERRUPTED" if interrupted else "ERROR"
            result.reasons.append(Reason("interrupted" if interrupted else "lab-error", reason).as_dict())
            result.coverage = ctx.tracker.coverage_report([c.type for c in plan.steady_state.conditions])
            result.ended = time.time()
            self.results.append(result)
            try:
                j.event("variant-end", verdict=result.verdict, reasons=result.reasons, kpis=result.kpis, checks={})
            except Exception:
                pass
            self._stop_observers(ctx, sampler)
            try:
                plan.workload.close(ctx)
            except Exception:
                pass
            raise

    def _method(self, ctx: RunContext, result: VariantResult, applied: list) -> None:
        """Start each step when its turn comes (after the previous step, or after the step it
        names, plus delay_secs; or at at_secs from the method's start); stop starting steps once
        the run aborts."""
        steps = ctx.plan.method
        began = time.time()
        ended: dict[str, float] = {}
        pending = list(steps)
        threads: dict[str, threading.Thread] = {}
        errors: list[BaseException] = []
        ctx.step_threads = []
        previous = {s.id: (steps[i - 1].id if i else None) for i, s in enumerate(steps)}

        def run_one(step):
            try:
                out = self._run_step(ctx, step, result, applied)
                if not out.get("ok", True) and step.ok_required:
                    ctx.abort(f"step {step.id} did not succeed: {out.get('error') or out}",
                              short=f"step {step.id} did not succeed")
            except BaseException as exc:  # LabError and the like: the lab failed, not the step
                errors.append(exc)
                ctx.abort(f"step {step.id}: {exc}")
            finally:
                ended[step.id] = time.time()

        while pending or any(t.is_alive() for t in threads.values()):
            ctx.check_interrupt()
            if errors:
                raise errors[0]
            if ctx.aborted.is_set() and pending:
                ctx.event("steps-skipped", steps=[s.id for s in pending], reason=ctx.abort_reason)
                pending = []
            now = time.time()
            for step in list(pending):
                dep = step.after or (None if step.at_secs is not None else previous[step.id])
                if dep is not None and dep not in ended:
                    continue
                if step.at_secs is not None and now < began + step.at_secs:
                    continue
                if now < ended.get(dep, began) + step.delay_secs:
                    continue
                pending.remove(step)
                t = threading.Thread(target=run_one, args=(step,), name=f"step-{step.id}", daemon=True)
                threads[step.id] = t
                ctx.step_threads.append(t)
                t.start()
            time.sleep(0.25)
        if errors:
            raise errors[0]
        if ctx.aborted.is_set():
            result.aborted, result.abort_reason = True, ctx.abort_reason
            result.kpis["decision_t"] = ctx.abort_t

    def _run_step(self, ctx: RunContext, step, result: VariantResult, into: list | None) -> dict:
        spec = step.model_dump(exclude={"id", "type"}, exclude_defaults=True)
        ctx.running_steps.append(step.id)
        started = time.time()
        ctx.event("step-start", step=step.id, step_type=step.type, index=step_index(ctx.plan, step), band=step.band(),
                  spec=spec)
        if into is not None:
            into.append(step)
        try:
            out = step.run(ctx) or {}
        except (LabError, KeyboardInterrupt, Interrupted) as exc:
            ctx.running_steps.remove(step.id)
            ctx.event("step-end", step=step.id, step_type=step.type, ok=False, secs=round(time.time() - started, 1),
                      result={"error": str(exc) or "the lab failed or the run was interrupted during this step"})
            raise
        except Exception as exc:  # not the change's fault as far as anyone can tell: ERROR, not FAIL
            ctx.running_steps.remove(step.id)
            error = f"step {step.id} crashed: {type(exc).__name__}: {exc}"[:300]
            ctx.event("step-end", step=step.id, step_type=step.type, ok=False, secs=round(time.time() - started, 1),
                      result={"error": error, "traceback": traceback.format_exc()[-2000:]})
            raise StepCrashed(error) from exc
        out.setdefault("ok", True)
        secs = round(time.time() - started, 1)
        ctx.running_steps.remove(step.id)
        ctx.event("step-end", step=step.id, step_type=step.type, ok=out["ok"], secs=secs, result=out)
        record = {"id": step.id, "type": step.type, "secs": secs, "started": started, **out}
        (result.steps if into is not None else result.rollbacks).append(record)
        return out

    def _undo(self, ctx: RunContext, result: VariantResult, steps: list) -> None:
        """Undo each applied step, newest first. An undo that did not succeed is recorded (the
        verdict says so: the change could not be taken back). An undo that raised (the lab
        failed, or a bug) does not stop the others, and then ends the run ERROR: it is not a
        verdict on the change."""
        if not steps:
            return
        ctx.phase = "rollback"
        ctx.event("rollback-start", steps=[s.id for s in reversed(steps)])
        crashed: list[str] = []
        for step in reversed(steps):
            ctx.event("undo-start", step=step.id, step_type=step.type, index=step_index(ctx.plan, step))
            started = time.time()
            try:
                out = step.undo(ctx)
            except (KeyboardInterrupt, Interrupted):
                raise
            except Exception as exc:
                error = f"undo of {step.id} raised {type(exc).__name__}: {exc}"[:300]
                crashed.append(error)
                out = {"ok": False, "error": error, "raised": True}
            secs = round(time.time() - started, 1)
            ctx.event("undo-end", step=step.id, step_type=step.type, secs=secs, result=out)
            if out is not None:
                result.undone.append({"step": step.id, "type": step.type, "secs": secs, **out})
        ctx.event("rollback-done", undone=[u["step"] for u in result.undone])
        if crashed:
            raise StepCrashed(crashed[0])

    def _roll_back(self, ctx: RunContext, result: VariantResult, applied: list) -> None:
        aborted = ctx.aborted.is_set()
        if aborted:
            ctx.event("abort", reason=ctx.abort_reason)
            self.log(f"[{ctx.variant.name}] abort: {ctx.abort_reason} -> rollback")
        due = [s for s in applied if s.undo_when == "at-end" or (aborted and s.undo_when == "on-abort")]
        self._undo(ctx, result, due)
        if aborted and ctx.plan.rollbacks:
            ctx.phase = "recovery"
            for step in ctx.plan.rollbacks:
                ctx.check_interrupt()
                self._run_step(ctx, step, result, None)

    def _after(self, ctx: RunContext) -> None:
        after = ctx.plan.after

        def stop() -> bool:
            return self.interrupted.is_set() or ctx.observer_problem() is not None
        if after.until_held_secs is None:
            sleep_unless(after.secs, stop)
        else:
            wait_until(lambda: ctx.tracker.held_for(time.time()) >= after.until_held_secs, after.secs,
                       interval=0.5, stop=stop)
        ctx.check_interrupt()

    def _finish(self, ctx: RunContext, result: VariantResult, sampler: Sampler, verdict: str | None = None) -> VariantResult:
        plan, j = ctx.plan, self.journal
        ctx.phase = "finish"
        workload = plan.workload.stop(ctx)
        monitors = self._stop_observers(ctx, sampler)
        ctx.record = {"workload": workload, "probes": {p.key: p.summary() for p in plan.probes}, "monitors": monitors}
        result.workload, result.probes, result.monitors = workload, ctx.record["probes"], monitors
        result.observer = self._observer_load()
        tr = ctx.tracker
        result.longest_violation_secs = round(tr.longest_secs, 1)
        result.violated_seconds = tr.violated_seconds
        result.first_violations = tr.first_violations
        inj = result.kpis.get("injection_t")
        if tr.first_violation_t and inj:
            result.kpis["detection_t"] = tr.first_violation_t
        if tr.first_violation_t and tr.current_since is None and tr.resolved_t:
            result.kpis["resolution_t"] = tr.resolved_t
        for key in ("detection", "decision", "resolution"):
            if inj and f"{key}_t" in result.kpis:
                result.kpis[f"{key}_after_injection_secs"] = round(result.kpis[f"{key}_t"] - inj, 1)
        result.coverage = tr.coverage_report([c.type for c in plan.steady_state.conditions])
        result.notes = probe_notes(result.probes)   # each probe's own notes (e.g. a limit the system hit)
        if verdict is None:
            for check in plan.checks:
                try:
                    res = check.check(ctx)
                except Exception as exc:
                    res = CheckResult(check.type, "unknown", evidence=f"the check itself failed: {type(exc).__name__}: {exc}")
                result.checks.append(asdict(res))
                j.write("check", **asdict(res))
            ctx.check_interrupt()   # an observer that failed meanwhile: ERROR, whatever was judged
            verdict = self._verdict(ctx, result)
        result.verdict = verdict
        result.ended = time.time()
        self.lab.keep_logs(reason="variant end", since=result.started)
        j.event("variant-end", verdict=verdict, reasons=result.reasons, kpis=result.kpis,
                checks={c["name"]: c["outcome"] for c in result.checks}, coverage=result.coverage, notes=result.notes,
                logs=str(self.lab.evidence_dir.relative_to(self.run_dir)))
        j.context = {}
        self.log(f"[{result.name}] {verdict}" + (f": {result.reasons[0]['short']}" if result.reasons else ""))
        return result

    def _stop_observers(self, ctx: RunContext, sampler: "Sampler") -> dict:
        """Stop the sampler, the probes and the monitors (what a variant's end and an aborted
        variant both do); the monitors' summaries."""
        sampler.stop()
        for probe in ctx.plan.probes:
            probe.stop()
        monitors = {}
        for m in ctx.plan.monitors:
            try:
                monitors[getattr(m, "name", None) or m.type] = m.stop(ctx)
            except Exception as exc:   # a monitor that cannot summarise says so; the run goes on
                monitors[getattr(m, "name", None) or m.type] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        self._detach(ctx.plan)
        return monitors

    def _observer_load(self) -> dict:
        """How many HTTP requests the lab itself (probes, steps, checks) sent to each service
        that publishes an HTTP endpoint."""
        before, since = self._requests_before
        secs = max(1e-6, time.time() - since)
        ports = self.lab.endpoint_owners()
        out: dict = {}
        for (netloc, family), count in http.request_counts().items():
            target = ports.get(netloc)
            n = count - before.get((netloc, family), 0)
            if target and n:
                t = out.setdefault(target, {"requests": 0, "by_path": {}})
                t["requests"] += n
                t["by_path"][family] = n
        for t in out.values():
            t["per_sec"] = round(t["requests"] / secs, 2)
        return out

    def _detach(self, plan) -> None:
        self.journal.handlers = [h for h in self.journal.handlers if all(h is not m for m in plan.monitors)]

    def _verdict(self, ctx: RunContext, result: VariantResult) -> str:
        """FAIL on evidence of harm (a violation past the tolerance, a failed check or undo);
        otherwise INCONCLUSIVE when the evidence is incomplete (a condition judged for less than
        min_coverage of the method's seconds, a final check that could not look); PASS only
        with full evidence. Unknown outranks holds; a violation outranks unknown."""
        ss, tr = ctx.plan.steady_state, ctx.tracker
        reasons: list[Reason] = []
        firsts = list(tr.first_violations[:3])
        if result.aborted:
            reasons.append(Reason("aborted", f"aborted: {result.abort_reason}", short=f"aborted: {ctx.abort_short or result.abort_reason}",
                                  violations=ctx.abort_violations or firsts))
        if ss.abort_on_violation:
            if tr.exceeded and not result.aborted:
                reasons.append(Reason("violated", f"hypothesis violated for {tr.longest_secs:.0f} s (> {ss.tolerance_secs:.0f} s)",
                                      violations=firsts))
            if tr.current_since is not None:
                now = [violation_text(v) for v in tr.last_violations]
                reasons.append(Reason("still-violated", "hypothesis still violated at the end: " + "; ".join(now[:3]),
                                      short="hypothesis still violated at the end", violations=list(tr.last_violations[:3])))
        for c in result.checks:
            if c["outcome"] == "fail":
                reasons.append(Reason("check-failed", f"{c['name']}: {c['evidence']}", short=f"final check {c['name']} failed",
                                      subject=c["name"]))
        for u in result.undone:
            if not u.get("ok", True):
                reasons.append(Reason("undo-failed", f"undo of {u['step']} did not succeed: "
                                                     f"{u.get('error') or u.get('first_error') or u}",
                                      short=f"undo of {u['step']} did not succeed", subject=u["step"]))
        for r in result.rollbacks:
            if not r.get("ok"):
                reasons.append(Reason("rollback-failed", f"rollback step {r['id']} did not succeed: {r.get('error') or r}",
                                      short=f"rollback step {r['id']} did not succeed", subject=r["id"]))
        if reasons:
            if firsts:
                reasons.append(Reason("first-violation", f"first violation: {'; '.join(violation_text(v) for v in firsts)}",
                                      short="first violation: " + violation_text(firsts[0]), violations=firsts))
            result.reasons = [r.as_dict() for r in reasons]
            return "FAIL"
        # the coverage of conditions decides only where they decide (abort_on_violation); an
        # experiment judged by its final checks reports it without being held to it
        coverage = result.coverage if ss.abort_on_violation else {}
        result.reasons = inconclusive_reasons(coverage, ss.min_coverage, result.checks)
        if not ss.conditions and not result.checks:
            result.reasons.append(Reason("nothing-judged", "nothing was judged: the experiment has no steady-state "
                                         "condition and no final check", short="nothing was judged").as_dict())
        elif not ss.abort_on_violation and not result.checks:
            result.reasons.append(Reason("nothing-judged", "nothing decided: the conditions do not abort "
                                         "(abort_on_violation: false) and there is no final check",
                                         short="nothing decided").as_dict())
        return "INCONCLUSIVE" if result.reasons else "PASS"

    # -- files -----------------------------------------------------------------------------------------
    def save_results(self) -> None:
        data = {"run_id": self.run_id, "experiment": self.exp.name, "title": self.exp.title,
                "exit_code": self.exit_code() if self.results else None,
                "scale_model": self.exp.plan(self.exp.primary).lab.scale_model.model_dump(),
                "variants": [asdict(r) for r in self.results]}
        (self.run_dir / "results.json").write_text(json.dumps(data, indent=2, default=str))

    def write_manifest(self, images: bool = False) -> None:
        manifest = {
            "run_id": self.run_id, "experiment": self.exp.name, "seed": self.exp.seed,
            "versions": self.exp.versions.model_dump(by_alias=True), "proxy_version": self.settings.proxy_version,
            "variants": [v.name for v in self.selected],
            "settings": self.settings.public(),   # no credentials in a bundle
            "host": host_facts(),
            # builds the user supplied (PULSAR_DIST_<release>): where from, and the digest of what ran
            "supplied_releases": self.lab.provenance(self.releases()),
        }
        if images:
            manifest["images"] = self.lab.image_ids(self.releases(), pulsar=self.needs_pulsar())
        (self.run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
