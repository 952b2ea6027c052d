"""Run an experiment file against the real lab: for each variant, a fresh lab, the workload, the
observers, the steady-state check, the method (rolling upgrade), abort and rollback, and a
verdict computed from the measurements. Everything goes into runs/<id>/journal.jsonl as it
happens; the report is built from that journal.

Exit codes: 0 PASS, 1 FAIL (the primary variant broke the hypothesis), 2 the lab itself failed,
130 interrupted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chaoslab import faults
from chaoslab.checks import loss
from chaoslab.checks.hypothesis import Tracker, evaluate
from chaoslab.errors import LabError
from chaoslab.experiment.run import ExperimentRun, Interrupted
from chaoslab.experiment.spec import Experiment, Variant
from chaoslab.lab import health
from chaoslab.observe.pulsar_observers import Observers
from chaoslab.settings import LabSettings
from chaoslab.workload.admin import PulsarAdmin
from chaoslab.workload.driver import WorkloadConfig, WorkloadDriver
from chaoslab.workload.layout import Layout
from chaoslab.workload.lookups import LookupClients
from chaoslab.workload.stats import ClientStats

STEADY_GRACE_SECS = 90  # how long the steady state may take to establish itself


@dataclass
class VariantResult:
    name: str
    role: str
    description: str
    to_version: str
    verdict: str = "ERROR"            # PASS | FAIL | ERROR
    reasons: list[str] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    aborted: bool = False
    rollback: dict | None = None
    recovery: dict | None = None
    loss: dict | None = None
    kpis: dict = field(default_factory=dict)
    longest_violation_secs: float = 0.0
    violated_seconds: int = 0
    first_violations: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0


class ExperimentRunner(ExperimentRun):
    kind = "rolling-upgrade"

    def __init__(self, experiment: Experiment, run_dir: Path | None = None, keep: bool = False,
                 variants: list[str] | None = None, log=print, settings: LabSettings | None = None):
        super().__init__(experiment, run_dir, keep, log, settings, pulsar_to=experiment.versions.to,
                         pico_vms=experiment.lab.pico_vms, nano_vms=experiment.lab.nano_vms)
        self.only = variants

    def variants(self) -> list[Variant]:
        if not self.only:
            return list(self.exp.variants)
        unknown = set(self.only) - {v.name for v in self.exp.variants}
        if unknown:
            raise LabError(f"unknown variant(s) {', '.join(sorted(unknown))}")
        return [v for v in self.exp.variants if v.name in self.only]

    def pulsar_versions(self) -> list[str]:
        return [self.exp.versions.from_, *[self.exp.version_of(v) for v in self.variants()]]

    def execute(self) -> None:
        for variant in self.variants():
            self.results.append(self.run_variant(variant))
            self.save_results()

    def results_payload(self) -> dict:
        return {"scale_model": asdict(self.exp.lab.scale_model), "hypothesis": asdict(self.exp.hypothesis),
                "variants": [asdict(r) for r in self.results]}

    def build_report(self) -> None:
        from chaoslab.report import build_report
        build_report(self.run_dir)

    # -- one variant -------------------------------------------------------------------------------
    def run_variant(self, variant: Variant) -> VariantResult:
        exp, j = self.exp, self.journal
        version = exp.version_of(variant)
        result = VariantResult(variant.name, variant.role, variant.description, version, started=time.time())
        j.event("variant-start", variant=variant.name, role=variant.role, to_version=version,
                broker_config=variant.broker_config)
        self.log(f"[{variant.name}] fresh lab on Pulsar {exp.versions.from_} ...")
        self.lab.down()
        self.lab.up(pico=exp.lab.pico_vms, nano=exp.lab.nano_vms, broker_config=exp.lab.broker_config,
                    proxy_config=exp.lab.proxy_config, fresh=True)
        j.event("lab-up", variant=variant.name, broker_config=exp.lab.broker_config,
                proxy_config=exp.lab.proxy_config, scale_model=asdict(exp.lab.scale_model))

        w = exp.workload
        layout = Layout.generate(w.tenants, w.topics_per_tenant, w.partitioned_every, seed=exp.seed)
        PulsarAdmin(self.lab.proxy_admin_url, self.settings.cluster).provision(layout)
        stats = ClientStats()
        driver = WorkloadDriver(self.lab.proxy_service_url, layout,
                                WorkloadConfig(rate=w.rate, messages=None, payload_bytes=w.payload_bytes),
                                run_id=f"{variant.name}-{exp.seed}", stats=stats)
        lookups = LookupClients(self.lab.proxy_service_url, layout, stats, w.lookup_clients,
                                w.lookup_topics, w.lookup_reconnect_secs)
        sample_topics = [t.fqn + ("-partition-0" if t.partitions else "") for t in layout.topics]
        observers = Observers(self.lab, sample_topics)
        ticker = Ticker(self, variant.name, observers, stats, driver)
        upgraded: list[int] = []
        driver.start()
        lookups.start()
        observers.start()
        ticker.start()
        try:
            # 1. steady state before anything is changed
            ticker.phase = "steady"
            if not self._establish_steady_state(ticker):
                result.reasons.append(f"steady state never held for {exp.phases.steady_secs:.0f} s before the method "
                                      f"(first violations: {'; '.join(ticker.tracker.first_violations[:3])})")
                j.event("no-steady-state", variant=variant.name, violations=ticker.tracker.first_violations)
                return self._finish(result, ticker, driver, lookups, observers, verdict="ERROR")
            # 2. the method, watched
            ticker.reset_tracker(exp.hypothesis.tolerance_secs)
            ticker.phase = "method"
            injection = time.time()
            result.kpis["injection_t"] = injection
            for n in exp.method.brokers:
                self.check_interrupt()
                config = dict(variant.broker_config)
                upgraded.append(n)
                step = faults.roll_broker(self.lab, j, n, version, config, exp.method.wait_for,
                                          exp.method.wait_timeout_secs)
                result.steps.append(step)
                if not step["wait_ok"]:
                    ticker.abort_reason = (f"broker-{n} did not pass the {exp.method.wait_for} check "
                                           f"within {exp.method.wait_timeout_secs:.0f} s")
                if ticker.abort_reason is None:
                    self._watch(exp.phases.settle_secs, ticker)
                if ticker.abort_reason:
                    break
            if ticker.abort_reason:
                result.aborted = True
                result.kpis["decision_t"] = time.time()
                j.event("abort", variant=variant.name, reason=ticker.abort_reason)
                self.log(f"[{variant.name}] abort: {ticker.abort_reason} -> rollback")
                ticker.phase = "rollback"
                rb = exp.rollback
                revert = dict(rb.revert)
                result.rollback = faults.rollback(self.lab, j, upgraded, revert,
                                                  exp.versions.from_ if rb.rollback_version else None,
                                                  rb.wait_timeout_secs)
                if not result.rollback["ok"] and rb.recovery:
                    ticker.phase = "recovery"
                    result.recovery = faults.recover(self.lab, j, list(rb.recovery_delete_topics),
                                                     rb.wait_timeout_secs)
            # 3. after
            ticker.phase = "after"
            self._watch(exp.phases.after_secs, ticker, abort=False)
            return self._finish(result, ticker, driver, lookups, observers)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, Interrupted)) and ticker.phase == "method" and upgraded:
                # the declared rollback runs on Ctrl-C / SIGTERM too; a second Ctrl-C skips it
                j.event("interrupted", during="method", upgraded=[f"broker-{n}" for n in upgraded])
                try:
                    rb = exp.rollback
                    result.rollback = faults.rollback(self.lab, j, upgraded, dict(rb.revert),
                                                      exp.versions.from_ if rb.rollback_version else None,
                                                      min(rb.wait_timeout_secs, 60))
                except BaseException:
                    j.event("rollback-skipped", reason="interrupted again")
            result.verdict, result.ended = "INTERRUPTED", time.time()
            result.reasons.append("interrupted")
            self.results.append(result)
            ticker.stop()
            lookups.stop()
            observers.stop()
            driver.close()
            raise

    def _watch(self, secs: float, ticker: "Ticker", abort: bool = True) -> None:
        until = time.monotonic() + secs
        while time.monotonic() < until:
            self.check_interrupt()
            if abort and ticker.abort_reason:
                return
            time.sleep(0.5)

    def _establish_steady_state(self, ticker: "Ticker") -> bool:
        need = self.exp.phases.steady_secs
        deadline = time.monotonic() + need + STEADY_GRACE_SECS
        while time.monotonic() < deadline:
            self.check_interrupt()
            ok_since = ticker.ok_since
            if ok_since is not None and time.time() - ok_since >= need:
                self.journal.event("steady-state-held", secs=need)
                return True
            time.sleep(0.5)
        return False

    def _finish(self, result: VariantResult, ticker, driver, lookups, observers, verdict: str | None = None):
        exp, j = self.exp, self.journal
        lookups.stop()
        driver.stop_producing()
        driver.drain(quiet_secs=10, timeout=60)
        ticker.stop()
        observers.stop()
        driver.close()
        report = loss.check(driver.history)
        driver.history.save(self.run_dir / f"history-{result.name}.jsonl")
        result.loss = report.summary()
        tr = ticker.tracker
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
        final_health = {f"broker-{n}": health.functional(self.lab.broker_admin_url(n)).ok
                        for n in range(1, self.settings.brokers + 1)}
        j.event("final-health", variant=result.name, brokers=final_health)
        if verdict is None:
            reasons = []
            if result.aborted:
                reasons.append(f"aborted: {ticker.abort_reason}")
            if tr.exceeded and not result.aborted:
                reasons.append(f"hypothesis violated for {tr.longest_secs:.0f} s (> {exp.hypothesis.tolerance_secs:.0f} s)")
            if tr.current_since is not None:
                reasons.append("hypothesis still violated at the end: " + "; ".join(ticker.last_violations[:3]))
            if report.lost:
                reasons.append(f"{len(report.lost)} acknowledged messages never delivered")
            if not all(final_health.values()):
                reasons.append("brokers not serving at the end: " +
                               ", ".join(b for b, ok in final_health.items() if not ok))
            if result.recovery is not None and not result.recovery.get("ok"):
                reasons.append("recovery procedure did not bring the brokers back")
            verdict = "FAIL" if reasons else "PASS"
            result.reasons = reasons + ([f"first violation: {'; '.join(tr.first_violations[:3])}"]
                                        if tr.first_violations and reasons else [])
        result.verdict = verdict
        result.ended = time.time()
        logs_dir = self.lab.save_logs(self.run_dir / "logs" / result.name, since=result.started)
        j.event("variant-end", variant=result.name, verdict=verdict, reasons=result.reasons,
                kpis=result.kpis, loss=result.loss, logs=str(logs_dir.relative_to(self.run_dir)))
        self.log(f"[{result.name}] {verdict}" + (f": {result.reasons[0]}" if result.reasons else ""))
        return result


class Ticker:
    """Once a second: read the observers and the client stats, evaluate the hypothesis, journal it."""

    def __init__(self, runner: ExperimentRunner, variant: str, observers: Observers, stats: ClientStats,
                 driver: WorkloadDriver):
        self.runner = runner
        self.variant = variant
        self.observers = observers
        self.stats = stats
        self.driver = driver
        self.phase = "start"
        self.tracker = Tracker(runner.exp.hypothesis.tolerance_secs)
        self.abort_reason: str | None = None
        self.ok_since: float | None = None
        self.last_violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def reset_tracker(self, tolerance: float) -> None:
        self.tracker = Tracker(tolerance)

    def _run(self) -> None:
        h = self.runner.exp.hypothesis
        started = time.time()
        while not self._stop.wait(1.0):
            snap = self.observers.snapshot()
            client = self.stats.window(h.window_secs)
            client["backlog"] = self.driver.backlog
            client["acked_total"] = self.driver.acked
            client["received_total"] = self.driver.received
            sample = {"variant": self.variant, "phase": self.phase, **snap, "client": client,
                      "expect_publishes": time.time() - started > h.window_secs,
                      "expect_lookups": self.runner.exp.workload.lookup_clients > 0 and time.time() - started > h.window_secs}
            violations = evaluate(sample, h)
            now = time.time()
            self.last_violations = violations
            self.ok_since = None if violations else (self.ok_since or now)
            exceeded = self.tracker.update(now, violations)
            if exceeded and self.phase == "method" and self.abort_reason is None:
                self.abort_reason = (f"hypothesis violated for more than {h.tolerance_secs:.0f} s: "
                                     + "; ".join(violations[:3]))
            sample.pop("expect_publishes")
            sample.pop("expect_lookups")
            self.runner.journal.write("sample", violations=violations, **sample)
