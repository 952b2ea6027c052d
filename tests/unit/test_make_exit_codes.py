"""`make experiment` / `make gate` return chaoslab's own exit code (0 pass, 1 fail, 2 lab error,
130 interrupted), checked through the real Makefile and GNU make with a stand-in for chaoslab
(SETUP=true skips the host setup; CHAOSLAB= points at the stand-in)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from chaoslab.settings import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")

STAND_IN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_DIR/argv"
if [ "$STUB_RC" = wait ]; then
    # a run that rolls back for a moment when interrupted, then says 130 as chaoslab does
    trap 'sleep 0.5; echo rolled-back > "$STUB_DIR/cleaned"; exit 130' INT
    touch "$STUB_DIR/started"
    while :; do sleep 0.05; done
fi
exit "$STUB_RC"
"""


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "chaoslab"
    path.write_text(STAND_IN)
    path.chmod(0o755)
    return path


def make(stub, *goals_and_vars, rc="0", **popen):
    env = dict(os.environ, STUB_RC=str(rc), STUB_DIR=str(stub.parent))
    cmd = ["make", "-s", "--no-print-directory", *goals_and_vars, f"CHAOSLAB={stub}", "SETUP=true"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, **popen)


@pytest.mark.parametrize("goal", ["experiment", "gate"])
@pytest.mark.parametrize("said, make_says", [(0, 0), (1, 1), (2, 2), (130, 130), (3, 2)])
def test_make_returns_chaoslabs_code(stub, goal, said, make_says):
    proc = make(stub, goal, rc=said)
    proc.wait(timeout=30)
    # a shell reports a process that died of SIGINT as 130, as it does for chaoslab's own 130
    code = 128 - proc.returncode if proc.returncode < 0 else proc.returncode
    assert code == make_says, proc.stderr.read()


def test_make_passes_the_experiment_and_its_arguments(stub):
    make(stub, "experiment", "NAME=vector-buffer", "ARGS=--json --variant fix").wait(timeout=30)
    assert (stub.parent / "argv").read_text().split() == ["experiment", "experiments/vector-buffer.yaml", "--json",
                                                          "--variant", "fix"]
    make(stub, "gate", "TO=3.3.2", "BROKER_CONF=change.conf").wait(timeout=30)
    assert (stub.parent / "argv").read_text().split() == ["gate", "--to", "3.3.2", "--broker-conf", "change.conf"]


def test_ctrl_c_through_make_waits_for_the_rollback_and_exits_130(stub):
    """Ctrl-C at a terminal reaches make and chaoslab (one process group): make waits until chaoslab
    has rolled back, then dies of SIGINT itself, which a shell reports as 130."""
    proc = make(stub, "experiment", rc="wait", start_new_session=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 20
    while not (stub.parent / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=30) == -signal.SIGINT
    assert (stub.parent / "cleaned").read_text().strip() == "rolled-back"


def test_a_dry_run_of_make_runs_nothing(stub):
    proc = make(stub, "-n", "experiment", rc=1)
    proc.wait(timeout=30)
    assert not (stub.parent / "argv").exists()


def test_other_goals_keep_makes_own_codes(stub):
    """Question mode is only for a lone `experiment` / `gate` goal: with another goal beside it every
    recipe runs as usual (and a failed recipe is make's 2)."""
    proc = make(stub, "gate", "experiment", rc=1)
    proc.wait(timeout=30)
    assert proc.returncode == 2
    assert (stub.parent / "argv").exists()
