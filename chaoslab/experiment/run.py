"""What every experiment run shares, whatever its kind: one run per lab (lock), a fresh run
folder, the journal, the manifest (versions, image ids, settings, seed, host), the exit code
from the primary part's verdict, clean-up, and the report — also after Ctrl-C or a lab error.

A kind (rolling_upgrade.py, bus_outage.py) implements `execute()` (fills `self.results`),
`results_payload()` and `build_report()`; `cleanup()` may remove more than the lab.

Exit codes: 0 PASS, 1 FAIL, 2 the lab itself failed, 130 interrupted.
"""

from __future__ import annotations

import json
import platform
import threading
import time
from dataclasses import asdict
from pathlib import Path

import psutil

from chaoslab.errors import LabError
from chaoslab.lab.cluster import Lab
from chaoslab.lab.lock import LabLock
from chaoslab.observe.journal import Journal
from chaoslab.settings import RUNS_DIR, LabSettings
from chaoslab.workload import clientlog


class Interrupted(Exception):
    pass


def host_facts() -> dict:
    return {"cores": psutil.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(), "python": platform.python_version(), "machine": platform.machine()}


class ExperimentRun:
    kind = "experiment"

    def __init__(self, experiment, run_dir: Path | None, keep: bool, log, settings: LabSettings | None,
                 **overrides):
        self.exp = experiment
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + f"-{experiment.name}"
        self.run_dir = Path(run_dir or RUNS_DIR / self.run_id)
        self.keep = keep
        self.log = log
        base = settings or LabSettings.from_env()
        self.settings = LabSettings(**{**base.__dict__, "pulsar_from": experiment.versions.from_, **overrides})
        self.lab = Lab(self.settings, log=log)
        self.journal: Journal | None = None
        self.results: list = []
        self._interrupted = threading.Event()

    # -- for the kinds -------------------------------------------------------------------------------
    def execute(self) -> None:
        raise NotImplementedError

    def results_payload(self) -> dict:
        raise NotImplementedError

    def build_report(self) -> None:
        raise NotImplementedError

    def pulsar_versions(self) -> list[str]:
        return [self.exp.versions.from_]

    def cleanup(self) -> None:
        if not self.keep:
            self.lab.down()

    # -- shared ----------------------------------------------------------------------------------------
    def interrupt(self) -> None:
        self._interrupted.set()

    def check_interrupt(self) -> None:
        if self._interrupted.is_set():
            raise Interrupted()

    def exit_code(self) -> int:
        primary = next((r for r in self.results if r.role == "primary"), None)
        if primary is None or primary.verdict == "ERROR":
            return 2
        return 0 if primary.verdict == "PASS" else 1

    @staticmethod
    def verdict(code: int) -> str:
        return {0: "PASS", 1: "FAIL", 130: "INTERRUPTED"}.get(code, "ERROR")

    def run(self) -> int:
        with LabLock(self.settings.project):
            return self._run()

    def _run(self) -> int:
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise LabError(f"run folder {self.run_dir} already holds a run: choose another --out")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "experiment.yaml").write_text(self.exp.source)
        self.journal = Journal(self.run_dir / "journal.jsonl")
        clientlog.to_file(self.run_dir / "pulsar-client.log")
        self.journal.write("run-start", run_id=self.run_id, experiment=self.exp.name, kind=self.kind,
                           seed=self.exp.seed, versions=asdict(self.exp.versions), host=host_facts())
        self.write_manifest()
        code = 2
        try:
            self.lab.build_images(self.pulsar_versions())
            self.write_manifest(images=True)
            self.execute()
            code = self.exit_code()
        except (KeyboardInterrupt, Interrupted):
            self.journal.event("interrupted")
            code = 130
            self.log("interrupted: rolled back what was changed; " +
                     ("the lab is left running (--keep)" if self.keep else "removing the lab"))
        except LabError as exc:
            self.journal.event("lab-error", error=str(exc))
            self.log(f"lab error: {exc}")
            code = 2
        finally:
            self.save_results()
            try:
                self.cleanup()
            except Exception:
                pass
            self.journal.write("run-end", exit_code=code, verdict=self.verdict(code))
            self.journal.close()
            try:
                self.build_report()
            except Exception as exc:  # the journal is the record; a report bug must not hide it
                self.log(f"report could not be built: {exc}")
        return code

    def save_results(self) -> None:
        data = {"run_id": self.run_id, "experiment": self.exp.name, "title": self.exp.title, "kind": self.kind,
                "exit_code": self.exit_code() if self.results else None, **self.results_payload()}
        (self.run_dir / "results.json").write_text(json.dumps(data, indent=2, default=str))

    def write_manifest(self, images: bool = False) -> None:
        manifest = {
            "run_id": self.run_id, "experiment": self.exp.name, "kind": self.kind, "seed": self.exp.seed,
            "versions": asdict(self.exp.versions), "proxy_version": self.settings.proxy_version,
            "settings": {k: v for k, v in self.settings.__dict__.items() if k != "extra"},
            "host": host_facts(),
        }
        if images:
            wanted = {f"chaoslab/pulsar:{v}" for v in [*self.pulsar_versions(), self.settings.proxy_version]}
            wanted |= {"chaoslab/rabbitmq:latest", self.settings.agent_image}
            manifest["images"] = {}
            for tag in sorted(wanted):
                try:
                    manifest["images"][tag] = self.lab.client.images.get(tag).id
                except Exception:
                    manifest["images"][tag] = None
        (self.run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
