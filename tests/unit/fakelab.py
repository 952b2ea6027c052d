"""A lab driver with no engine behind it (chaoslab/lab/driver.py's interface): it records what
was asked of it and answers from its own dictionaries. Unit tests drive the runner's whole phase
loop and single steps with it; integration tests use the real compose lab."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path

from chaoslab.errors import LabError, PauseFailed
from chaoslab.lab.driver import LabDriver, LabShape, LogRead, ServiceState
from chaoslab.settings import LabSettings


class FakeLab(LabDriver):
    capabilities = frozenset({"pause", "cpu-quota"})
    instances: list = []

    def __init__(self, settings: LabSettings | None = None, log=print, *, config: dict | None = None,
                 release: str = "3.2.2"):
        self.settings = settings or LabSettings()
        self.calls: list = []                       # what was asked, in order
        self.shapes: list[LabShape] = []
        self._configured = {f"broker-{n}": {"release": release, "config": dict(config or {})}
                            for n in range(1, self.settings.brokers + 1)}
        self.state: dict[str, str] = {}            # service -> running / paused / exited
        self.gone: set[str] = set()                # services that are absent (pause/exec raise)
        self.pause_fails = False
        self.logs: dict[str, str] = {}
        self.exec_answers: dict = {}               # argv[0] or (service, argv[0]) -> (code, output)
        self.up_error: Exception | None = None
        self.evidence_dir = None
        self.on_evidence = None
        FakeLab.instances.append(self)

    # -- before anything starts
    def lock(self, run_dir: Path, what: str):
        return nullcontext()

    def check_releases(self, releases):
        self.checked_releases = list(releases)

    def build_images(self, releases, pulsar=True, agent=True):
        self.calls.append("build")
        self.built_agent = agent
        return {}

    def image_ids(self, releases, pulsar=True):
        return {f"fake/{r}": None for r in releases}

    # -- lifecycle
    def up(self, shape: LabShape | None = None, fresh: bool | None = None, **parts) -> float:
        self.calls.append("up")
        self.shapes.append(shape)
        if self.up_error is not None:
            raise self.up_error
        names = self.settings.services(pulsar=shape.pulsar if shape else True,
                                       rabbitmq_nodes=shape.rabbitmq_nodes if shape else 1)
        self.state = {n: "running" for n in names}
        return 0.1

    def down(self):
        self.calls.append("down")
        self.state = {}

    def remove_groups(self):
        self.calls.append("remove-groups")

    # -- services
    def services(self, role=None):
        return [s for s in self.state if role is None or s.rstrip("0123456789").rstrip("-") == role]

    def service_state(self, service):
        if service in self.gone or service not in self.state and self.state:
            return ServiceState(service, "absent")
        return ServiceState(service, self.state.get(service, "running"), incarnation=f"{service}-1")

    def configured(self, service):
        c = self._configured.get(service, {"release": None, "config": {}})
        return {"release": c["release"], "config": dict(c["config"])}

    def roll(self, changes, wait=True, timeout=300):
        self.calls.append(("roll", {s: dict(c) for s, c in changes.items()}, wait))
        for service, change in changes.items():
            c = self._configured.setdefault(service, {"release": None, "config": {}})
            if change.get("version"):
                c["release"] = change["version"]
            if change.get("config") is not None:
                c["config"] = dict(change["config"]) if change.get("replace_config") \
                    else {**c["config"], **{k: str(v) for k, v in change["config"].items()}}

    def stop(self, service, timeout=20):
        self.calls.append(("stop", service))
        self.state[service] = "exited"

    def start(self, service, wait=True, timeout=300):
        self.calls.append(("start", service))
        self.state[service] = "running"

    def kill(self, service, signal="SIGKILL"):
        self.calls.append(("kill", service, signal))
        self.state[service] = "exited"

    def pause(self, service):
        if service in self.gone:
            raise LabError(f"{service} is not running")
        if self.pause_fails:
            raise PauseFailed(f"{service} could not be paused: freezer timed out")
        self.calls.append(("pause", service))
        self.state[service] = "paused"

    def unpause(self, service):
        if self.state.get(service) == "paused":
            self.calls.append(("unpause", service))
            self.state[service] = "running"

    def set_cpu_quota(self, service, cpus):
        if service in self.gone:
            raise LabError(f"{service} is not running")
        self.calls.append(("cap", service, cpus))
        return {"period": 0, "quota": 0, "nano_cpus": 0}

    def restore_cpu_quota(self, service, before):
        if service in self.gone:
            raise LabError(f"{service} is not running")
        self.calls.append(("restore", service, before.get("quota")))

    # -- evidence and access
    def read_log(self, service, since=None):
        if service in self.gone:
            return None
        return LogRead(f"{service}-1", self.logs.get(service, ""), time.time())

    def keep_logs(self, service=None, reason="", since=None):
        self.calls.append(("keep-logs", service, reason))
        return []

    def exec(self, service, argv, timeout=60):
        if service in self.gone:
            raise LabError(f"{service} is not running")
        self.calls.append(("exec", service, tuple(argv)))
        return self.exec_answers.get((service, argv[0]), self.exec_answers.get(argv[0], (0, "")))

    # -- endpoints
    def endpoint(self, service, kind):
        return f"http://{service}" if kind == "admin" else f"fake://{service}/{kind}"

    def describe(self, shape):
        return "(fake)"
