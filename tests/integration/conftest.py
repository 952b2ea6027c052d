"""One real lab for the whole integration session, brought up with testcontainers' DockerCompose
over compose/lab.yaml and removed at the end.

chaoslab.lab.cluster.Lab still owns what compose cannot know: it builds the images, checks the
ports, and writes the env files (image tags, per-broker settings) that the compose file reads.
testcontainers then runs `docker compose up --wait` (every service's own healthcheck: brokers are
healthy when Pulsar's health check passes) and its HTTP wait strategy checks the proxy's admin API
from the host. Ryuk, testcontainers' reaper, is disabled: its image cannot be pulled here
(no container registry); the fixture removes the lab itself.

CHAOSLAB_KEEP_LAB=1 leaves it running afterwards (handy while developing).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from testcontainers.compose import DockerCompose  # noqa: E402
from testcontainers.core.wait_strategies import HttpWaitStrategy  # noqa: E402

from chaoslab.lab.cluster import COMPOSE_FILE, Lab  # noqa: E402
from chaoslab.settings import LabSettings  # noqa: E402
from chaoslab.workload.admin import PulsarAdmin  # noqa: E402

VM_SERVICES = ("vm-pico", "vm-nano")


@pytest.fixture(scope="session")
def lab():
    lab = Lab(LabSettings.from_env(), log=lambda m: print(f"[lab] {m}", flush=True))
    lab.down()
    lab.prepare(pico=2, nano=1, fresh=True)
    # the Pulsar lab and RabbitMQ node 1; the VMs are scaled in below, the RabbitMQ cluster's other
    # nodes (profile rabbitmq-cluster) are the rabbitmq-fallback experiment's
    services = [s for s, d in yaml.safe_load(COMPOSE_FILE.read_text())["services"].items()
                if s not in VM_SERVICES and "rabbitmq-cluster" not in (d.get("profiles") or [])]
    os.environ["COMPOSE_PROJECT_NAME"] = lab.project  # the project Lab and `chaoslab down` know
    # compose/lab.yaml, plus the official flavour's file over it when PULSAR_IMAGE is set (lab/flavour.py)
    files = [COMPOSE_FILE.name, *(str(f) for f in lab.flavour.compose_files(lab.state_dir)[1:])]
    compose = DockerCompose(context=str(COMPOSE_FILE.parent), compose_file_name=files,
                            env_file=str(lab.env_file), wait=True, services=services, profiles=["pulsar"])
    # testcontainers 4.15's ComposeContainer hands wait strategies the port unmapped (its
    # get_exposed_port returns its argument), so the strategy is given the port published on the host
    compose.waiting_for({"proxy": HttpWaitStrategy(lab.settings.proxy_http_port, "/admin/v2/clusters")
                         .for_status_code(200).with_startup_timeout(120)})
    try:
        compose.start()
        lab.scale_vms(pico=2, nano=1)
    except BaseException:
        lab.save_logs(lab.state_dir / "failed-integration-up")
        lab.down()
        raise
    yield lab
    if os.environ.get("CHAOSLAB_KEEP_LAB") != "1":
        lab.down()


@pytest.fixture(scope="session")
def admin(lab):
    return PulsarAdmin(lab.proxy_admin_url, cluster=lab.settings.cluster)



def assert_verdict(proc, out: Path, expect: set[str]) -> str:
    """The run's verdict is one the test expects, and the exit code is that verdict's (so a crash,
    exit 2 ERROR, never passes for a FAIL, nor an INCONCLUSIVE for a PASS)."""
    import json

    from chaoslab.run.runner import CODES
    results = json.loads((out / "results.json").read_text())
    verdicts = [v["verdict"] for v in results["variants"]]
    primary = next((v["verdict"] for v in results["variants"] if v["role"] == "primary"), verdicts[0] if verdicts else None)
    detail = f"verdicts {verdicts}, exit {proc.returncode}; reasons {[v['reasons'] for v in results['variants']]}; " \
             f"stderr: {proc.stderr[-1500:]}"
    assert primary in expect, detail
    assert proc.returncode == CODES[primary], detail
    return primary


@pytest.fixture
def run_experiment():
    """`chaoslab experiment FILE --out OUT` as a user runs it; returns (process, journal records).
    `expect`: the verdicts (PASS, FAIL, INCONCLUSIVE, ERROR) the test accepts for the primary."""
    from chaoslab.record import read

    def run(experiment: Path, out: Path, timeout: float, expect: set[str], args: tuple[str, ...] = ()):
        proc = subprocess.run([sys.executable, "-m", "chaoslab.cli", "experiment", str(experiment), "--out", str(out),
                               *args], capture_output=True, text=True, timeout=timeout)
        assert (out / "results.json").exists(), proc.stderr[-2000:]
        assert_verdict(proc, out, expect)
        return proc, read(out / "journal.jsonl")
    return run
