import json

import jsonschema
import pytest
import yaml

from chaoslab.settings import REPO_ROOT
from chaoslab.spec.experiment import SpecError, interpolate, json_schema, load, parse

GOOD = """
name: t
versions: {from: 3.2.2, to: 3.2.3}
variants:
  - {name: a, role: primary, params: {cfg: {loadManagerClassName: X}}}
workload: {type: pulsar-topics}
probes: [{type: pulsar-brokers}, {type: pulsar-client}]
steady_state: {conditions: [{type: publish-success-rate, min: 0.99}]}
method:
  - {type: roll-broker, broker: 1, broker_config: $cfg}
  - {type: roll-broker, broker: 2, broker_config: $cfg}
"""


def test_the_shipped_experiments_validate_and_match_the_json_schema():
    schema = json_schema()
    for path in sorted((REPO_ROOT / "experiments").glob("*.yaml")):
        exp = load(path, env={})
        assert exp.primary.role == "primary"
        doc = yaml.safe_load(interpolate(path.read_text(), {}))
        jsonschema.validate(doc, schema)  # what an editor checks


def test_the_schema_rejects_what_the_loader_rejects():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"name": "t", "variants": [{"name": "a"}], "method": [{"type": "reboot-everything"}]},
                            json_schema())


def test_minimal_file_gets_defaults_and_step_ids():
    exp = parse(GOOD, env={})
    plan = exp.plan(exp.primary)
    assert [s.id for s in plan.method] == ["roll-broker-1", "roll-broker-2"]
    assert plan.method[0].wait_for == "shallow" and plan.method[0].version == "to"
    assert plan.method[0].broker_config == {"loadManagerClassName": "X"}
    assert plan.steady_state.tolerance_secs == 20 and exp.release("to") == "3.2.3"
    assert exp.releases() == ["3.2.2", "3.2.3"]


def test_env_interpolation_with_default():
    text = GOOD.replace("to: 3.2.3", "to: ${PULSAR_TO:-3.2.3}")
    assert parse(text, env={"PULSAR_TO": "3.3.2"}).versions.to == "3.3.2"
    assert parse(text, env={}).versions.to == "3.2.3"


def test_setting_values_become_broker_conf_strings():
    exp = parse(GOOD.replace("loadManagerClassName: X", "maxConcurrentLookupRequest: 50, debug: true"), env={})
    assert exp.plan("a").method[0].broker_config == {"maxConcurrentLookupRequest": "50", "debug": "true"}


BROKEN = [
    ("name: [x", "not valid YAML at line 1"),
    ("- a\n- b", "must be a YAML mapping"),
    (GOOD + "colour: red\n", "colour: unknown field"),
    (GOOD.replace("name: t", "name: T T"), "name: String should match pattern"),
    (GOOD.replace("min: 0.99", "min: fast"), r"steady_state.conditions\[0\].min: Input should be a valid number"),
    (GOOD.replace("min: 0.99", "min: 7"), r"steady_state.conditions\[0\].min: Input should be less than or equal to 1"),
    (GOOD.replace("type: pulsar-topics", "type: pulsar-topics, tenants: -1"), "workload.tenants: Input should be greater"),
    (GOOD.replace("type: pulsar-topics", "type: pulsar-topics, tenants: 2.5"), "workload.tenants: Input should be a valid integer"),
    (GOOD.replace("type: pulsar-topics", "type: pulsar-topics, rate: true"), "workload.rate: Input should be a valid number"),
    (GOOD + "lab: {pico_vms: 100000}\n", "lab.pico_vms: Input should be less than or equal to 200"),
    (GOOD.replace("- {type: roll-broker, broker: 1", "- {type: reboot-everything, broker: 1"),
     r"method\[0\].type: unknown type 'reboot-everything'"),
    (GOOD.replace("broker: 2", "broker: 17"), r"method\[1\].broker: Input should be less than or equal to 9"),
    (GOOD.replace("broker: 2,", "broker: 2, wait_for: vibes,"), r"method\[1\].wait_for: Input should be 'shallow' or 'functional'"),
    (GOOD.replace("broker: 2,", "broker: 2, after: nowhere,"), r"method\[1\].after: 'nowhere' is not an earlier step"),
    (GOOD.replace("broker: 2,", "broker: 2, version: latest,"), r"method\[1\].version: 'latest' is not a Pulsar release"),
    (GOOD.replace("broker_config: $cfg}\n  - ", "broker_config: $cgf}\n  - "), r"method\[0\].broker_config: \$cgf is not a parameter"),
    (GOOD.replace("params: {cfg:", "params: {unused: 1, cfg:"), r"variants\[0\].params: unused used nowhere"),
    (GOOD.replace("{type: pulsar-topics}", "{type: none}"), r"probes\[1\]: pulsar-client needs a workload of type pulsar-topics"),
    (GOOD.replace("steady_state: {", "steady_state: {steady_sec: 3, "), "steady_state.steady_sec: unknown field"),
    (GOOD.replace("from: 3.2.2", "from: 3.2"), "versions.from: 3.2 is not a Pulsar release|versions.from: Input should be a valid string"),
    ("name: t\nvariants: []\nmethod: [{type: kill-service, service: proxy}]\n", "variants: List should have at least 1 item"),
    ("name: t\nvariants: [{role: primary}]\nmethod: [{type: kill-service, service: proxy}]\n", r"variants\[0\].name: required"),
    ("name: t\nvariants: [{name: a, role: control}]\nmethod: [{type: kill-service, service: proxy}]\n", "exactly one variant must have role: primary"),
    ("name: t\nvariants: [{name: a, role: boss}]\nmethod: [{type: kill-service, service: proxy}]\n", r"variants\[0\].role: Input should be"),
    ("name: t\nvariants: [{name: a}, {name: a, role: control}]\nmethod: [{type: kill-service, service: proxy}]\n", "names must be unique"),
    ("name: t\nvariants: [{name: a}]\n", "method: required"),
    ("name: t\nvariants: [{name: a}]\nmethod: [{type: kill-service, service: bookie-x}]\n", r"method\[0\].service: String should match"),
    ("name: t\nversions: {to: ${NOPE}}\nvariants: [{name: a}]\n", "NOPE is used by the file but not set"),
]


