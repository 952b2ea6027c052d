"""The console run handler, above the report whose words it prints. `ConsoleProgress` shows a
run as it happens: on a terminal a live panel (variant, phase, running steps, elapsed, hypothesis
state, each probe's own status fragment) with each event printed above it; elsewhere (CI, a pipe)
one line per event and a status line every 30 s."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.table import Table

from chaoslab.report import describe
from chaoslab.spec.base import probe_status

SHOWN = {"variant-start", "lab-up", "steady-state-held", "no-steady-state", "step-start", "step-end", "abort",
         "rollback-start", "undo-end", "rollback-done", "variant-end", "interrupted", "lab-error", "steps-skipped",
         "agents-shipping", "final-health", "thread-dump"}


class ConsoleProgress:
    def __init__(self, console: Console, status_every_secs: float = 30):
        self.console = console
        self.live: Live | None = None
        self.last: dict = {}
        self.variant = "-"
        self.started = time.time()
        self.status_every = status_every_secs
        self._last_status = 0.0
        if console.is_terminal:
            self.live = Live(self._panel(), console=console, refresh_per_second=2, transient=True)
            self.live.start()

    def on_event(self, e: dict) -> None:
        if e.get("type") == "run-end" and self.live:
            self.live.stop()
            self.live = None
        if e.get("type") != "event" or e.get("name") not in SHOWN:
            return
        if e.get("name") == "variant-start":
            self.variant = e.get("variant", "-")
        line = f"[{time.strftime('%H:%M:%S', time.localtime(e['t']))}] {e.get('variant', '')} {describe(e)}"
        self.console.print(line[:220], highlight=False, markup=False)

    def on_sample(self, s: dict) -> None:
        self.last = s
        if self.live:
            self.live.update(self._panel())
        elif time.time() - self._last_status >= self.status_every:
            self._last_status = time.time()
            self.console.print(self._status_line(), highlight=False, markup=False)

    def _hypothesis(self) -> str:
        v = self.last.get("violations") or []
        if not self.last:
            return "-"
        if not v:
            return "holds"
        first = v[0]
        subject = f"[{first['subject']}]" if first.get("subject") else ""
        value = f"{first['value']:.3g}" if isinstance(first["value"], float) else first["value"]
        return f"VIOLATED ({len(v)}): {first['name']}{subject}={value} vs {first['bound']}"

    def _health(self) -> str:
        """Each probe's own console fragment of the last sample (Probe.status)."""
        try:
            return probe_status(self.last)
        except Exception:   # a fragment that cannot be read must not stop the panel
            return "-"

    def _status_line(self) -> str:
        return (f"  {self.variant} | {self.last.get('phase', '-')} | steps {','.join(self.last.get('steps') or []) or '-'} | "
                f"{time.time() - self.started:.0f} s | hypothesis {self._hypothesis()} | {self._health()}")

    def _panel(self) -> Table:
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold")
        t.add_column()
        t.add_row("variant", self.variant)
        t.add_row("phase", str(self.last.get("phase", "-")))
        t.add_row("steps", ", ".join(self.last.get("steps") or []) or "-")
        t.add_row("elapsed", f"{time.time() - self.started:.0f} s")
        t.add_row("hypothesis", self._hypothesis())
        t.add_row("health", self._health())
        return t
