"""Live metrics of a run for the team's own monitoring: a Prometheus /metrics page on 127.0.0.1
while `chaoslab experiment`, `gate` or `replay` runs.

`LiveMetrics` is a run handler like progress.ConsoleProgress: the runner's journal hands it every
record (on_event, on_sample) and it keeps the run's state in a registry of its own (never
prometheus_client's global one). `live_metrics` serves that registry with prometheus_client's
start_http_server for the length of a command, then a short linger so a scraper catches the
verdict, then shuts the server down (also on Ctrl-C and on errors). A port that is taken, or
that the lab itself publishes, is one line and the run goes on without metrics.

Every metric, its labels and its encoding: docs/live-metrics.md. In short (all prefixed chaoslab_):
run_info, run_elapsed_seconds, variant_running, phase, step_running, condition_value,
condition_bound, condition_state (STATES), condition_violations_total, variant_verdict and
run_verdict (the verdict's exit code, run.runner.CODES).
"""

from __future__ import annotations

import math
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server

from chaoslab.errors import LabError
from chaoslab.settings import LabSettings

HOST = "127.0.0.1"
# Not a port the lab publishes (settings.LabSettings.host_ports: 15672-15674, 15682-15684, 16650,
# 18080-18083), nor Prometheus' own 9090 or the usual exporters' 91xx.
DEFAULT_PORT = 19464
DEFAULT_LINGER_SECS = 5.0
PORT_ENV = "CHAOSLAB_METRICS_PORT"

# chaoslab_condition_state: a condition's second as a number
STATES = {"holds": 0, "violated": 1, "unknown": 2, "excused": 3}
# the phases of a variant (run.context.RunContext.phase), in order
PHASES = ("start", "lab", "workload", "steady", "method", "rollback", "recovery", "after", "finish")


def verdict_code(verdict: str) -> int:
    """A verdict's exit code (run.runner.CODES: 0 PASS, 1 FAIL, 2 INCONCLUSIVE / ERROR, 130
    INTERRUPTED); 2 for anything else. The runner is imported here, not at the top: the CLI's
    parser reads this module's defaults without loading the runner."""
    from chaoslab.run.runner import CODES
    return CODES.get(verdict, 2)


