"""The lab as the runner and the vocabulary see it: a driver with a small interface.

Everything above this module (runner, steps, probes, checks, workloads) reaches the lab's
services through these methods only; it never sees an engine, a compose file or a pod. Today's
driver is `ComposeLab` (chaoslab/lab/cluster.py: one Docker Compose project on this host); the
unit tests drive the whole runner with a fake one (tests/unit/fakelab.py). docs/lab-drivers.md
says how a Kubernetes driver would implement the same methods (a StatefulSet per role rolled
with `rollingUpdate.partition`, one ConfigMap per settings set).

Vocabulary:
- a *service* is one named member of the lab ("broker-2", "bookie-1", "proxy", "rabbitmq-3");
  a *role* is what it is ("broker", "bookie", "zookeeper", "proxy", "rabbitmq", ...).
- an *incarnation* is one run of a service's process (a container, a pod): a roll or a restart
  makes a new one; evidence (logs, thread dumps) is kept per incarnation.
- a *release* is the software version a service runs; *settings* its key=value configuration.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from chaoslab.settings import LabSettings


@dataclass(frozen=True)
class LabShape:
    """What to bring up: which parts, how many of each, the settings every broker and the proxy
    start with."""
    pulsar: bool = True
    rabbitmq_nodes: int = 1
    pico: int = 0
    nano: int = 0
    broker_config: dict = field(default_factory=dict)
    proxy_config: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceState:
    """One service as the driver sees it now: `state` is running, paused, exited or absent;
    `health` is healthy, unhealthy, starting or None (no health check); `incarnation` names the
    current process (container id, pod uid)."""
    service: str
    state: str
    exit_code: int | None = None
    health: str | None = None
    incarnation: str | None = None


@dataclass(frozen=True)
class LogRead:
    """What read_log returns: the incarnation the text came from, the text, and the time up to
    which it was read (the next read starts there)."""
    incarnation: str
    text: str
    until: float


class LabDriver(ABC):
    """The interface. Methods that change the lab raise chaoslab.errors.LabError (or a subclass)
    with a readable message when they cannot do what was asked.

    `capabilities` names what a driver can do beyond the interface's core (e.g. "pause" — freeze
    a service's processes; "cpu-quota"; "vm-groups" — start groups of memory-capped VM
    containers); a step or workload that needs one is refused before the lab is touched when the
    driver lacks it."""

    settings: LabSettings
    capabilities: frozenset[str] = frozenset()
    # evidence: while a run sets these, logs are kept per incarnation before anything replaces it
    evidence_dir: Path | None = None
    on_evidence: Callable | None = None

    # -- before anything starts ---------------------------------------------------------------------
    def lock(self, run_dir: Path, what: str) -> AbstractContextManager:
        """One run per lab: held for the whole run."""
        return nullcontext()

    def check_releases(self, releases: list[str]) -> None:
        """Refuse (LabError) a release that cannot be had, before any lab is touched."""

    def provenance(self, releases: list[str]) -> dict:
        """Where each release's software comes from when it is not the upstream artifact (a
        build the user supplied): {release: {path, sha256, ...}}; {} when all are upstream."""
        return {}

    @abstractmethod
    def build_images(self, releases: list[str], pulsar: bool = True) -> dict[str, str]:
        """Make every image the run needs available; {name: id}."""

    @abstractmethod
    def image_ids(self, releases: list[str], pulsar: bool = True) -> dict[str, str | None]:
        """The ids of the images a run on these releases uses (for the manifest)."""

    # -- lifecycle -------------------------------------------------------------------------------------
    @abstractmethod
    def up(self, shape: LabShape, fresh: bool = True) -> float:
        """Bring the lab up in `shape` and wait until every service is healthy; seconds taken."""

    @abstractmethod
    def down(self) -> None:
        """Remove the lab (keeping every incarnation's log first when a run asked for evidence)."""

    def remove_groups(self) -> None:
        """Remove what a run started beside the lab (VM groups)."""

    # -- services --------------------------------------------------------------------------------------
    @abstractmethod
    def services(self, role: str | None = None) -> list[str]:
        """The services of the lab as it stands (of one role when given)."""

    @abstractmethod
    def service_state(self, service: str) -> ServiceState:
        ...

    @abstractmethod
    def configured(self, service: str) -> dict:
        """What the service was last told to run: {"release": ..., "config": {key: value}} (the
        settings set on it beyond the lab's defaults)."""

    @abstractmethod
    def roll(self, changes: dict[str, dict], wait: bool = True, timeout: float = 300) -> None:
        """Replace services by new incarnations: `changes` maps a service to {version, config,
        replace_config} (version: the release; config: settings merged into what it runs, or
        replacing them with replace_config); all of them at once (a full restart) or one (a
        rolling step). With wait=True, returns when each is healthy, else LabError."""

    @abstractmethod
    def stop(self, service: str, timeout: int = 20) -> None:
        ...

    @abstractmethod
    def start(self, service: str, wait: bool = True, timeout: float = 300) -> None:
        """Start a stopped or killed service again (the same incarnation's disks)."""

    @abstractmethod
    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        ...

    def pause(self, service: str) -> None:
        raise NotImplementedError("this lab driver cannot pause a service")

    def unpause(self, service: str) -> None:
        raise NotImplementedError("this lab driver cannot pause a service")

    def set_cpu_quota(self, service: str, cpus: float | None) -> dict:
        raise NotImplementedError("this lab driver cannot cap a service's CPU")

    def restore_cpu_quota(self, service: str, before: dict) -> None:
        raise NotImplementedError("this lab driver cannot cap a service's CPU")

    # -- evidence and access -------------------------------------------------------------------------
    @abstractmethod
    def read_log(self, service: str, since: float | None = None) -> LogRead | None:
        """The current incarnation's log since `since` (all of it when None); None when it
        cannot be read."""

    @abstractmethod
    def keep_logs(self, service: str | None = None, reason: str = "", since: float | None = None) -> list[Path]:
        """Save each incarnation's log of `service` (all services when None) into evidence_dir."""

    @abstractmethod
    def exec(self, service: str, argv: list[str], timeout: float = 60) -> tuple[int, str]:
        """Run a command inside the service's current incarnation: (exit code, output)."""

    def thread_dump(self, service: str, reason: str = "", wait_secs: float = 8) -> Path | None:
        """A JVM thread dump of the service, kept as evidence; None when it cannot be had."""
        return None

    # -- endpoints -----------------------------------------------------------------------------------
    @abstractmethod
    def endpoint(self, service: str, kind: str) -> str:
        """The URL at which the host reaches `service`'s `kind` endpoint ("admin" — HTTP admin;
        "service" — the binary protocol; "amqp"; "management")."""

    def endpoint_owners(self) -> dict[str, str]:
        """{host:port: service} for every HTTP endpoint the lab publishes (to count what the
        lab's own observers asked of each service)."""
        return {}

    def describe(self, shape: LabShape) -> str:
        """One line for the console: what `up(shape)` brings up."""
        return "the lab"

    # -- conveniences in terms of the above (Pulsar's names for its endpoints) -----------------------
    def broker_admin_url(self, n: int) -> str:
        return self.endpoint(f"broker-{n}", "admin")

    @property
    def proxy_admin_url(self) -> str:
        return self.endpoint("proxy", "admin")

    @property
    def proxy_service_url(self) -> str:
        return self.endpoint("proxy", "service")

    def set_broker(self, n: int, version: str | None = None, config: dict | None = None,
                   replace_config: bool = False, wait: bool = True, timeout: float = 300) -> None:
        self.roll({f"broker-{n}": {"version": version, "config": config, "replace_config": replace_config}},
                  wait=wait, timeout=timeout)

    def set_brokers(self, changes: dict[int, dict], timeout: float = 300) -> None:
        self.roll({f"broker-{n}": c for n, c in changes.items()}, wait=False, timeout=timeout)

    def rabbitmqctl(self, n: int, *args: str, timeout: float = 60) -> tuple[int, str]:
        """`rabbitmqctl <args>` on RabbitMQ node n: (exit code, output)."""
        return self.exec(self.settings.rabbitmq_service(n), ["timeout", str(int(timeout)), "rabbitmqctl", *args],
                         timeout=timeout + 10)

    def stop_service(self, service: str, timeout: int = 20) -> None:
        self.stop(service, timeout)

    def start_service(self, service: str, wait: bool = True, timeout: float = 300) -> None:
        self.start(service, wait, timeout)

    def kill_service(self, service: str, signal: str = "SIGKILL") -> None:
        self.kill(service, signal)
