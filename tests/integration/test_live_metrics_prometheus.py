"""Live metrics as a team's own Prometheus stores them. Debian's prometheus binary scrapes
`chaoslab experiment --metrics-port N` every second while a short real experiment runs (the
RabbitMQ fallback of test_rabbitmq_cluster.py: a 3-node cluster, node 3 frozen in bursts, about
three minutes); then its HTTP API is asked what it stored, and that must be what the run's
results.json and journal say.

Prometheus runs with its own config, storage (tmp_path) and web port (an ephemeral one on
127.0.0.1, never 9090); the fixture's finalizer terminates it. Once chaoslab's server is gone
(after the linger) Prometheus marks the series stale, so the queries read the last stored values
with last_over_time / max_over_time over the run, never a plain instant query."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from chaoslab.live import STATES
from chaoslab.report.annotations import FILE
from chaoslab.run.runner import CODES

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="the prometheus binary is not installed (scripts/setup.sh installs Debian's as root "
                               "on Debian; or apt-get install prometheus)")

EXPERIMENT = Path(__file__).parent / "experiments" / "rabbitmq-fallback-short.yaml"
VARIANT = "slow-node-left-in"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # 127.0.0.1 is never proxied


def free_ports(n: int) -> list[int]:
    """n distinct ports free on 127.0.0.1 now (ephemeral ones: never a port the lab publishes)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def get_json(url: str) -> dict:
    with NO_PROXY.open(url, timeout=10) as r:
        return json.load(r)


@pytest.fixture
def prometheus(tmp_path):
    """Debian's prometheus scraping 127.0.0.1:<metrics_port> every second, ready and with its
    scrape loop started (the target has been tried once) before the test goes on."""
    metrics_port, web_port = free_ports(2)
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "chaoslab", "scrape_interval": "1s", "scrape_timeout": "1s",
                            "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}]}))
    log_path = tmp_path / "prometheus.log"
    url = f"http://127.0.0.1:{web_port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"prometheus exited {proc.returncode}: {log_path.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"prometheus not scraping within 90 s: {log_path.read_text()[-2000:]}"
            try:
                targets = get_json(f"{url}/api/v1/targets")["data"]["activeTargets"]
            except (OSError, ValueError, KeyError):
                targets = []
            # "down" until chaoslab serves: the scrape loop runs (Prometheus applies targets some seconds after start)
            if any(t.get("health") in ("up", "down") for t in targets):
                break
            time.sleep(0.5)
        yield SimpleNamespace(url=url, metrics_port=metrics_port, log=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def query(prom, expr: str) -> list[dict]:
    answer = get_json(f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_stores_what_the_run_decided(tmp_path, prometheus, run_experiment):
    out = tmp_path / "run"
    port = prometheus.metrics_port
    proc, records = run_experiment(EXPERIMENT, out, timeout=900, expect={"PASS", "FAIL", "INCONCLUSIVE"},
                                   args=("--variant", VARIANT, "--metrics-port", str(port), "--metrics-linger", "8"))
    assert f"live metrics: http://127.0.0.1:{port}/metrics" in proc.stderr
    results = json.loads((out / "results.json").read_text())
    (variant,) = results["variants"]
    run_start = next(r for r in records if r["type"] == "run-start")
    run_end = next(r for r in records if r["type"] == "run-end")
    samples = [r for r in records if r["type"] == "sample" and r.get("variant") == VARIANT and r.get("conditions")]
    conditions = set(variant["coverage"])
    assert conditions == {"confirm-p99-ms"} and samples
    window = "[1h]"

    def last(metric: str) -> list[dict]:
        return query(prometheus, f"last_over_time({metric}{window})")

    # the run and its verdicts, as results.json and the journal's run-end say
    # before the run starts, the page shows the info metric without labels: that series is left out
    (info,) = [s for s in last("chaoslab_run_info") if s["metric"].get("run_id")]
    assert (info["metric"]["run_id"], info["metric"]["experiment"], info["metric"]["run_dir"]) == \
        (results["run_id"], results["experiment"], str(out))
    (run_verdict,) = last("chaoslab_run_verdict")
    assert run_verdict["metric"]["verdict"] == run_end["verdict"]
    assert float(run_verdict["value"][1]) == run_end["exit_code"] == proc.returncode
    verdicts = {r["metric"]["variant"]: (r["metric"]["verdict"], float(r["value"][1]))
                for r in last("chaoslab_variant_verdict")}
    assert verdicts == {VARIANT: (variant["verdict"], CODES[variant["verdict"]])}
    (elapsed,) = last("chaoslab_run_elapsed_seconds")
    assert float(elapsed["value"][1]) == pytest.approx(run_end["t"] - run_start["t"], abs=0.01)

    # each condition: its bound, its last state, and every figure stored is one the journal holds
    for r in last("chaoslab_condition_bound"):
        assert r["metric"]["condition"] in conditions and float(r["value"][1]) == 1000.0
    states = {r["metric"]["condition"]: float(r["value"][1]) for r in last("chaoslab_condition_state")}
    assert states == {c: STATES[samples[-1]["conditions"][c]["state"]] for c in conditions}
    for c in conditions:
        stored = query(prometheus, f'chaoslab_condition_value{{condition="{c}"}}{window}')
        values = [float(v) for r in stored for _, v in r["values"]]
        journal = {s["conditions"][c]["value"] for s in samples if s["conditions"][c]["value"] is not None}
        assert values and all(math.isnan(x) or x in journal for x in values), (sorted(set(values))[:10], sorted(journal)[:10])
        # the violated seconds counted, as the journal's samples say (the finish phase not counted)
        violated = [s for s in samples if s["conditions"][c]["state"] == "violated"]
        (count,) = [r for r in last("chaoslab_condition_violations_total") if r["metric"]["condition"] == c]
        assert float(count["value"][1]) == sum(1 for s in violated if s["phase"] != "finish")
        stored_states = {float(v) for r in query(prometheus, f'chaoslab_condition_state{{condition="{c}"}}{window}')
                         for _, v in r["values"]}
        assert stored_states <= set(map(float, STATES.values()))
        # five violated seconds in a row cannot slip between scrapes a second apart
        run, longest = 0, 0
        for s in samples:
            run = run + 1 if s["conditions"][c]["state"] == "violated" else 0
            longest = max(longest, run)
        if longest >= 5:
            assert float(STATES["violated"]) in stored_states
    # every second the verdict counted as violated was counted by some condition (and the steady phase too)
    counted = sum(float(r["value"][1]) for r in last("chaoslab_condition_violations_total"))
    assert counted >= variant["violated_seconds"]

    # the phases and the step seen while they ran
    (method,) = query(prometheus, f'max_over_time(chaoslab_phase{{phase="method",variant="{VARIANT}"}}{window})')
    assert float(method["value"][1]) == 1
    (step,) = query(prometheus, f'max_over_time(chaoslab_step_running{{step="slow-node"}}{window})')
    assert (step["metric"]["step_type"], step["metric"]["index"], step["metric"]["kind"]) == ("slow-service", "1", "step")
    assert float(step["value"][1]) == 1

    # the step bands for Grafana, written after the run
    bands = json.loads((out / FILE).read_text())
    slow = [a for a in bands if a["text"].endswith("slow-node (slow-service)")]
    assert slow and slow[0]["tags"] == [results["experiment"], VARIANT, "slow-service"]
    assert slow[0]["timeEnd"] > slow[0]["time"]
