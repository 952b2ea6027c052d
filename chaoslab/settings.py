"""Lab-wide settings: versions, ports, sizes. Read once from the environment.

Every value can be overridden by an environment variable of the same name, so that
`make up PULSAR_FROM=3.2.3` and `PULSAR_FROM=3.2.3 chaoslab up` mean the same thing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from chaoslab.errors import UnknownPulsarVersion

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = Path(os.environ.get("CHAOSLAB_BUILD_DIR", REPO_ROOT / "build"))
RUNS_DIR = Path(os.environ.get("CHAOSLAB_RUNS_DIR", REPO_ROOT / "runs"))

# The incident rolled 3.3.0 -> 3.3.1. The Maven Central reachable here does not serve the
# broker artifacts of those two releases (see README, "Versions"), so the lab's defaults are
# the nearest pair that does resolve and that, like 3.3.1, predates apache/pulsar#23297:
# a patch upgrade 3.2.2 -> 3.2.3. 3.3.2 is the first 3.3 release with the fail-fast fix.
DEFAULT_PULSAR_FROM = "3.2.2"
DEFAULT_PULSAR_TO = "3.2.3"
DEFAULT_PULSAR_FIXED = "3.3.2"
# pulsar-proxy 3.3.5/3.3.6 are listed but their closures miss pulsar-opentelemetry / jetcd-core-shaded;
# 3.0.0 is the only proxy release that resolves whole here. The proxy is not what is upgraded.
DEFAULT_PROXY_VERSION = "3.0.0"

VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
# A release name: a release number, or a number with a label for a build the user supplies
# (PULSAR_DIST_<name>, chaoslab/lab/supplied.py), e.g. 3.3.2-patched.
RELEASE_PATTERN = r"^\d+\.\d+\.\d+(-[A-Za-z0-9][A-Za-z0-9.]*)?$"
RELEASE_RE = re.compile(RELEASE_PATTERN)

# VM flavours of the incident's fleet (pico 256 MiB, nano 512 MiB): a hard memory cap with no
# swap beyond it, one vCPU at reduced priority. compose/lab.yaml's vm-pico / vm-nano services carry the same figures.
FLAVOURS = {
    "pico": {"memory_mib": 256, "cpus": 1.0, "cpu_shares": 256},
    "nano": {"memory_mib": 512, "cpus": 1.0, "cpu_shares": 256},
}


def check_version(version: str) -> str:
    if not RELEASE_RE.match(version or ""):
        raise UnknownPulsarVersion(
            f"'{version}' is not a Pulsar release number (expected X.Y.Z, e.g. {DEFAULT_PULSAR_TO}, "
            "or X.Y.Z-label for a build supplied with PULSAR_DIST_<release>)"
        )
    return version


def release_number(release: str) -> str:
    """3.3.2-patched -> 3.3.2 (the number a supplied build's broker may report)."""
    return release.split("-", 1)[0]


def _env(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def check_image_template(template: str) -> str:
    """PULSAR_IMAGE as given, or UnknownPulsarVersion saying what is wrong with it: an image
    reference naming the release with {version} (one image for every release would make an upgrade
    a no-op). Which images it runs and how: chaoslab/lab/flavour.py."""
    if "{version}" not in template:
        raise UnknownPulsarVersion(f"PULSAR_IMAGE={template!r}: name the release with {{version}}, e.g. "
                                   "apachepulsar/pulsar:{version} (one image for every release would make "
                                   "an upgrade roll nothing)")
    rest = template.replace("{version}", "")
    if not re.fullmatch(r"[A-Za-z0-9._/:@-]*", rest) or template.startswith(("/", ":", "-", ".")):
        raise UnknownPulsarVersion(f"PULSAR_IMAGE={template!r}: not an image reference with {{version}} "
                                   "(letters, digits and . _ - / : @ only)")
    return template


@dataclass(frozen=True)
class LabSettings:
    project: str = "chaoslab"
    cluster: str = "lab"  # Pulsar cluster name (images/pulsar/conf/broker.conf)
    pulsar_from: str = DEFAULT_PULSAR_FROM
    pulsar_to: str = DEFAULT_PULSAR_TO
    proxy_version: str = DEFAULT_PROXY_VERSION
    brokers: int = 3
    bookies: int = 2
    pico_vms: int = 2
    nano_vms: int = 0
    proxy_port: int = 16650
    proxy_http_port: int = 18080
    broker_http_base_port: int = 18081  # broker-1 -> 18081, broker-2 -> 18082, ...
    rabbitmq_port: int = 15672        # node n's AMQP port: rabbitmq_port + n - 1
    rabbitmq_mgmt_port: int = 15682   # node n's management API: rabbitmq_mgmt_port + n - 1
    # RabbitMQ's credentials: RABBITMQ_USER / RABBITMQ_PASSWORD (the names compose/lab.yaml reads).
    # Secrets: never in a repr, a manifest or a bundle (`public()` leaves them out).
    rabbitmq_user: str = field(default="chaoslab", repr=False)
    rabbitmq_password: str = field(default="chaoslab", repr=False)
    agent_image: str = "chaoslab/agent:latest"
    # PULSAR_IMAGE: "" runs the lab's own Pulsar images (built here); an image template with
    # {version} (apachepulsar/pulsar:{version}) runs those, the official image's way (lab/flavour.py)
    pulsar_image: str = ""
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> "LabSettings":
        return cls(
            project=_env("CHAOSLAB_PROJECT", "chaoslab"),
            pulsar_from=check_version(_env("PULSAR_FROM", DEFAULT_PULSAR_FROM)),
            pulsar_to=check_version(_env("PULSAR_TO", DEFAULT_PULSAR_TO)),
            proxy_version=check_version(_env("PULSAR_PROXY_VERSION", DEFAULT_PROXY_VERSION)),
            pico_vms=int(_env("PICO_VMS", "2")),
            nano_vms=int(_env("NANO_VMS", "0")),
            proxy_port=int(_env("CHAOSLAB_PROXY_PORT", "16650")),
            proxy_http_port=int(_env("CHAOSLAB_PROXY_HTTP_PORT", "18080")),
            broker_http_base_port=int(_env("CHAOSLAB_BROKER_HTTP_BASE_PORT", "18081")),
            rabbitmq_port=int(_env("CHAOSLAB_RABBITMQ_PORT", "15672")),
            rabbitmq_mgmt_port=int(_env("CHAOSLAB_RABBITMQ_MGMT_PORT", "15682")),
            agent_image=_env("AGENT_IMAGE", "chaoslab/agent:latest"),
            pulsar_image=check_image_template(_env("PULSAR_IMAGE", "")) if _env("PULSAR_IMAGE", "") else "",
            rabbitmq_user=_env("RABBITMQ_USER", "chaoslab"),
            rabbitmq_password=_env("RABBITMQ_PASSWORD", "chaoslab"),
        )

    SECRETS = ("rabbitmq_user", "rabbitmq_password")

    def public(self) -> dict:
        """The settings as written into a run's manifest and bundle: everything but the
        credentials (and `extra`)."""
        return {k: v for k, v in self.__dict__.items() if k not in (*self.SECRETS, "extra")}

    def services(self, pulsar: bool = True, rabbitmq_nodes: int = 1) -> list[str]:
        """The compose services a lab of this shape runs (what a step may name): the Pulsar part
        (zookeeper, bookies, brokers, proxy) unless the lab is RabbitMQ-only, and RabbitMQ's nodes."""
        out = []
        if pulsar:
            out += ["zookeeper", *(f"bookie-{i}" for i in range(1, self.bookies + 1)), *self.broker_names, "proxy"]
        return out + [self.rabbitmq_service(n) for n in range(1, rabbitmq_nodes + 1)]

    @property
    def broker_names(self) -> list[str]:
        return [f"broker-{i}" for i in range(1, self.brokers + 1)]

    def broker_http_port(self, name: str) -> int:
        return self.broker_http_base_port + self.broker_names.index(name)

    def broker_admin_url(self, n: int) -> str:
        """broker-n's admin/HTTP port as published on the host (for probes and steps)."""
        return f"http://127.0.0.1:{self.broker_http_base_port + n - 1}"

    @property
    def service_url(self) -> str:
        return f"pulsar://127.0.0.1:{self.proxy_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_http_port}"

    @property
    def amqp_url(self) -> str:
        return (
            f"amqp://{self.rabbitmq_user}:{self.rabbitmq_password}@127.0.0.1:{self.rabbitmq_port}/%2F"
        )

    def rabbitmq_amqp_url(self, n: int = 1) -> str:
        """RabbitMQ node n's AMQP listener as published on the host."""
        return f"amqp://{self.rabbitmq_user}:{self.rabbitmq_password}@127.0.0.1:{self.rabbitmq_port + n - 1}/%2F"

    def rabbitmq_mgmt_url(self, n: int = 1) -> str:
        """RabbitMQ node n's management API (enabled when the lab runs a cluster)."""
        return f"http://127.0.0.1:{self.rabbitmq_mgmt_port + n - 1}"

    @staticmethod
    def rabbitmq_service(n: int) -> str:
        return "rabbitmq" if n == 1 else f"rabbitmq-{n}"

    @staticmethod
    def rabbitmq_node(n: int) -> str:
        """The Erlang node name (rabbit@<hostname>; the hostname is the compose service)."""
        return f"rabbit@{LabSettings.rabbitmq_service(n)}"

    def host_ports(self) -> set[int]:
        """Every port on 127.0.0.1 a lab of any shape publishes (Pulsar, 1 or 3 RabbitMQ nodes
        with their management APIs): what nothing else of chaoslab's may listen on."""
        ports = set(self.published_ports().values()) | {self.proxy_port, self.proxy_http_port}
        for n in range(1, 4):
            ports |= {self.rabbitmq_port + n - 1, self.rabbitmq_mgmt_port + n - 1}
        return ports

    def published_ports(self) -> dict[str, int]:
        ports = {"proxy (binary)": self.proxy_port, "proxy (http)": self.proxy_http_port,
                 "rabbitmq (amqp)": self.rabbitmq_port}
        for name in self.broker_names:
            ports[f"{name} (http)"] = self.broker_http_port(name)
        return ports
