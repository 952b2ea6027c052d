"""A broker rolled to a Pulsar build the user supplies (PULSAR_DIST_<release>), on the real lab: the
build becomes an image, the rolled broker runs it and reports its release, and the manifest and the
report name the build and its digest. The supplied build is the 3.2.3 classpath the lab assembled
from Maven, labelled 3.2.3-supplied, so the test needs nothing from outside the repository's recipes."""

from __future__ import annotations

import json
from pathlib import Path

from chaoslab.lab.pulsar_dist import classpath_dir, resolve

EXPERIMENT = Path(__file__).parent / "experiments" / "supplied-build-short.yaml"


def test_a_broker_rolled_to_a_supplied_build_runs_it_and_the_report_says_so(tmp_path, run_experiment, monkeypatch):
    lib = resolve("3.2.3") / "lib"                 # a real Pulsar classpath, assembled from Maven
    monkeypatch.setenv("PULSAR_DIST_3_2_3_SUPPLIED", str(lib))
    out = tmp_path / "run"
    proc, records = run_experiment(EXPERIMENT, out, timeout=900, expect={"PASS"})
    back = next(r for r in records if r["type"] == "event" and r["name"] == "change-read-back")
    assert back["version"] == "3.2.3-supplied" and back["version_in_effect"] == "3.2.3" and back["ok"]
    source = json.loads((classpath_dir("3.2.3-supplied") / "source.json").read_text())
    assert source["kind"] == "lib" and source["path"] == str(lib.resolve()) and source["pulsar_version"] == "3.2.3"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["supplied_releases"]["3.2.3-supplied"]["sha256"] == source["sha256"]
    assert "chaoslab/pulsar:3.2.3-supplied" in manifest["images"]
    report = (out / "report.md").read_text()
    assert "Release 3.2.3-supplied is a build supplied with PULSAR_DIST_3_2_3_SUPPLIED" in report
