"""images/pulsar/bin/apply-config-from-env.py, run as the image runs it (a python3 process on a
config file, settings in its environment), on temporary files: no engine. It is the chaoslab
image's implementation of the official Pulsar image's script of the same name, so each test names
the rule of that contract it holds to."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "images" / "pulsar" / "bin" / "apply-config-from-env.py"


def run(tmp_path: Path, files: dict[str, str], env: dict[str, str], args: list[str] | None = None,
        direct: bool = False) -> subprocess.CompletedProcess:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    argv = [str(SCRIPT)] if direct else [sys.executable, str(SCRIPT)]
    return subprocess.run([*argv, *(args if args is not None else list(files))], cwd=tmp_path,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                          capture_output=True, text=True, timeout=60)


def test_a_variable_named_like_a_key_replaces_its_line_and_a_prefixed_one_adds_a_key_the_file_lacks(tmp_path):
    conf = "# a comment line\nclusterName=standalone\n\nnumIOThreads=8\nlast=z\n"
    proc = run(tmp_path, {"broker.conf": conf},
               {"clusterName": "lab", "PULSAR_PREFIX_numIOThreads": "2", "PULSAR_PREFIX_brandNew": "x",
                "notAKey": "ignored"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "broker.conf").read_text() == (
        "# a comment line\nclusterName=lab\n\nnumIOThreads=2\nlast=z\nbrandNew=x\n")
    assert "[broker.conf] Applying config clusterName = lab" in proc.stdout
    assert "[broker.conf] Updating config numIOThreads = 2" in proc.stdout
    assert "[broker.conf] Adding config brandNew = x" in proc.stdout


def test_a_key_shipped_commented_out_is_a_key_and_the_last_line_of_a_key_is_the_one_replaced(tmp_path):
    # Java's Properties keeps the last value of a key, so the last line is the one that counts
    conf = "#journalSyncData=true\nmaxClientCnxns=60\n# maxClientCnxns=10\n# see key=value for notes\n"
    proc = run(tmp_path, {"x.conf": conf}, {"journalSyncData": "false", "PULSAR_PREFIX_maxClientCnxns": "0"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.conf").read_text() == (
        "journalSyncData=false\nmaxClientCnxns=60\nmaxClientCnxns=0\n# see key=value for notes\n")


def test_the_prefixed_variable_wins_values_are_stripped_and_other_lines_stay_byte_for_byte(tmp_path):
    conf = "a=1\r\n  b = 2\nno equals sign here\ncaf\u00e9=\u00e9t\u00e9\n"
    proc = run(tmp_path, {"x.conf": conf}, {"a": "plain", "PULSAR_PREFIX_a": "  prefixed \t", "b": " 3 "})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "x.conf").read_text() == "a=prefixed\nb=3\nno equals sign here\ncaf\u00e9=\u00e9t\u00e9\n"


def test_an_appended_setting_starts_a_line_of_its_own(tmp_path):
    proc = run(tmp_path, {"x.conf": "a=1"}, {"PULSAR_PREFIX_b": "2"})
    assert proc.returncode == 0 and (tmp_path / "x.conf").read_text() == "a=1\nb=2\n"
    proc = run(tmp_path, {"y.conf": "a=1"}, {})
    assert proc.returncode == 0 and (tmp_path / "y.conf").read_text() == "a=1"   # untouched: nothing to add


def test_several_files_and_another_prefix(tmp_path):
    proc = run(tmp_path, {"one.conf": "k=1\n", "two.conf": "k=2\nj=0\n"}, {"MY_k": "9", "MY_new": "n", "j": "5"},
               args=["--prefix", "MY_", "one.conf", "two.conf"])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "one.conf").read_text() == "k=9\nnew=n\n"
    assert (tmp_path / "two.conf").read_text() == "k=9\nj=5\nnew=n\n"


@pytest.mark.parametrize("env", [{"PULSAR_PREFIX_numIOThreads": "2\nloadBalancerSheddingEnabled=false"},
                                 {"clusterName": "lab\rx"}])
def test_a_line_break_in_a_value_writes_nothing_at_all(tmp_path, env):
    # the official script would write it, a second setting smuggled in; this one stops first
    files = {"a.conf": "clusterName=x\n", "b.conf": "numIOThreads=1\n"}
    proc = run(tmp_path, files, env)
    assert proc.returncode == 2 and "line break" in proc.stderr
    assert {n: (tmp_path / n).read_text() for n in files} == files


def test_a_line_break_in_a_variable_that_names_no_key_is_harmless(tmp_path):
    proc = run(tmp_path, {"x.conf": "a=1\n"}, {"UNRELATED": "two\nlines", "a": "2"})
    assert proc.returncode == 0 and (tmp_path / "x.conf").read_text() == "a=2\n"


def test_without_a_file_it_says_how_to_call_it(tmp_path):
    proc = run(tmp_path, {}, {}, args=[])
    assert proc.returncode == 1 and "usage: apply-config-from-env.py" in proc.stderr


def test_a_missing_file_is_an_error_and_no_other_file_is_written(tmp_path):
    proc = run(tmp_path, {"a.conf": "k=1\n"}, {"k": "2"}, args=["a.conf", "missing.conf"])
    assert proc.returncode == 2 and "missing.conf" in proc.stderr
    assert (tmp_path / "a.conf").read_text() == "k=1\n"


def test_secret_values_are_not_printed(tmp_path):
    proc = run(tmp_path, {"x.conf": "brokerClientAuthenticationParameters=\n"},
               {"brokerClientAuthenticationParameters": "token:s3cret", "PULSAR_PREFIX_bookiePassword": "hunter2"})
    assert proc.returncode == 0
    assert "s3cret" not in proc.stdout and "hunter2" not in proc.stdout and proc.stdout.count("********") == 2
    assert "bookiePassword=hunter2" in (tmp_path / "x.conf").read_text()


def test_it_runs_by_its_shebang_and_needs_only_what_python3_minimal_has(tmp_path):
    assert os.access(SCRIPT, os.X_OK) and SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    imported = {a.name.split(".")[0] for node in ast.walk(ast.parse(SCRIPT.read_text()))
                if isinstance(node, (ast.Import, ast.ImportFrom))
                for a in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
    assert imported <= {"os", "sys"}
    proc = run(tmp_path, {"x.conf": "a=1\n"}, {"a": "2"}, direct=True)
    assert proc.returncode == 0 and (tmp_path / "x.conf").read_text() == "a=2\n"
