"""Reliability of the lab itself, with the real lab: Ctrl-C during a rolling upgrade, a runner
killed with SIGKILL, two runs at once. (Runs last: each test leaves no lab behind.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker

from chaoslab.lab.lock import LabLock
from chaoslab.record import read

EXPERIMENT = Path(__file__).parent / "experiments" / "transfer-shedder-short.yaml"
CLI = [sys.executable, "-m", "chaoslab.cli"]


def project_containers() -> list:
    return docker.from_env().containers.list(all=True, filters={"label": "com.docker.compose.project=chaoslab"})


def wait_for_event(journal: Path, name: str, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if journal.exists() and any(r.get("name") == name for r in read(journal)):
            return True
        time.sleep(1)
    return False


def test_ctrl_c_during_a_rolling_upgrade_rolls_back_cleans_up_and_keeps_the_journal(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(CLI + ["experiment", str(EXPERIMENT), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for_event(out / "journal.jsonl", "broker-recreated", 600), "the upgrade never started"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-1500:]
    names = [r.get("name") for r in read(out / "journal.jsonl")]
    assert "interrupted" in names and "rollback-start" in names
    assert read(out / "journal.jsonl")[-1]["type"] == "run-end"
    assert "INTERRUPTED" in (out / "report.md").read_text()
    assert project_containers() == []


def test_a_runner_killed_with_sigkill_leaves_a_readable_journal_and_down_cleans_up(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(CLI + ["experiment", str(EXPERIMENT), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for_event(out / "journal.jsonl", "steady-state-held", 600)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    records = read(out / "journal.jsonl")
    assert any(r["type"] == "sample" for r in records)
    assert all(isinstance(r, dict) for r in records)
    assert project_containers(), "the killed runner should have left its lab behind"
    down = subprocess.run(CLI + ["down"], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stderr
    assert project_containers() == []


def test_two_runs_at_once_do_not_share_a_lab(tmp_path):
    with LabLock("chaoslab"):
        proc = subprocess.run(CLI + ["up"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "lab busy: pid" in proc.stderr and proc.stderr.count("\n") == 1
    assert project_containers() == []
