import pytest

from chaoslab.experiment import spec
from chaoslab.experiment.spec import SpecError
from chaoslab.settings import REPO_ROOT

GOOD = """
name: t
versions: {from: 3.2.2, to: 3.2.3}
variants:
  - {name: a, role: primary, to: to, broker_config: {loadManagerClassName: X}}
"""


def test_the_shipped_experiments_validate():
    for path in (REPO_ROOT / "experiments").glob("*.yaml"):
        exp = spec.load(path, env={})
        assert exp.primary.role == "primary"


def test_minimal_file_gets_defaults():
    exp = spec.parse(GOOD, env={})
    assert exp.method.brokers == (1, 2, 3) and exp.method.wait_for == "shallow"
    assert exp.version_of(exp.primary) == "3.2.3"
    assert exp.hypothesis.tolerance_secs == 20


def test_env_interpolation_with_default():
    text = GOOD.replace("to: 3.2.3", "to: ${PULSAR_TO:-3.2.3}")
    assert spec.parse(text, env={"PULSAR_TO": "3.3.2"}).versions.to == "3.3.2"
    assert spec.parse(text, env={}).versions.to == "3.2.3"


BROKEN = [
    ("name: [x", "not valid YAML at line 1"),
    ("- a\n- b", "must be a YAML mapping"),
    (GOOD + "colour: red\n", "unknown top-level field(s) colour"),
    (GOOD.replace("name: t", "name: T T"), "name: use lowercase"),
    (GOOD + "hypothesis: {publish_p99_ms_max: fast}\n", "hypothesis.publish_p99_ms_max: expected a number, got 'fast'"),
    (GOOD + "hypothesis: {publish_success_rate_min: 7}\n", "hypothesis.publish_success_rate_min: must be <= 1"),
    (GOOD + "workload: {tenants: -1}\n", "workload.tenants: must be >= 1"),
    (GOOD + "workload: {tenants: 2.5}\n", "workload.tenants: expected an integer"),
    (GOOD + "workload: {rate: true}\n", "workload.rate: expected a number"),
    (GOOD + "lab: {pico_vms: 100000}\n", "lab.pico_vms: must be <= 200"),
    (GOOD + "method: {type: reboot_everything}\n", "method.type: must be one of rolling_upgrade"),
    (GOOD + "method: {brokers: [1, 7]}\n", "method.brokers: must be <= 3"),
    (GOOD + "method: {brokers: []}\n", "method.brokers: expected a non-empty list"),
    (GOOD + "method: {wait_for: vibes}\n", "method.wait_for: must be one of shallow, functional"),
    (GOOD + "phases: {steady_sec: 3}\n", "phases: unknown field(s) steady_sec"),
    (GOOD + "rollback: {revert: {loadManagerClassName: [a]}}\n", "rollback.revert.loadManagerClassName: expected a scalar"),
    (GOOD + "rollback: {recovery: yes-please}\n", "rollback.recovery: expected true or false"),
    (GOOD.replace("from: 3.2.2", "from: 3.2"), "versions.from: '3.2' is not a Pulsar release"),
    ("name: t\nvariants: []\n", "variants: expected a non-empty list"),
    ("name: t\nvariants: [{role: primary}]\n", "variants[0].name is required"),
    ("name: t\nvariants: [{name: a, role: control}]\n", "exactly one variant must have role: primary"),
    ("name: t\nvariants: [{name: a, role: boss}]\n", "variants[0].role: must be one of"),
    ("name: t\nvariants: [{name: a, to: latest}]\n", "variants[0].to: 'latest' is not a Pulsar release"),
    ("name: t\nvariants: [{name: a}, {name: a, role: control}]\n", "names must be unique"),
    ("name: t\nversions: {to: ${NOPE}}\nvariants: [{name: a}]\n", "NOPE is used by the file but not set"),
]


@pytest.mark.parametrize("text,message", BROKEN, ids=[m[:40] for _, m in BROKEN])
def test_broken_files_are_rejected_naming_the_field(text, message):
    with pytest.raises(SpecError) as err:
        spec.parse(text, env={})
    assert message in str(err.value)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="no experiment file"):
        spec.load(tmp_path / "nope.yaml")


def test_cli_validate_exit_codes(tmp_path, capsys):
    from chaoslab import cli
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nworkload: {rate: lots}\nvariants: [{name: a}]\n")
    assert cli.main(["validate", str(bad)]) == 2
    assert "workload.rate: expected a number" in capsys.readouterr().err
    assert cli.main(["experiment", str(bad)]) == 2  # rejected before any container starts
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    assert cli.main(["validate", str(good)]) == 0
