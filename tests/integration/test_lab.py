"""The real lab: Pulsar through the proxy, broker restarts, VM agents, cgroup caps, status."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pulsar
import pytest
from tenacity import retry, stop_after_delay, wait_fixed

from chaoslab.lab import health
from chaoslab.workload import loss
from chaoslab.workload.driver import WorkloadConfig, WorkloadDriver
from chaoslab.workload.layout import Layout

MIB = 1024 * 1024


def test_10k_messages_over_100_topics_through_the_proxy_lose_nothing(lab, admin):
    layout = Layout.generate(tenants=20, topics_per_tenant=6, seed=101)
    assert len(layout.topics) >= 100 and any(t.partitions for t in layout.topics)
    admin.provision(layout)
    driver = WorkloadDriver(lab.proxy_service_url, layout, WorkloadConfig(rate=1000, messages=10_000))
    try:
        driver.start()
        assert driver.wait_produced(timeout=300)
        driver.drain(timeout=180)
    finally:
        driver.close()
    report = loss.check(driver.history)
    assert report.acked == 10_000, report.summary()
    assert report.lost == [] and report.duplicated == {}, report.summary()
    assert report.books_closed and report.unknown == [], report.summary()  # a drain that timed out is no pass
    assert report.received == 10_000
    assert len({op.topic for op in driver.history.ops if op.kind == "recv"}) >= 100


def test_broker_restart_clients_recover_and_nothing_acked_is_lost(lab, admin):
    layout = Layout.generate(tenants=4, topics_per_tenant=10, seed=202)
    admin.provision(layout)
    driver = WorkloadDriver(lab.proxy_service_url, layout, WorkloadConfig(rate=200, messages=None))
    try:
        driver.start()
        time.sleep(5)
        restart_at = time.time()
        driver.history.add("fault-start", detail="restart broker-2")
        lab.compose("restart", "--timeout", "20", "broker-2", timeout=120)
        driver.history.add("fault-end", detail="restart broker-2")
        wait_healthy(lab, 2)
        time.sleep(10)
        driver.stop_producing()
        driver.drain(timeout=180)
    finally:
        driver.close()
    report = loss.check(driver.history)
    acks_after = [op for op in driver.history.ops if op.kind == "ack" and op.t > restart_at + 5]
    assert acks_after, "no message was acknowledged after the restart: clients did not recover"
    assert report.lost == [], report.summary()  # at-least-once: duplicates are allowed here
    assert report.books_closed and report.unknown == [], report.summary()
    assert report.acked > 0


@retry(stop=stop_after_delay(240), wait=wait_fixed(2), reraise=True)
def wait_healthy(lab, n: int) -> None:
    probe = health.functional(lab.broker_admin_url(n))
    assert probe.ok, probe.detail


def test_vm_agent_ships_events_into_pulsar_through_the_proxy(lab):
    vms = lab.containers("vm-pico") + lab.containers("vm-nano")
    assert len(vms) == 3
    client = pulsar.Client(lab.proxy_service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        reader = client.create_reader("persistent://public/default/vm-telemetry", pulsar.MessageId.earliest)
        hosts = set()
        deadline = time.time() + 60
        while time.time() < deadline and len(hosts) < len(vms):
            try:
                event = json.loads(reader.read_next(timeout_millis=2000).data())
            except pulsar.Timeout:
                continue
            assert event["source_type"] == "demo_logs"
            hosts.add(event["host"])
    finally:
        client.close()
    assert hosts == {c.attrs["Config"]["Hostname"] for c in vms}
    metrics = vm_metrics(vms[0])
    assert metric(metrics, "vector_component_sent_events_total") > 0
    assert metric(metrics, "vector_buffer_max_size_events") == 500


def vm_metrics(container) -> str:
    """The agent's :9598 page, fetched from the host at the container's address."""
    from chaoslab import http
    from chaoslab.workload.vm_agents import container_ip
    resp = http.get(f"http://{container_ip(container)}:9598/metrics", timeout=5)
    assert resp.status == 200, resp.text
    return resp.text


def metric(text: str, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total += sample.value
    return total


@pytest.mark.parametrize("service,cap_mib", [("vm-pico", 256), ("vm-nano", 512)])
def test_vm_memory_cap_is_the_cgroup_limit_and_is_enforced(lab, service, cap_mib):
    vm = lab.containers(service)[0]
    code, out = vm.exec_run(["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"])
    if code != 0:  # cgroup v2
        code, out = vm.exec_run(["cat", "/sys/fs/cgroup/memory.max"])
    assert code == 0
    assert int(out.decode().strip()) == cap_mib * MIB
    # A process that tries to hold more than the cap does not get it.
    # dd allocates (and fills) one block of bs bytes: the cgroup kills it before it is held.
    code, out = vm.exec_run(["sh", "-c", f"dd if=/dev/zero of=/dev/null bs={cap_mib + 64}M count=1 && echo held"])
    assert code != 0 and b"held" not in out


def test_status_json_reports_brokers_proxy_rabbitmq_and_vms(lab):
    proc = subprocess.run([sys.executable, "-m", "chaoslab.cli", "status", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert [b["name"] for b in status["brokers"]] == ["broker-1", "broker-2", "broker-3"]
    for b in status["brokers"]:
        assert b["healthy"] and b["shallow_healthy"]
        assert b["version"] == lab.settings.pulsar_from
        assert b["loadManagerClassName"].endswith("ModularLoadManagerImpl")
        assert isinstance(b["owned_bundles"], int) and b["owned_bundles"] >= 1
        assert b["container"].startswith(f"{lab.project}-broker-")
    assert status["proxy"]["service_url"] == f"pulsar://127.0.0.1:{lab.settings.proxy_port}"
    assert status["proxy"]["admin_url"] == f"http://127.0.0.1:{lab.settings.proxy_http_port}"
    assert status["rabbitmq"]["amqp_url"].startswith("amqp://chaoslab:")
    caps = sorted(v["memory_limit_mib"] for v in status["vms"])
    assert caps == [256, 256, 512]


def test_rabbitmq_round_trip_with_the_lab_user(lab):
    import pika
    conn = pika.BlockingConnection(pika.URLParameters(lab.rabbitmq_url))
    try:
        ch = conn.channel()
        ch.queue_declare("chaoslab-probe", durable=False, auto_delete=True)
        ch.basic_publish("", "chaoslab-probe", b"ping")
        for _ in range(50):
            method, _props, body = ch.basic_get("chaoslab-probe", auto_ack=True)
            if method:
                break
            time.sleep(0.1)
        assert body == b"ping"
    finally:
        conn.close()


def test_a_second_up_reuses_every_image(lab):
    messages = []
    from chaoslab.lab.cluster import Lab
    Lab(lab.settings, log=messages.append).build_images()
    assert not [m for m in messages if m.startswith(("building", "debootstrap", "resolving"))], messages


@pytest.mark.parametrize("args, says", [
    (["--to", "9.9.9"], "Pulsar 9.9.9: not a release Maven can resolve"),
    (["--broker-conf", "TYPO"], "'loadBalancerSheddingEnabeld' is not a setting of Pulsar 3.2.3 (closest: loadBalancerSheddingEnabled)"),
])
def test_a_gate_that_cannot_run_is_refused_and_leaves_the_running_lab_alone(lab, tmp_path, args, says):
    """Roads: `gate --to 9.9.9` tore the lab down before it failed; a misspelt key, which Pulsar
    ignores, was a change never made. Both: exit 2, one line, no container touched."""
    def running() -> dict:
        return {c.name: c.id for c in lab.containers(all=False)}
    before = running()
    if "TYPO" in args:
        conf = tmp_path / "typo.conf"
        conf.write_text("loadBalancerSheddingEnabeld=false\n")
        args = ["--to", "3.2.3", "--broker-conf", str(conf)]
    proc = subprocess.run([sys.executable, "-m", "chaoslab.cli", "gate", *args, "--json", "--junit",
                           str(tmp_path / "j.xml")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "REFUSED"
    assert 'errors="1"' in (tmp_path / "j.xml").read_text()
    assert running() == before, "the gate touched the running lab"
