"""Lab lifecycle: build images, bring the compose project up and down, change one broker.

The one place that knows how the lab starts and when it is ready (compose healthchecks, which
for brokers are functional). Everything else — CLI, experiments, tests — asks it.

State that outlives one command (which Pulsar version and which settings each broker runs) is
kept in build/lab/state.json and rendered into build/lab/lab.env (image tags, ports) and
build/lab/broker-N.env (PULSAR_CONF_<key>=<value> lines, values percent-encoded), which
compose/lab.yaml reads. With official images (PULSAR_IMAGE, lab/flavour.py) the env files hold
PULSAR_PREFIX_<key>=<value> lines for every Pulsar service and build/lab/compose.official.yaml,
laid over compose/lab.yaml, starts each with the official image's contract.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import yaml

from chaoslab.errors import EngineUnavailable, LabError, PauseFailed, PortTaken
from chaoslab.lab.driver import LabDriver, LabShape, LogRead, ServiceState
from chaoslab.lab.flavour import COMPOSE_FILE, LOCAL_ONLY, OVERRIDE_NAME, LocalFlavour, flavour_of
from chaoslab.lab.flavour import local_env_lines as conf_env_lines  # noqa: F401 (the name tests know)
from chaoslab.lab.images import ImageBuilder, image_available, jcmd_runtime, pull_image
from chaoslab.settings import BUILD_DIR, LabSettings, check_version
from chaoslab.wait import wait_until

STATE_DIR = BUILD_DIR / "lab"
UP_TIMEOUT_SECS = 600
ALL_PROFILES = ("pulsar", "rabbitmq-cluster")


def engine(timeout: float = 120) -> docker.DockerClient:
    """A docker client that answers, or EngineUnavailable with what to do (`timeout`: for each
    request; `chaoslab plan` and `doctor` ask with a short one)."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as exc:  # DockerException, connection refused, missing socket
        raise EngineUnavailable(
            f"no container engine answers ({str(exc).splitlines()[0][:160]}): run 'make setup' as root "
            "to install and start Docker, or start your engine"
        ) from None


@dataclass
class LabState:
    broker_versions: dict[str, str] = field(default_factory=dict)       # "1" -> "3.2.2"
    broker_config: dict[str, dict[str, str]] = field(default_factory=dict)  # "1" -> {key: value}
    proxy_config: dict[str, str] = field(default_factory=dict)
    pico: int = 0
    nano: int = 0
    pulsar: bool = True          # the Pulsar part (profile "pulsar"); off for RabbitMQ-only labs
    rabbitmq_nodes: int = 1      # 1, or 3 (profile "rabbitmq-cluster")

    @property
    def profiles(self) -> list[str]:
        return (["pulsar"] if self.pulsar else []) + (["rabbitmq-cluster"] if self.rabbitmq_nodes > 1 else [])

    @classmethod
    def load(cls, path: Path) -> "LabState | None":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.__dict__, indent=2, sort_keys=True))


def not_up(containers) -> list[str]:
    """The containers that keep the lab from being up, as "name (state)". A one-shot service that
    finished its job (exited 0, no health check: pulsar-init) is not one of them."""
    out = []
    for c in containers:
        state = c.attrs.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        if c.status == "exited" and state.get("ExitCode") == 0 and health is None:
            continue
        if c.status == "exited":
            out.append(f"{c.name} (exited, exit code {state.get('ExitCode')})")
        elif c.status != "running" or health not in (None, "healthy"):
            out.append(f"{c.name} ({health if c.status == 'running' else c.status})")
    return out