def _number(x) -> float:
    """A figure for a gauge: NaN when there is none."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return math.nan


class LiveMetrics:
    """The run's state as Prometheus metrics, fed by the runner's journal (a run handler). Each
    run-start begins afresh (a `--repeat` series or a gate's runs: the latest run is shown)."""

    def __init__(self, run_dir: Path | str | None = None, clock=time.time):
        self.run_dir = run_dir     # the CLI sets it to each runner's folder before the run
        self.url: str | None = None   # where it is served (live_metrics sets it)
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._lock = threading.Lock()
        self.started: float | None = None
        self.ended: float | None = None          # the run-end's time, once seen
        self._steps: dict[tuple, tuple] = {}     # (variant, kind, step) -> its labels while running
        self._phase: dict[str, str] = {}         # variant -> its current phase
        self.run_info = Info("chaoslab_run", "The run being served: run id, run folder, experiment", registry=r)
        self.elapsed = Gauge("chaoslab_run_elapsed_seconds", "Seconds since the run started (frozen at its end)",
                             registry=r)
        self.elapsed.set_function(self._elapsed)
        self.variant_running = Gauge("chaoslab_variant_running", "1 while the variant runs, 0 before and after",
                                     ["variant"], registry=r)
        self.phase = Gauge("chaoslab_phase", "1 for the running variant's current phase, 0 for its other phases",
                           ["variant", "phase"], registry=r)
        self.step_running = Gauge("chaoslab_step_running", "1 while the step (kind step) or its undo (kind undo) "
                                  "runs, then 0; index: its place in the method (or in the rollback steps), from 1",
                                  ["variant", "step", "step_type", "index", "kind"], registry=r)
        self.condition_value = Gauge("chaoslab_condition_value", "The figure the condition compared with its bound in "
                                     "the last judged second (NaN: none, e.g. unknown)", ["variant", "condition"],
                                     registry=r)
        self.condition_bound = Gauge("chaoslab_condition_bound", "The condition's bound (its max or min)",
                                     ["variant", "condition"], registry=r)
        self.condition_state = Gauge("chaoslab_condition_state", "The condition in the last judged second: 0 holds, "
                                     "1 violated, 2 unknown, 3 violated but excused by a declared planned outage",
                                     ["variant", "condition"], registry=r)
        self.violations = Counter("chaoslab_condition_violations", "Seconds the condition was judged violated "
                                  "(excused ones and the finish phase not counted)", ["variant", "condition"],
                                  registry=r)
        self.variant_verdict = Gauge("chaoslab_variant_verdict", "The variant's verdict as its exit code: 0 PASS, "
                                     "1 FAIL, 2 INCONCLUSIVE or ERROR, 130 INTERRUPTED (label verdict: the word)",
                                     ["variant", "verdict"], registry=r)
        self.run_verdict = Gauge("chaoslab_run_verdict", "The run's exit code at its end: 0 PASS, 1 FAIL, "
                                 "2 INCONCLUSIVE or ERROR, 130 INTERRUPTED (label verdict: the word)",
                                 ["verdict"], registry=r)

    def _elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return max(0.0, (self.ended if self.ended is not None else self.clock()) - self.started)

    # -- the handler interface (chaoslab.run.journal) -----------------------------------------------
    def on_event(self, e: dict) -> None:
        with self._lock:
            kind = e.get("type")
            if kind == "run-start":
                self._run_start(e)
            elif kind == "run-end":
                self.ended = e.get("t") or self.clock()
                verdict = str(e.get("verdict") or "ERROR")
                code = e.get("exit_code")
                self.run_verdict.labels(verdict).set(code if isinstance(code, int) else verdict_code(verdict))
            elif kind == "event":
                self._event(e)

    def on_sample(self, s: dict) -> None:
        with self._lock:
            variant = s.get("variant")
            if not isinstance(variant, str):
                return
            if isinstance(s.get("phase"), str):
                self._set_phase(variant, s["phase"])
            counted = s.get("phase") != "finish"   # as the tracker: stopping clients say nothing
            for condition, c in (s.get("conditions") or {}).items():
                if not isinstance(c, dict):
                    continue
                self.condition_value.labels(variant, condition).set(_number(c.get("value")))
                self.condition_bound.labels(variant, condition).set(_number(c.get("bound")))
                state = c.get("state")
                self.condition_state.labels(variant, condition).set(STATES.get(state, STATES["unknown"]))
                counter = self.violations.labels(variant, condition)   # the series exists from 0
                if state == "violated" and counted:
                    counter.inc()

    # -- what each record changes ---------------------------------------------------------------------
    def _run_start(self, e: dict) -> None:
        for metric in (self.variant_running, self.phase, self.step_running, self.condition_value,
                       self.condition_bound, self.condition_state, self.violations, self.variant_verdict,
                       self.run_verdict):
            metric.clear()
        self._steps.clear()
        self._phase.clear()
        self.started, self.ended = e.get("t") or self.clock(), None
        self.run_info.info({"run_id": str(e.get("run_id") or ""), "run_dir": str(self.run_dir or ""),
                            "experiment": str(e.get("experiment") or "")})
        for variant in e.get("variants") or []:
            self.variant_running.labels(str(variant)).set(0)

    def _event(self, e: dict) -> None:
        name, variant = e.get("name"), e.get("variant")
        if not isinstance(variant, str):
            return
        if name == "variant-start":
            self.variant_running.labels(variant).set(1)
            self._set_phase(variant, "start")
        elif name == "phase" and isinstance(e.get("phase"), str):
            self._set_phase(variant, e["phase"])
        elif name in ("step-start", "undo-start"):
            kind = "step" if name == "step-start" else "undo"
            index = e.get("index")
            labels = (variant, str(e.get("step")), str(e.get("step_type") or ""),
                      str(index) if index is not None else "", kind)
            self._steps[(variant, kind, e.get("step"))] = labels
            self.step_running.labels(*labels).set(1)
        elif name in ("step-end", "undo-end"):
            labels = self._steps.pop((variant, "step" if name == "step-end" else "undo", e.get("step")), None)
            if labels:
                self.step_running.labels(*labels).set(0)
        elif name == "variant-end":
            verdict = str(e.get("verdict") or "ERROR")
            self.variant_verdict.labels(variant, verdict).set(verdict_code(verdict))
            self.variant_running.labels(variant).set(0)
            for phase in self._phases(variant):
                self.phase.labels(variant, phase).set(0)
            self._phase.pop(variant, None)
            for key in [k for k in self._steps if k[0] == variant]:
                self.step_running.labels(*self._steps.pop(key)).set(0)

    def _phases(self, variant: str) -> list[str]:
        current = self._phase.get(variant)
        return list(PHASES) + ([current] if current and current not in PHASES else [])

    def _set_phase(self, variant: str, phase: str) -> None:
        if self._phase.get(variant) == phase:
            return
        self._phase[variant] = phase
        for p in self._phases(variant):
            self.phase.labels(variant, p).set(1 if p == phase else 0)


# -- serving ------------------------------------------------------------------------------------------
def metrics_port(flag: str | None, env: dict | None = None) -> int | None:
    """The port to serve on: --metrics-port, else CHAOSLAB_METRICS_PORT, else DEFAULT_PORT; None
    for 0 or off. Anything else is one LabError line, before anything starts."""
    env = os.environ if env is None else env
    given = flag if flag is not None else env.get(PORT_ENV, "").strip() or None
    source = "--metrics-port" if flag is not None else PORT_ENV
    raw = (given if given is not None else str(DEFAULT_PORT)).strip().lower()
    if raw in ("0", "off"):
        return None
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise LabError(f"{source} {given!r}: give a port number (1-65535), or 0 / off for no live metrics")
    return port


def linger_secs(value: float | None) -> float:
    if value is None:
        return DEFAULT_LINGER_SECS
    if not 0 <= value <= 3600:
        raise LabError(f"--metrics-linger {value:g}: give seconds between 0 and 3600")
    return float(value)


class MetricsServer:
    """prometheus_client's HTTP server for one registry, and its clean shutdown."""

    def __init__(self, server, thread: threading.Thread):
        self.server, self.thread = server, thread
        self.port = server.server_port
        self.url = f"http://{HOST}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def serve(registry: CollectorRegistry, port: int, log=print) -> MetricsServer | None:
    """Serve `registry` on 127.0.0.1:port (0: any free port); None, after one line, when the
    port cannot be had: the run goes on without live metrics."""
    try:
        server, thread = start_http_server(port, addr=HOST, registry=registry)
    except OSError as exc:
        log(f"live metrics: port {port} on {HOST} cannot be had ({exc.strerror or exc}); "
            "the run goes on without them (--metrics-port N or off)")
        return None
    return MetricsServer(server, thread)


def lab_port(port: int) -> bool:
    """Whether the lab itself publishes `port` (with the environment's settings)."""
    try:
        settings = LabSettings.from_env()
    except (LabError, ValueError):   # the run says what is wrong with them; the defaults here
        settings = LabSettings()
    return port in settings.host_ports() | LabSettings().host_ports()


@contextmanager
def live_metrics(port: int | None, linger: float = DEFAULT_LINGER_SECS, log=print):
    """Live metrics for the length of the block: yields the LiveMetrics handler to give the
    runner (None without metrics: off, the port taken or the lab's own). After a run has ended,
    the server goes on `linger` seconds (Ctrl-C cuts that short), then shuts down; on an error
    or Ctrl-C in the block, at once."""
    if port is None:
        yield None
        return
    if lab_port(port):
        log(f"live metrics: port {port} is one the lab publishes; the run goes on without them "
            "(--metrics-port N or off)")
        yield None
        return
    live = LiveMetrics()
    server = serve(live.registry, port, log)
    if server is None:
        yield None
        return
    live.url = server.url
    log(f"live metrics: {server.url}")
    done = False
    try:
        yield live
        done = True
    finally:
        try:
            if done and live.ended is not None and linger > 0:
                log(f"live metrics: serving the verdict {linger:g} s more on {server.url} (Ctrl-C stops now)")
                try:
                    time.sleep(linger)
                except KeyboardInterrupt:
                    pass
        finally:
            server.close()
