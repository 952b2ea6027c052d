"""The lab's own Pulsar image honours the official Apache Pulsar image's contract, on a real engine:
its layout (/pulsar home, bin/, conf/<component>.conf, lib/), `bin/apply-config-from-env.py
conf/X.conf` taking settings from the environment, and `bin/pulsar <component>` starting a
component, here ZooKeeper, that becomes healthy by the official flavour's own health check.

Everything runs with the commands, environment and health checks the lab's official flavour
(chaoslab/lab/flavour.py, PULSAR_IMAGE) gives compose, on chaoslab/pulsar:<default release>
(built here if missing, as `make up` builds it). The official images themselves were never pulled
here (no registry): what this proves is that the lab's side of the contract and the lab's image
agree, so that an official image, which has the same contract, gets what it expects.

Containers are started with the docker SDK, labelled org.chaoslab.test=image-contract, and
removed at the end of each test; no compose project, no lab needed.
"""

from __future__ import annotations

import os
import uuid

import docker
import docker.errors
import pytest

from chaoslab.lab.cluster import LabState, engine
from chaoslab.lab.flavour import OFFICIAL_GC, OfficialFlavour, official_env_lines
from chaoslab.lab.images import ImageBuilder
from chaoslab.settings import DEFAULT_PULSAR_FROM, LabSettings
from chaoslab.wait import wait_until

LABEL = {"org.chaoslab.test": "image-contract"}
SECS = 1_000_000_000   # the engine counts health check times in nanoseconds


@pytest.fixture(scope="module")
def client() -> docker.DockerClient:
    return engine()


@pytest.fixture(scope="module")
def image(client) -> str:
    """chaoslab/pulsar:<default release>, reused when current (the lab's own build otherwise)."""
    return ImageBuilder(client, log=lambda m: print(f"[image] {m}", flush=True)).pulsar(DEFAULT_PULSAR_FROM)


@pytest.fixture(scope="module")
def official() -> OfficialFlavour:
    """The official flavour pointed at the lab's own images: its commands, env and health checks."""
    return OfficialFlavour("chaoslab/pulsar:{version}")


def sh(client, image: str, script: str, env: dict[str, str] | None = None) -> str:
    """`sh -c SCRIPT` in a throw-away container of `image` (the official flavour's entrypoint);
    its output; docker.errors.ContainerError (with its stderr) when it exits non-zero."""
    out = client.containers.run(image, entrypoint=["/bin/sh", "-c"], command=[script], environment=env or {},
                                labels=LABEL, remove=True, stdout=True, stderr=True)
    return out.decode()


def env_of(lines: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines.splitlines())


def properties(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.lstrip()
    return out


def test_the_image_has_the_official_layout(client, image):
    config = client.images.get(image).attrs["Config"]
    assert config["WorkingDir"] == "/pulsar" and "PULSAR_HOME=/pulsar" in config["Env"]
    out = sh(client, image, "pwd; command -v pulsar; "
                            "test -x bin/pulsar && test -x bin/apply-config-from-env.py && echo bin-ok; "
                            "for f in zookeeper bookkeeper broker proxy; do test -s conf/$f.conf && echo conf-$f; done; "
                            "ls lib | grep -c '[.]jar$'; test -d data && test -d logs && echo dirs-ok; "
                            "bin/pulsar version")
    lines = out.splitlines()
    assert lines[0] == "/pulsar" and lines[1] == "/pulsar/bin/pulsar" and lines[2] == "bin-ok"
    assert lines[3:7] == ["conf-zookeeper", "conf-bookkeeper", "conf-broker", "conf-proxy"]
    assert int(lines[7]) > 100 and lines[8] == "dirs-ok" and lines[9] == DEFAULT_PULSAR_FROM


def test_apply_config_from_env_writes_the_settings_the_lab_passes_into_the_file_bin_pulsar_reads(client, image, official):
    state = LabState(broker_config={"1": {"loadManagerClassName": "org.example.Manager",
                                          "brokerClientAuthenticationParameters": '{"token": "a b=c"}',
                                          "aKeyNoDefaultFileHas": "appended"}})
    settings = official.service_settings("broker-1", state)
    env = env_of(official_env_lines(settings, "broker-1"))
    # the other form of the contract: a variable named exactly like a key the file has
    del env["PULSAR_PREFIX_clusterName"]
    env["clusterName"] = "contract"
    out = sh(client, image, "bin/apply-config-from-env.py conf/broker.conf >/dev/null && cat conf/broker.conf", env)
    got = properties(out)
    assert {k: got.get(k) for k in settings} == {**settings, "clusterName": "contract"}
    # a line break never reaches the file: the script stops, the file is the image's
    with pytest.raises(docker.errors.ContainerError) as refused:
        sh(client, image, "bin/apply-config-from-env.py conf/broker.conf",
           {"PULSAR_PREFIX_numIOThreads": "2\nloadBalancerSheddingEnabled=false"})
    assert refused.value.exit_status == 2


def test_bin_pulsar_starts_zookeeper_the_official_way_and_it_becomes_healthy(client, image, official):
    state, settings = LabState(), LabSettings()
    env = env_of(official_env_lines(official.service_settings("zookeeper", state), "zookeeper"))
    env.update({"PULSAR_GC": OFFICIAL_GC, "PULSAR_MEM": "-Xms32m -Xmx128m"})
    check = official.healthcheck("zookeeper")
    container = client.containers.run(
        image, entrypoint=["/bin/sh", "-c"], command=[official.command("zookeeper", state, settings)],
        environment=env, labels=LABEL, detach=True, name=f"chaoslab-contract-zk-{os.getpid()}-{uuid.uuid4().hex[:6]}",
        healthcheck={"test": ["CMD", "bash", "-c", check], "interval": 1 * SECS, "timeout": 5 * SECS,
                     "retries": 90})
    try:
        def current():
            container.reload()
            return container

        waited = wait_until(lambda: (current().attrs["State"].get("Health") or {}).get("Status") == "healthy",
                            timeout=120, interval=1, stop=lambda: current().status == "exited")
        logs = container.logs(tail=30).decode(errors="replace")
        assert waited.ok, f"zookeeper not healthy ({container.status}); last lines:\n{logs}"
        # the JVM is the container's process 1 (sh exec'd bin/pulsar, which exec'd java): signals reach it
        cmdline = container.exec_run(["cat", "/proc/1/cmdline"]).output.decode().split("\0")
        assert cmdline[0].endswith("java") and "org.apache.zookeeper.server.quorum.QuorumPeerMain" in cmdline
        assert "/pulsar/conf/zookeeper.conf" in cmdline
        conf = properties(container.exec_run(["cat", "/pulsar/conf/zookeeper.conf"]).output.decode())
        assert {k: conf.get(k) for k in official.service_settings("zookeeper", state)} == \
            official.service_settings("zookeeper", state)
        # the health check is the official flavour's own: no pulsar-run in it
        assert "pulsar-run" not in check and container.exec_run(["bash", "-c", check]).exit_code == 0
    finally:
        container.remove(force=True, v=True)