class ComposeLab(LabDriver):
    """The lab as one Docker Compose project on this host (compose/lab.yaml), plus groups of VM
    containers started beside it (lab/vms.py)."""
    capabilities = frozenset({"pause", "cpu-quota", "vm-groups", "thread-dump"})
    flavour = LocalFlavour()   # set from the settings in __init__ (PULSAR_IMAGE: official images)

    def __init__(self, settings: LabSettings | None = None, log=print):
        self.settings = settings or LabSettings.from_env()
        self.log = log
        self.project = self.settings.project
        self.state_dir = STATE_DIR
        self.state_path = self.state_dir / "state.json"
        # which Pulsar images, started how: the lab's own (pulsar-run) or official ones (PULSAR_IMAGE)
        self.flavour = flavour_of(self.settings)
        self._client = None
        # Evidence: while a run sets these, every container's log is kept (one file per
        # incarnation) before compose recreates, stops, kills or removes it.
        self.evidence_dir: Path | None = None
        self.on_evidence = None   # callable(name, **fields): the run's journal

    # -- addresses as seen from the host --------------------------------------------------------
    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = engine()
        return self._client

    # addresses come from the settings (the one place for ports and URLs)
    @property
    def proxy_service_url(self) -> str:
        return self.settings.service_url

    @property
    def proxy_admin_url(self) -> str:
        return self.settings.admin_url

    @property
    def rabbitmq_url(self) -> str:
        return self.settings.amqp_url

    def broker_admin_url(self, n: int) -> str:
        return self.settings.broker_admin_url(n)

    def broker_names(self) -> list[str]:
        return self.settings.broker_names

    # -- state -------------------------------------------------------------------------------------
    def state(self) -> LabState:
        state = LabState.load(self.state_path)
        if state is None:
            state = LabState(
                broker_versions={str(n): self.settings.pulsar_from for n in range(1, self.settings.brokers + 1)},
                pico=self.settings.pico_vms, nano=self.settings.nano_vms,
            )
        return state

    def _env(self, state: LabState) -> dict[str, str]:
        s = self.settings
        env = {
            "CHAOSLAB_STATE": str(self.state_dir),
            "PULSAR_IMAGE_FROM": self.flavour.image(s.pulsar_from),
            "PROXY_IMAGE": self.flavour.image(s.proxy_version),
            "RABBITMQ_IMAGE": "chaoslab/rabbitmq:latest",
            "AGENT_IMAGE": s.agent_image,
            "PROXY_PORT": str(s.proxy_port),
            "PROXY_HTTP_PORT": str(s.proxy_http_port),
            "RABBITMQ_PORT": str(s.rabbitmq_port),
            "RABBITMQ_USER": s.rabbitmq_user,
            "RABBITMQ_PASSWORD": s.rabbitmq_password,
            "RABBITMQ_MGMT_PORT": str(s.rabbitmq_mgmt_port),
            # the management API reports the cluster's view of each node: on for a cluster only
            "RABBITMQ_PLUGINS": "rabbitmq_management" if state.rabbitmq_nodes > 1 else "",
        }
        for n in range(2, 4):
            env[f"RABBITMQ_{n}_PORT"] = str(s.rabbitmq_port + n - 1)
            env[f"RABBITMQ_{n}_MGMT_PORT"] = str(s.rabbitmq_mgmt_port + n - 1)
        for n in range(1, s.brokers + 1):
            env[f"BROKER_{n}_IMAGE"] = self.flavour.image(state.broker_versions.get(str(n), s.pulsar_from))
            env[f"BROKER_{n}_HTTP_PORT"] = str(s.broker_http_base_port + n - 1)
        return env

    def _write(self, state: LabState) -> Path:
        files = self.flavour.env_files(self.settings, state)   # every value checked before anything is written
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state.save(self.state_path)
        env_file = self.state_dir / "lab.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in sorted(self._env(state).items())))
        for name, text in files.items():
            (self.state_dir / name).write_text(text)
        override = self.flavour.override(self.settings, state, self.state_dir)
        if override is not None:
            (self.state_dir / OVERRIDE_NAME).write_text(
                "# written by chaoslab (lab/flavour.py): the official image's contract over compose/lab.yaml\n"
                + yaml.safe_dump(override, sort_keys=True, width=1000))
        return env_file

    # -- compose -----------------------------------------------------------------------------------
    def compose(self, *args: str, timeout: float = UP_TIMEOUT_SECS, check: bool = True,
                all_profiles: bool = False) -> subprocess.CompletedProcess:
        env_file = self.state_dir / "lab.env"
        if not env_file.exists():
            self._write(self.state())
        profiles = ALL_PROFILES if all_profiles else self.state().profiles
        # compose/lab.yaml, and the official flavour's file over it once written (every `up` and roll
        # writes it first; `down` of a lab started before PULSAR_IMAGE was set needs none)
        files = [a for f in self.flavour.compose_files(self.state_dir) if f == COMPOSE_FILE or f.exists()
                 for a in ("-f", str(f))]
        cmd = ["docker", "compose", "-p", self.project, "--env-file", str(env_file),
               *files, *(a for p in profiles for a in ("--profile", p)), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"'docker compose {' '.join(args)}' did not finish within {timeout:.0f} s") from exc
        if check and proc.returncode != 0:
            last = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()][-1:]
            raise LabError(f"'docker compose {' '.join(args[:2])}' failed: {last[0] if last else proc.returncode}")
        return proc

    def containers(self, service: str | None = None, all: bool = True):
        labels = [f"com.docker.compose.project={self.project}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        # ignore_removed: a container compose removes between the list and its inspect is not an error
        return sorted(self.client.containers.list(all=all, filters={"label": labels}, ignore_removed=True),
                      key=lambda c: c.name)

    def is_up(self) -> bool:
        return any(c.status == "running" for c in self.containers())

    def check_ports(self, state: LabState | None = None) -> None:
        """PortTaken if a host port the lab publishes is held by something else."""
        s = self.settings
        state = state or self.state()
        ports = {s.rabbitmq_port: "CHAOSLAB_RABBITMQ_PORT", s.rabbitmq_mgmt_port: "CHAOSLAB_RABBITMQ_MGMT_PORT"}
        for n in range(2, state.rabbitmq_nodes + 1):
            ports[s.rabbitmq_port + n - 1] = "CHAOSLAB_RABBITMQ_PORT"
            ports[s.rabbitmq_mgmt_port + n - 1] = "CHAOSLAB_RABBITMQ_MGMT_PORT"
        if state.pulsar:
            ports.update({s.proxy_port: "CHAOSLAB_PROXY_PORT", s.proxy_http_port: "CHAOSLAB_PROXY_HTTP_PORT"})
            for n in range(1, s.brokers + 1):
                ports[s.broker_http_base_port + n - 1] = "CHAOSLAB_BROKER_HTTP_BASE_PORT"
        ours = set()
        for c in self.containers(all=False):
            for bindings in (c.attrs.get("NetworkSettings", {}).get("Ports") or {}).values():
                for b in bindings or []:
                    ours.add(int(b["HostPort"]))
        for port, var in sorted(ports.items()):
            if port in ours:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    raise PortTaken(f"port {port} on 127.0.0.1 is already in use: free it or set {var}") from None

    # -- lifecycle ---------------------------------------------------------------------------------
    def build_images(self, versions: list[str] | None = None, pulsar: bool = True,
                     train_cds: bool | None = None, agent: bool = True) -> dict[str, str]:
        """train_cds: add the class-data sharing layer to the Pulsar images (None: CHAOSLAB_CDS_TRAIN).
        agent=False: not the VM agent's image (nothing of the run starts a VM; its cargo build is the
        longest stage of a cold start)."""
        if not pulsar:  # a RabbitMQ-only lab needs no Pulsar image (no Maven on a cold machine)
            builder = ImageBuilder(self.client, log=self.log)
            return {"base": builder.base(), "rabbitmq": builder.rabbitmq()}
        state = self.state()
        wanted = list(dict.fromkeys([self.settings.pulsar_from, self.settings.pulsar_to,
                                     *state.broker_versions.values(), *(versions or [])]))
        builder = ImageBuilder(self.client, log=self.log)
        if train_cds is not None:
            builder.train_cds = train_cds
        if self.flavour.name == "official" and not self.flavour.builds_locally:
            images = {"base": builder.base()}
            for version in dict.fromkeys([*wanted, self.settings.proxy_version]):
                images[f"pulsar-{version}"] = pull_image(self.client, self.flavour.image(version), log=self.log)
            images["proxy"] = self.flavour.image(self.settings.proxy_version)
            images["rabbitmq"] = builder.rabbitmq()
            if agent:
                images["agent"] = builder.agent()
        else:
            images = builder.all(wanted, self.settings.proxy_version, agent=agent)
        if self.flavour.builds_locally:
            jcmd_runtime(log=self.log)   # ready before a hang needs a thread dump
        if "agent" in images and self.settings.agent_image != images["agent"]:
            images["agent"] = self.settings.agent_image
        return images

    def prepare(self, pico: int | None = None, nano: int | None = None,
                broker_config: dict[str, str] | None = None, proxy_config: dict[str, str] | None = None,
                fresh: bool = False, pulsar: bool = True, rabbitmq_nodes: int = 1) -> LabState:
        """Everything before `compose up`: engine, free ports, images, the state and env files.

        broker_config / proxy_config: settings every broker / the proxy starts with. fresh=True
        forgets per-broker versions and settings left by a previous run (all brokers on
        PULSAR_FROM). pulsar=False: RabbitMQ only; rabbitmq_nodes: 1 or 3."""
        self.client  # engine first: the clearest error
        state = LabState(broker_versions={str(n): self.settings.pulsar_from
                                          for n in range(1, self.settings.brokers + 1)}) if fresh else self.state()
        state.pulsar, state.rabbitmq_nodes = pulsar, rabbitmq_nodes
        self.check_ports(state)
        if broker_config is not None:
            state.broker_config = {str(n): {k: str(v) for k, v in broker_config.items()}
                                   for n in range(1, self.settings.brokers + 1)}
        if proxy_config is not None:
            state.proxy_config = {k: str(v) for k, v in proxy_config.items()}
        state.pico = self.settings.pico_vms if pico is None else pico
        state.nano = self.settings.nano_vms if nano is None else nano
        if not pulsar:
            state.pico = state.nano = 0
        if pulsar:
            self.flavour.env_files(self.settings, state)   # a value the flavour cannot carry: refused first
            if self.flavour.name == "official":
                skipped = LOCAL_ONLY if not self.flavour.builds_locally else LOCAL_ONLY[-1:]
                self.log(f"Pulsar from {self.flavour.describe()}; local-image features skipped: {'; '.join(skipped)}")
        # the VM agent's image (a cargo build on a cold machine) only when VMs start with the lab;
        # a run whose workload starts VM groups has it built before (Runner.needs_agent)
        self.build_images(pulsar=pulsar, agent=bool(state.pico or state.nano))
        self._write(state)
        return state

    @property
    def env_file(self) -> Path:
        return self.state_dir / "lab.env"

    def up(self, shape: LabShape | None = None, fresh: bool | None = None, *, pico: int | None = None,
           nano: int | None = None, broker_config: dict[str, str] | None = None,
           proxy_config: dict[str, str] | None = None, pulsar: bool = True, rabbitmq_nodes: int = 1) -> float:
        """Build what is missing, start everything, wait until healthy. Returns seconds taken.
        With a LabShape (the runner), fresh by default; with parts (`chaoslab up`), the lab left
        by a previous command is kept unless fresh=True."""
        if shape is not None:
            pico, nano, pulsar, rabbitmq_nodes = shape.pico, shape.nano, shape.pulsar, shape.rabbitmq_nodes
            broker_config, proxy_config = shape.broker_config, shape.proxy_config
            fresh = True if fresh is None else fresh
        fresh = bool(fresh)
        started = time.monotonic()
        state = self.prepare(pico, nano, broker_config, proxy_config, fresh, pulsar, rabbitmq_nodes)
        rabbit = f"{state.rabbitmq_nodes} RabbitMQ node{'s' if state.rabbitmq_nodes > 1 else ''}"
        self.log(f"starting the lab (3 brokers on Pulsar {', '.join(sorted(set(state.broker_versions.values())))}, "
                 f"{state.pico} pico + {state.nano} nano VMs, {rabbit}) ..." if state.pulsar
                 else f"starting the lab ({rabbit}, no Pulsar) ...")
        scale = ["--scale", f"vm-pico={state.pico}", "--scale", f"vm-nano={state.nano}"] if state.pulsar else []
        try:
            # without VMs the agent's image is not built (a cold start skips its cargo build), and
            # compose would try to pull an image a VM service scaled to 0 names: never pull then.
            # With VMs, compose's own policy stands (an AGENT_IMAGE from a registry is pulled)
            no_pull = ["--pull", "never"] if state.pulsar and not (state.pico or state.nano) else []
            self.compose("up", "-d", "--wait", "--remove-orphans", *no_pull, *scale)
        except (LabError, KeyboardInterrupt) as exc:
            kept = self.save_logs(self.state_dir / f"failed-up-{time.strftime('%Y%m%dT%H%M%S')}")
            unhealthy = not_up(self.containers())
            self.log("lab did not come up: removing it")
            self.down()
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise LabError(f"lab did not become healthy ({'; '.join(unhealthy[:4]) or exc}); "
                           f"logs kept in {kept}") from exc
        return time.monotonic() - started

    def down(self) -> None:
        self.client  # a clear error when no engine answers
        self.keep_logs(reason="lab removed")
        # containers started beside compose (VM groups) first, or the network cannot go
        for c in self.client.containers.list(all=True, filters={"label": f"org.chaoslab.project={self.project}"}):
            try:
                c.remove(force=True)
            except docker.errors.APIError:
                pass
        self.compose("down", "-v", "--remove-orphans", "--timeout", "20", check=False, all_profiles=True)
        self.state_path.unlink(missing_ok=True)

    # -- evidence --------------------------------------------------------------------------------
    def _evidence(self, name: str, **fields) -> None:
        if self.on_evidence is not None:
            try:
                self.on_evidence(name, **fields)
            except Exception:
                pass

    def keep_logs(self, service: str | None = None, reason: str = "", since: float | None = None) -> list[Path]:
        """Save the log of each container of `service` (all when None) as
        <evidence_dir>/<container>-<id>.log: one file per incarnation, kept before compose
        replaces the container. Nothing when no run asked for evidence."""
        if self.evidence_dir is None:
            return []
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        kept = []
        for c in self.containers(service):
            path = self.evidence_dir / f"{c.name}-{c.id[:12]}.log"
            try:
                path.write_bytes(c.logs(timestamps=True, **({"since": int(since)} if since else {})))
            except docker.errors.APIError:
                continue
            kept.append(path)
            self._evidence("logs-kept", service=c.labels.get("com.docker.compose.service", c.name),
                           container=c.name, container_id=c.id[:12], file=str(path), reason=reason)
        return kept

    def thread_dump(self, service: str, reason: str = "", wait_secs: float = 8) -> Path | None:
        """A JVM thread dump of `service` (the JVM is PID 1 in the Pulsar images), saved beside the
        kept logs: `jcmd 1 Thread.print -l` run inside the container (a jcmd-only runtime copied in
        once, images.jcmd_runtime), which also names the owners of java.util.concurrent locks; if
        that cannot be had, SIGQUIT (the JVM prints the same dump, without them, to its stdout)."""
        if self.evidence_dir is None:
            return None
        running = [c for c in self.containers(service) if c.status == "running"]
        if not running:
            return None
        c = running[0]
        started = time.time()
        dump, how = self._jcmd_dump(c), "jcmd Thread.print -l"
        if dump is None:
            dump, how = self._sigquit_dump(c, started, wait_secs), "SIGQUIT"
        if dump is None:
            return None
        self.evidence_dir.mkdir(parents=True, exist_ok=True)
        path = self.evidence_dir / f"threaddump-{c.name}-{c.id[:12]}-{time.strftime('%H%M%S', time.gmtime(started))}.txt"
        path.write_text(dump)
        self._evidence("thread-dump", service=service, container=c.name, container_id=c.id[:12], file=str(path),
                       reason=reason, threads=dump.count('\n"'), method=how)
        return path

    def _jcmd_dump(self, c) -> str | None:
        if not self.flavour.builds_locally:   # the jcmd runtime is made for the lab's own images' JRE
            return None
        from chaoslab.lab.images import jcmd_runtime
        runtime = jcmd_runtime(log=self.log)
        if runtime is None:
            return None
        try:
            probe = c.exec_run(["test", "-x", "/tmp/chaoslab-jcmd/bin/jcmd"])
            if probe.exit_code != 0 and not c.put_archive("/tmp", runtime.read_bytes()):
                return None
            out = c.exec_run(["/tmp/chaoslab-jcmd/bin/jcmd", "1", "Thread.print", "-l"], demux=False)
        except (docker.errors.APIError, OSError):
            return None
        text = (out.output or b"").decode(errors="replace")
        if out.exit_code != 0 or "Full thread dump" not in text:
            return None
        return "Full thread dump" + text.split("Full thread dump", 1)[1]

    def _sigquit_dump(self, c, started: float, wait_secs: float) -> str | None:
        try:
            c.kill(signal="SIGQUIT")
        except docker.errors.APIError:
            return None
        text = ""
        deadline = time.monotonic() + wait_secs
        while time.monotonic() < deadline:
            time.sleep(1)
            text = c.logs(since=int(started) - 1).decode(errors="replace")
            if "Full thread dump" in text and ("JNI global refs" in text or "Heap" in text.split("Full thread dump")[-1]):
                break
        if "Full thread dump" not in text:
            return None
        return "Full thread dump" + text.split("Full thread dump", 1)[1]

    def save_logs(self, folder: Path, since: float | None = None) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for c in self.containers():
            try:
                kwargs = {"since": int(since)} if since else {}
                (folder / f"{c.name}.log").write_bytes(c.logs(timestamps=True, **kwargs))
            except docker.errors.APIError:
                pass
        return folder

    # -- changing one broker -----------------------------------------------------------------------
    def _recreate_broker(self, n: int, version: str | None = None, config: dict[str, str] | None = None,
                         replace_config: bool = False, wait: bool = True, timeout: float = 300) -> None:
        """Recreate broker-n with another Pulsar version and/or settings (a rolling-upgrade step).

        With wait=True, returns when compose sees it healthy (functional check) and raises
        LabError if it does not get there within timeout.
        """
        state = self.state()
        key = str(n)
        if version:
            check_version(version)
            state.broker_versions[key] = version
            self.build_images([version], agent=False)   # a broker needs its release's image only
        if config is not None:
            merged = {} if replace_config else dict(state.broker_config.get(key, {}))
            merged.update({k: str(v) for k, v in config.items()})
            state.broker_config[key] = merged
        self._write(state)
        self.keep_logs(f"broker-{n}", reason="broker recreated")
        args = ["up", "-d", "--no-deps", "--force-recreate"]
        if wait:
            args += ["--wait", "--wait-timeout", str(int(timeout))]
        self.compose(*args, f"broker-{n}", timeout=timeout + 60)

    def _recreate_brokers(self, changes: dict[int, dict], timeout: float = 300) -> None:
        """Recreate several brokers at once (a full restart): `changes` maps broker number to
        {version, config, replace_config}; one `compose up --force-recreate` for all of them, so
        none serves while the others come up with the change. Does not wait."""
        state = self.state()
        versions = []
        for n, change in changes.items():
            key = str(n)
            if change.get("version"):
                check_version(change["version"])
                state.broker_versions[key] = change["version"]
                versions.append(change["version"])
            if change.get("config") is not None:
                merged = {} if change.get("replace_config") else dict(state.broker_config.get(key, {}))
                merged.update({k: str(v) for k, v in change["config"].items()})
                state.broker_config[key] = merged
        if versions:
            self.build_images(versions, agent=False)
        self._write(state)
        for n in changes:
            self.keep_logs(f"broker-{n}", reason="broker recreated")
        self.compose("up", "-d", "--no-deps", "--force-recreate", *[f"broker-{n}" for n in changes],
                     timeout=timeout + 60)

    def stop(self, service: str, timeout: int = 20) -> None:
        self.keep_logs(service, reason="stopped")
        self.compose("stop", "--timeout", str(timeout), service)

    def kill(self, service: str, signal: str = "SIGKILL") -> None:
        self.keep_logs(service, reason=f"killed with {signal}")
        self.compose("kill", "-s", signal, service)

    def start(self, service: str, wait: bool = True, timeout: float = 300) -> None:
        """Start a stopped or killed service. Its container is started again, never recreated
        (a recreated bookie would come back with empty disks and be refused by its own cookie);
        with wait=True, until compose's healthcheck says healthy, else LabError."""
        existing = self.containers(service)
        if not existing:
            args = ["up", "-d", "--no-deps"] + (["--wait", "--wait-timeout", str(int(timeout))] if wait else [])
            self.compose(*args, service, timeout=timeout + 60)
            return
        self.compose("start", service, timeout=timeout + 60)
        if wait:
            def current():
                c = self.containers(service)[0]
                c.reload()
                return c

            def healthy() -> bool:
                c = current()
                return c.status == "running" and c.attrs["State"].get("Health", {}).get("Status") in (None, "healthy")
            if not wait_until(healthy, timeout, interval=1, stop=lambda: current().status == "exited").ok:
                c = current()
                raise LabError(f"{service} did not become healthy within {timeout:.0f} s "
                               f"({c.status}, exit code {c.attrs['State'].get('ExitCode')})")

    def container(self, service: str):
        """The running container of `service`, or LabError."""
        running = [c for c in self.containers(service) if c.status == "running"]
        if not running:
            raise LabError(f"{service} is not running")
        return running[0]

    def set_cpu_quota(self, service: str, cpus: float | None) -> dict:
        """Cap `service`'s CPU at `cpus` cores (CFS quota, what `docker update --cpus` sets);
        None removes the cap. Returns the quota it replaced ({period, quota}: -1/0 = none)."""
        c = self.container(service)
        host = c.attrs["HostConfig"]
        before = {"period": host.get("CpuPeriod") or 0, "quota": host.get("CpuQuota") or 0,
                  "nano_cpus": host.get("NanoCpus") or 0}
        if before["nano_cpus"]:
            raise LabError(f"{service} was started with --cpus; its quota cannot be changed in place")
        if cpus is None:
            c.update(cpu_quota=-1)
        else:
            c.update(cpu_period=100_000, cpu_quota=max(1000, int(cpus * 100_000)))
        return before

    def restore_cpu_quota(self, service: str, before: dict) -> None:
        c = self.container(service)
        if before.get("quota", 0) > 0:
            c.update(cpu_period=before["period"] or 100_000, cpu_quota=before["quota"])
        else:
            c.update(cpu_quota=-1)

    def scale_vms(self, pico: int, nano: int = 0) -> None:
        state = self.state()
        state.pico, state.nano = pico, nano
        self._write(state)
        self.compose("up", "-d", "--no-deps", "--no-recreate", "--scale", f"vm-pico={pico}",
                     "--scale", f"vm-nano={nano}", "vm-pico", "vm-nano")

    # -- the driver interface (chaoslab/lab/driver.py) ------------------------------------------------
    def lock(self, run_dir: Path, what: str):
        from chaoslab.lab.lock import LabLock
        return LabLock(self.project, run_dir=run_dir, what=what)

    def check_releases(self, releases: list[str]) -> None:
        for release in releases:
            self.flavour.check_release(release)
        self.flavour.check_release(self.settings.proxy_version, ("proxy",))
        if self.flavour.name == "official" and not self.flavour.builds_locally:
            from chaoslab.lab.releases import UnresolvableRelease
            for release in dict.fromkeys([*releases, self.settings.proxy_version]):
                why = image_available(self.client, self.flavour.image(release))
                if why:
                    raise UnresolvableRelease(f"Pulsar {release}: {self.flavour.image(release)} cannot be had: {why}")

    def provenance(self, releases: list[str]) -> dict:
        from chaoslab.lab.supplied import supplied_releases
        return supplied_releases(releases)

    def image_ids(self, releases: list[str], pulsar: bool = True) -> dict[str, str | None]:
        wanted = {"chaoslab/rabbitmq:latest"}
        if pulsar:
            wanted |= {self.flavour.image(v) for v in [*releases, self.settings.proxy_version]} | {self.settings.agent_image}
        out = {}
        for tag in sorted(wanted):
            try:
                out[tag] = self.client.images.get(tag).id
            except Exception:
                out[tag] = None
        return out

    def remove_groups(self) -> None:
        from chaoslab.lab import vms
        vms.remove_groups(self)

    def services(self, role: str | None = None) -> list[str]:
        """Compose's services, less one-shot jobs that finished (pulsar-init: exited 0, no health
        check). A scaled service (vm-pico) is one name here."""
        def done(c) -> bool:
            state = c.attrs.get("State") or {}
            return c.status == "exited" and state.get("ExitCode") == 0 and not state.get("Health")
        names = sorted({c.labels.get("com.docker.compose.service", "") for c in self.containers() if not done(c)} - {""})
        return [n for n in names if role is None or re.sub(r"-\d+$", "", n) == role]

    def service_state(self, service: str) -> ServiceState:
        found = self.containers(service)
        if not found:
            return ServiceState(service, "absent")
        c = found[0]
        st = c.attrs.get("State") or {}
        return ServiceState(service, c.status, exit_code=st.get("ExitCode") if c.status != "running" else None,
                            health=(st.get("Health") or {}).get("Status"), incarnation=c.id[:12])

    def configured(self, service: str) -> dict:
        state = self.state()
        m = re.fullmatch(r"broker-(\d+)", service)
        if m:
            return {"release": state.broker_versions.get(m.group(1)), "config": dict(state.broker_config.get(m.group(1), {}))}
        if service == "proxy":
            return {"release": self.settings.proxy_version, "config": dict(state.proxy_config)}
        return {"release": None, "config": {}}

    def roll(self, changes: dict[str, dict], wait: bool = True, timeout: float = 300) -> None:
        numbers = {}
        for service, change in changes.items():
            m = re.fullmatch(r"broker-(\d+)", service)
            if not m:
                raise LabError(f"this lab rolls brokers only; {service} cannot be rolled")
            numbers[int(m.group(1))] = change
        if len(numbers) == 1 and wait:
            (n, change), = numbers.items()
            self._recreate_broker(n, change.get("version"), change.get("config"), bool(change.get("replace_config")),
                                  wait=True, timeout=timeout)
        elif len(numbers) == 1:
            (n, change), = numbers.items()
            self._recreate_broker(n, change.get("version"), change.get("config"), bool(change.get("replace_config")),
                                  wait=False, timeout=timeout)
        else:
            self._recreate_brokers(numbers, timeout=timeout)
            if wait:   # all recreated at once; then each must come up healthy
                from chaoslab.wait import wait_until
                for n in numbers:
                    name = f"broker-{n}"
                    if not wait_until(lambda: self.service_state(name).health == "healthy", timeout, interval=1).ok:
                        raise LabError(f"{name} did not become healthy within {timeout:.0f} s")

    def set_broker(self, n: int, version: str | None = None, config: dict | None = None,
                   replace_config: bool = False, wait: bool = True, timeout: float = 300) -> None:
        self._recreate_broker(n, version, config, replace_config, wait=wait, timeout=timeout)

    def set_brokers(self, changes: dict[int, dict], timeout: float = 300) -> None:
        self._recreate_brokers(changes, timeout=timeout)

    def pause(self, service: str) -> None:
        container = self.container(service)
        try:
            container.pause()
        except docker.errors.APIError as exc:   # e.g. the freezer could not freeze a capped cgroup in time
            raise PauseFailed(f"{service} could not be paused: {str(exc)[-160:]}") from None

    def unpause(self, service: str) -> None:
        for c in self.containers(service):
            try:
                c.reload()
                if c.status == "paused":
                    c.unpause()
            except docker.errors.NotFound:   # removed meanwhile (a remedy): nothing left to thaw
                continue
            except docker.errors.APIError as exc:
                raise LabError(f"{service} could not be unpaused: {str(exc)[-160:]}") from None

    def read_log(self, service: str, since: float | None = None) -> LogRead | None:
        found = self.containers(service)
        if not found:
            return None
        c = found[0]
        until = int(time.time())
        try:
            raw = c.logs(since=int(since), until=until) if since else c.logs(until=until)
        except Exception:
            return None
        return LogRead(c.id[:12], raw.decode(errors="replace"), until)

    def exec(self, service: str, argv: list[str], timeout: float = 60) -> tuple[int, str]:
        c = self.container(service)
        try:
            code, out = c.exec_run(argv, demux=False)
        except docker.errors.APIError as exc:
            return 125, str(exc)
        return code, (out or b"").decode(errors="replace").strip()

    def endpoint(self, service: str, kind: str) -> str:
        s = self.settings
        m = re.fullmatch(r"(broker|rabbitmq)-(\d+)", service)
        if m and m.group(1) == "broker" and kind == "admin":
            return s.broker_admin_url(int(m.group(2)))
        if service == "proxy" and kind in ("admin", "service"):
            return s.admin_url if kind == "admin" else s.service_url
        if (m and m.group(1) == "rabbitmq") or service == "rabbitmq":
            n = int(m.group(2)) if m else 1
            if kind == "amqp":
                return s.rabbitmq_amqp_url(n)
            if kind == "management":
                return s.rabbitmq_mgmt_url(n)
        raise LabError(f"{service} has no {kind} endpoint in this lab")

    def endpoint_owners(self) -> dict[str, str]:
        s = self.settings
        owners = {s.broker_admin_url(n).split("://", 1)[1]: f"broker-{n}" for n in range(1, s.brokers + 1)}
        owners[s.admin_url.split("://", 1)[1]] = "proxy"
        return owners

    def describe(self, shape: LabShape) -> str:
        return f"on Pulsar {self.settings.pulsar_from}" if shape.pulsar else "(RabbitMQ only)"


Lab = ComposeLab   # the name the rest of the code and the tests grew up with