@pytest.mark.parametrize("text,message", BROKEN)
def test_broken_files_are_refused_naming_the_field(text, message):
    with pytest.raises(SpecError, match=message) as info:
        parse(text, env={})
    assert "\n" not in str(info.value)


def test_load_names_the_file(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("name: [x")
    with pytest.raises(SpecError, match=f"{f}: not valid YAML"):
        load(f)
    with pytest.raises(SpecError, match="no experiment file"):
        load(tmp_path / "missing.yaml")


def test_vm_group_rules_are_the_agents():
    base = """
name: vb
variants: [{name: a, params: {g: {type: vm-agents, flavour: pico, count: 2, buffer: {type: disk, max_size: 268435488, when_full: drop_newest}}}}]
workload: $g
method: [{type: stop-service, service: proxy, for_secs: 5}]
"""
    assert parse(base, env={}).plan("a").workload.count == 2
    for old, new, message in [("max_size: 268435488", "max_size: 1000", "at least 268435488"),
                              ("when_full: drop_newest", "when_full: panic", "when_full: Input should be"),
                              ("flavour: pico", "flavour: large", "flavour: Input should be 'pico' or 'nano'"),
                              ("count: 2", "count: 501", "count: Input should be less than or equal to 500"),
                              ("count: 2,", "count: 2, resident_mb: 300,", "does not fit in a pico VM")]:
        with pytest.raises(SpecError, match=message):
            parse(base.replace(old, new), env={})


def test_cli_schema_prints_json(capsys):
    from chaoslab.cli import main
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "chaoslab experiment" and "method" in schema["properties"]


def test_extends_takes_the_base_sections_and_keeps_one_whole_document(tmp_path):
    from chaoslab.spec.experiment import source
    exp = load(REPO_ROOT / "experiments" / "transfer-shedder-minimal-probes.yaml", env={})
    base = load(REPO_ROOT / "experiments" / "transfer-shedder.yaml", env={})
    plan, base_plan = exp.plan("flip"), base.plan("flip")
    assert [p.type for p in plan.probes] == ["pulsar-brokers", "pulsar-client"] and plan.monitors == []
    assert plan.probes[0].profile == "metrics-only"
    assert [s.id for s in plan.method] == [s.id for s in base_plan.method]
    again = parse(source(exp), env={})  # what a bundle holds replays without the base file
    assert "extends" not in source(exp) and again.plan("flip").model_dump() == plan.model_dump()
    f = tmp_path / "x.yaml"
    f.write_text("extends: nowhere.yaml\nname: x\n")
    with pytest.raises(SpecError, match="extends: cannot read"):
        load(f)


def test_the_printed_schema_accepts_every_shipped_file_as_written(capsys):
    """What an editor sees: the raw file (no ${VAR} replaced), checked against `chaoslab schema`."""
    from chaoslab import cli
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator.check_schema(schema)
    files = sorted((REPO_ROOT / "experiments").glob("*.yaml"))
    assert len(files) >= 8
    for path in files:
        raw = yaml.safe_load(path.read_text())   # also: every shipped file is YAML before interpolation
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(raw)]
        assert errors == [], f"{path.name}: {errors[:2]}"


def test_interpolations_and_param_references_are_accepted_where_the_loader_takes_them_and_nothing_else_is():
    schema = json_schema()
    base = {"name": "t", "variants": [{"name": "a"}], "method": [{"type": "wait", "secs": 1}]}

    def ok(doc):
        return not list(jsonschema.Draft202012Validator(schema).iter_errors({**base, **doc}))
    assert ok({"versions": {"from": "${PULSAR_FROM:-3.2.2}"}})
    assert ok({"method": [{"type": "wait", "secs": "${DOSE_SECS:-300}"}]})
    assert ok({"workload": {"type": "rabbitmq-events", "queue_type": "$queue_type"}})
    assert not ok({"versions": {"from": "three"}})                          # neither a release nor ${...}
    assert not ok({"method": [{"type": "wait", "secs": "300"}]})             # a string where a number goes
    assert not ok({"method": [{"type": "wait", "secs": "$ {DOSE}"}]})
    assert not ok({"workload": {"type": "rabbitmq-events", "queue_type": "fast"}})
    assert not ok({"method": [{"type": "${STEP}"}]})                         # the type names the item: literal


def test_the_schema_in_the_repository_is_current_and_every_shipped_file_points_at_it():
    stored = json.loads((REPO_ROOT / "docs" / "experiment.schema.json").read_text())
    assert stored == json_schema(), "regenerate: chaoslab schema > docs/experiment.schema.json"
    for path in sorted((REPO_ROOT / "experiments").glob("*.yaml")):
        assert "# yaml-language-server: $schema=../docs/experiment.schema.json" in path.read_text(), path.name
