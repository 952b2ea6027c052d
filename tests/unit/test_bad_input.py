"""Hostile or broken input: every bad file is refused with one line and exit 2, fast, before
anything starts; plans that cannot run on the lab are refused at validation; a damaged run
folder never gives a traceback; credentials stay out of bundles."""

import json
import tarfile
from dataclasses import asdict

import pytest

from chaoslab import bundle, cli
from chaoslab.errors import LabError, UnknownPulsarVersion
from chaoslab.record import read
from chaoslab.settings import LabSettings
from chaoslab.spec.experiment import MAX_EXTENDS, SpecError, load, parse, read_text

HEAD = "name: t\nvariants: [{name: a}]\n"
OK_METHOD = "method: [{type: kill-service, service: proxy}]\n"
GOOD = HEAD + OK_METHOD


def refused(text: str, match: str) -> str:
    with pytest.raises(SpecError, match=match) as info:
        parse(text, env={})
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def one_line_exit_2(argv, capsys) -> str:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# -- bounded YAML ---------------------------------------------------------------------------------------
def test_an_alias_bomb_inside_lab_is_refused_at_once():
    rows = ['  l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    rows += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]   # 9^10 strings
    refused(GOOD + "lab:\n" + "\n".join(rows) + "\n", "expands to more than")


@pytest.mark.parametrize("text", [HEAD + "method: &m [*m]\n",
                                  GOOD + "lab: &l {x: *l}\n",
                                  GOOD + "lab: {a: &x [1, {b: *x}]}\n"])
def test_an_alias_to_its_own_collection_is_refused(text):
    refused(text, "refers to a collection that contains it")


def test_a_5000_deep_list_is_refused():
    refused(HEAD + "method: " + "[" * 5000 + "]" * 5000 + "\n", "nested more than 64 levels")


def test_a_5000_deep_block_list_is_refused():
    refused(HEAD + "method:\n" + "".join(" " * i + "-\n" for i in range(1, 300)), "nested more than 64 levels")


@pytest.mark.parametrize("number", ["9" * 5000, "-" + "1" * 5000, "9" * 5000 + ".5", "0x" + "f" * 5000])
def test_a_number_with_thousands_of_digits_is_refused(number):
    refused(GOOD + f"seed: {number}\n", "a number written with")


def test_a_list_of_100000_values_is_refused_and_many_errors_stay_one_short_line():
    refused(HEAD + "method: [" + ",".join(["1"] * 100_000) + "]\n", "expands to more than")
    message = refused(HEAD + "method: [" + ",".join(["1"] * 15_000) + "]\n", r"method\[0\]")
    assert "(and 14999 more)" in message


def test_a_huge_value_is_not_quoted_whole():
    refused(GOOD + "versions: {to: '" + "x" * 500_000 + "'}\n", r"versions.to: 'x+\.\.\. is not a Pulsar release")


def test_a_50_mb_file_is_refused_before_it_is_read(tmp_path, capsys):
    f = tmp_path / "big.yaml"
    with open(f, "w") as fh:
        fh.write(GOOD)
        fh.write("# " + "x" * (50 * 2 ** 20) + "\n")
    size = f.stat().st_size
    # the size in the message is the file's own (from fstat): refused before a byte was read
    with pytest.raises(SpecError, match=f"{size:,} bytes; a file here may have at most 1,048,576"):
        load(f)
    assert f"{size:,} bytes" in one_line_exit_2(["validate", str(f)], capsys)


def test_a_file_that_is_not_utf8_is_one_line(tmp_path, capsys):
    f = tmp_path / "x.yaml"
    f.write_bytes(GOOD.encode() + b"title: caf\xe9\n")
    assert "not UTF-8 text (byte 0xe9 at line 4)" in one_line_exit_2(["validate", str(f)], capsys)


def test_read_text_refuses_bytes_that_are_not_utf8_for_any_file(tmp_path):
    # what --broker-conf and every other small text input can be read with
    f = tmp_path / "broker.conf"
    f.write_bytes(b"a=1\nb=\xff\n")
    with pytest.raises(SpecError, match=r"^--broker-conf .*: not UTF-8 text \(byte 0xff at line 2\)$"):
        read_text(f, f"--broker-conf {f}")
    with pytest.raises(SpecError, match="is a folder"):
        read_text(tmp_path)


# -- extends ---------------------------------------------------------------------------------------------
def test_an_extends_file_that_is_not_utf8_is_one_spec_error(tmp_path):
    (tmp_path / "base.yaml").write_bytes(b"method: [{type: kill-service, service: proxy}]\ntitle: \xff\n")
    (tmp_path / "a.yaml").write_text(HEAD + "extends: base.yaml\n")
    with pytest.raises(SpecError, match=r"extends: cannot read .*base.yaml: not UTF-8 text") as info:
        load(tmp_path / "a.yaml")
    assert "\n" not in str(info.value)


def test_a_three_level_extends_keeps_the_last_files_sections(tmp_path):
    (tmp_path / "c.yaml").write_text("name: c\nvariants: [{name: a}]\nmethod: [{type: kill-service, service: proxy}]\n"
                                     "checks: [{type: brokers-serve}]\nafter: {secs: 7}\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("extends: ../c.yaml\nafter: {secs: 9}\n")
    (tmp_path / "a.yaml").write_text("extends: sub/b.yaml\nname: a\n")
    exp = load(tmp_path / "a.yaml", env={})
    plan = exp.plan("a")
    assert exp.name == "a"                                  # a's own
    assert plan.after.secs == 9                             # b's over c's
    assert [c.type for c in plan.checks] == ["brokers-serve"] and plan.method[0].service == "proxy"   # c's


@pytest.mark.parametrize("files", [
    {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"},
    {"a.yaml": "extends: a.yaml\n"},
    {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: ./c.yaml\n", "c.yaml": "extends: b.yaml\n"},
])
def test_an_extends_cycle_is_refused(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(GOOD + text)
    with pytest.raises(SpecError, match="comes back to a file already in the chain"):
        load(tmp_path / "a.yaml")


def test_an_extends_chain_longer_than_the_limit_is_refused(tmp_path):
    for i in range(MAX_EXTENDS + 2):
        (tmp_path / f"f{i}.yaml").write_text(GOOD + f"extends: f{i + 1}.yaml\n")
    (tmp_path / f"f{MAX_EXTENDS + 2}.yaml").write_text(GOOD)
    with pytest.raises(SpecError, match=f"more than {MAX_EXTENDS} files in the chain"):
        load(tmp_path / "f0.yaml")


def test_extends_must_name_a_file(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD + "extends: [x]\n")
    with pytest.raises(SpecError, match="extends: must be the path of another experiment file"):
        load(tmp_path / "a.yaml")


# -- plans the lab cannot run ----------------------------------------------------------------------------
@pytest.mark.parametrize("lab, step, message", [
    ("", "{type: roll-broker, broker: 7}", r"method\[1\].broker: broker-7 is not part of this lab .*broker-1..3"),
    ("", "{type: stop-service, service: bookie-9}", r"method\[1\].service: bookie-9 is not part of this lab .*bookie-1..2"),
    ("", "{type: kill-service, service: broker-4}", r"method\[1\].service: broker-4 is not part of this lab"),
    ("", "{type: observe-broker, broker: 5}", r"method\[1\].broker: broker-5"),
    ("", "{type: slow-service, service: rabbitmq-2, cpus: 1}", r"rabbitmq-2 is not part of this lab .*rabbitmq_nodes is 1"),
    ("", "{type: remove-rabbitmq-node, node: 3}", r"method\[1\].node: rabbitmq-3 is not part of this lab"),
    ("lab: {pulsar: false}\n", "{type: roll-broker, broker: 1}", r"broker-1 is not part of this lab \(it has rabbitmq; lab.pulsar"),
])
def test_a_step_naming_what_the_lab_does_not_have_is_refused_at_validation(lab, step, message):
    # the first step is left out of the plan: the path still names the step's place in the file
    text = HEAD + lab + f"method:\n  - {{type: kill-service, service: proxy, enabled: false}}\n  - {step}\n"
    refused(text, message)


def test_steps_naming_what_the_lab_has_still_validate():
    text = HEAD + "lab: {rabbitmq_nodes: 3}\nmethod:\n  - {type: roll-broker, broker: 3}\n" \
                  "  - {type: stop-service, service: bookie-2}\n  - {type: remove-rabbitmq-node, node: 3, via: 2}\n" \
                  "rollbacks: [{type: kill-service, service: zookeeper}]\n"
    assert len(parse(text, env={}).plan("a").method) == 3


def test_a_rollback_naming_a_missing_broker_is_refused_too():
    refused(GOOD + "rollbacks: [{type: roll-broker, broker: 8}]\n", r"rollbacks\[0\].broker: broker-8")


def test_the_cli_refuses_roll_broker_7_with_one_line(tmp_path, capsys):
    f = tmp_path / "x.yaml"
    f.write_text(HEAD + "method: [{type: roll-broker, broker: 7}]\n")
    assert "broker-7 is not part of this lab" in one_line_exit_2(["validate", str(f)], capsys)


# -- releases --------------------------------------------------------------------------------------------
def test_an_unresolvable_release_is_one_line_without_a_lab(tmp_path, monkeypatch):
    from chaoslab.lab import releases
    monkeypatch.setattr(releases, "classpath_dir", lambda v: tmp_path / "build" / v)
    monkeypatch.setattr(releases.Path, "home", lambda: tmp_path)
    monkeypatch.setattr(releases.shutil, "which", lambda name: "/usr/bin/mvn")
    monkeypatch.setattr(releases, "_resolved", set())
    calls = []

    class Proc:
        returncode = 1
        stdout = ("[ERROR] Failed to execute goal ...:get (default-cli) on project standalone-pom: Couldn't download "
                  "artifact: Could not find artifact org.apache.pulsar:pulsar-broker:jar:9.9.9 in central\n[ERROR] \n")
        stderr = ""
    monkeypatch.setattr(releases.subprocess, "run", lambda args, **kw: calls.append(args) or Proc())
    with pytest.raises(releases.UnresolvableRelease, match=r"^Pulsar 9.9.9: not a release Maven can resolve "
                                                             r"\(org.apache.pulsar:pulsar-broker:jar:9.9.9 not found\)$"):
        releases.check_release_resolves("9.9.9")
    assert "-Dartifact=org.apache.pulsar:pulsar-broker:9.9.9" in calls[0]
    assert issubclass(releases.UnresolvableRelease, LabError)
    Proc.stdout = "\x1b[0m[ERROR] Failed to execute goal: Could not transfer artifact: connect timed out\n"
    with pytest.raises(releases.UnresolvableRelease, match="Maven could not fetch .* connect timed out"):
        releases.check_release_resolves("9.9.8")
    with pytest.raises(UnknownPulsarVersion):
        releases.check_release_resolves("latest")
    # an assembled classpath or a jar in the local repository is enough: Maven is not asked
    (tmp_path / "build" / "3.2.3").mkdir(parents=True)
    (tmp_path / "build" / "3.2.3" / "components").write_text("broker\n")
    jar = tmp_path / ".m2/repository/org/apache/pulsar/pulsar-broker/3.3.2/pulsar-broker-3.3.2.jar"
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    calls.clear()
    releases.check_release_resolves("3.2.3")
    releases.check_release_resolves("3.3.2")
    assert calls == []


# -- damaged run folders ---------------------------------------------------------------------------------
def _run_folder(path, journal: bytes | None = None, results: bytes | None = None):
    from chaoslab.run.context import VariantResult
    path.mkdir(parents=True, exist_ok=True)
    good = [{"t": 1.0, "type": "run-start", "run_id": "r", "experiment": "t", "seed": 0, "versions": {}, "host": {}},
            {"t": 2.0, "type": "event", "variant": "a", "name": "variant-start"},
            {"t": 3.0, "type": "run-end", "exit_code": 0, "verdict": "PASS"}]
    (path / "journal.jsonl").write_bytes(journal if journal is not None else
                                         "".join(json.dumps(r) + "\n" for r in good).encode())
    v = asdict(VariantResult("a", "primary", "", {}, verdict="PASS", started=1.0))
    (path / "results.json").write_bytes(results if results is not None else
                                        json.dumps({"title": "t", "exit_code": 0, "variants": [v]}).encode())
    (path / "experiment.yaml").write_text(GOOD)
    (path / "manifest.json").write_text(json.dumps({"seed": 0, "variants": ["a"]}))
    return path


def test_journal_read_skips_lines_that_are_not_records(tmp_path):
    f = tmp_path / "journal.jsonl"
    f.write_bytes(b'{"t": 1, "type": "event", "name": "x"}\n\xff\xfe garbage\n[1, 2]\n5\n{"type": "event"}\n'
                  b'{"t": "soon", "type": "event"}\n' + b"[" * 100_000 + b"\n" + b"1" * 5000 + b"\n"
                  b'{"t": 2, "type": "sample"}\n{"t": 3, "ty')
    assert [r["t"] for r in read(f)] == [1, 2]


def test_report_survives_a_journal_with_garbage_lines(tmp_path, capsys):
    run = _run_folder(tmp_path / "run")
    with open(run / "journal.jsonl", "ab") as fh:
        fh.write(b"\xff\xfe\x00 not utf-8\n{\"t\": \"x\", \"type\": 5}\n[]\n{\"t\": 9, \"type\": \"run-end\"}\n")
    assert cli.main(["report", str(run)]) == 0
    assert "Verdict: PASS" in (run / "report.md").read_text()


@pytest.mark.parametrize("journal, results, message", [
    (b"\xff\xfe\xfd\n\x00\x01\n", None, "journal.jsonl: no readable record"),
    (b"", None, "journal.jsonl: no readable record"),
    (None, b"{\"variants\": [", "results.json: not JSON"),
    (None, b"\xff\xfe", "results.json: not UTF-8"),
    (None, b"[1, 2]", "results.json: not a results object"),
    (None, b"{\"variants\": {}}", "results.json: variants is not a list"),
    (None, b"{\"variants\": [{\"name\": \"a\", \"role\": \"primary\"}]}", "results.json: variants[0].verdict is missing"),
    (None, b"{\"variants\": [{\"name\": \"a\", \"role\": \"primary\", \"verdict\": \"PASS\", \"checks\": 5}]}",
     "cannot build a report from this run folder"),
])
def test_report_on_a_corrupt_run_folder_is_one_line_exit_2(tmp_path, capsys, journal, results, message):
    run = _run_folder(tmp_path / "run", journal, results)
    assert message in one_line_exit_2(["report", str(run)], capsys)


@pytest.fixture
def no_runner(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a runner was made for a bundle that should have been refused")
    monkeypatch.setattr(cli, "make_runner", refuse)


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "results.json").write_bytes(b"{not json"), "results.json: not JSON"),
    (lambda run: (run / "results.json").unlink(), "no results.json: the run did not finish"),
    (lambda run: (run / "manifest.json").write_bytes(b"\xff\xfe"), "manifest.json: not UTF-8"),
    (lambda run: (run / "manifest.json").write_text("[]"), "manifest.json: not a manifest object"),
    (lambda run: (run / "manifest.json").write_text('{"variants": "a"}'), "variants is not a list of variant names"),
    (lambda run: (run / "manifest.json").write_text('{"variants": ["zz"]}'), "variants zz are not in its experiment.yaml"),
    (lambda run: (run / "experiment.yaml").write_text(HEAD + "method: &m [*m]\n"), "refers to a collection"),
    (lambda run: (run / "experiment.yaml").unlink(), "not a chaoslab bundle (experiment.yaml missing)"),
])
def test_replay_of_a_corrupt_or_partial_bundle_is_one_line_before_anything_starts(tmp_path, capsys, no_runner,
                                                                                   damage, message):
    run = _run_folder(tmp_path / "run")
    damage(run)
    assert message in one_line_exit_2(["replay", str(run)], capsys)


def test_replay_of_a_damaged_archive_is_one_line(tmp_path, capsys, no_runner):
    run = _run_folder(tmp_path / "run")
    archive = tmp_path / "run.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(run, arcname="run")
    archive.write_bytes(archive.read_bytes()[:200])   # truncated
    assert "not a readable bundle archive" in one_line_exit_2(["replay", str(archive)], capsys)
    archive.write_bytes(b"not gzip at all")
    assert "not a readable bundle archive" in one_line_exit_2(["replay", str(archive)], capsys)


@pytest.mark.parametrize("argv", [["experiment", "x.yaml"], ["gate"], ["replay", "b"]])
def test_out_at_a_file_is_one_line_exit_2(tmp_path, capsys, argv):
    f = tmp_path / "a-file"
    f.write_text("x")
    for out, what in ((f, "is a file"), (f / "run", "is under")):
        with pytest.raises(SystemExit) as info:
            cli.main([*argv, "--out", str(out)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and what in err and err.startswith("chaoslab: --out "), err


def test_out_at_a_new_or_existing_folder_is_accepted(tmp_path):
    args = cli.build_parser().parse_args(["experiment", "x.yaml", "--out", str(tmp_path / "new" / "run")])
    assert args.out == tmp_path / "new" / "run"
    assert cli.build_parser().parse_args(["replay", "b", "--out", str(tmp_path)]).out == tmp_path


# -- credentials -------------------------------------------------------------------------------------------
def test_rabbitmq_credentials_come_from_the_environment_and_stay_out_of_bundles(tmp_path, monkeypatch):
    monkeypatch.setenv("RABBITMQ_USER", "ops")
    monkeypatch.setenv("RABBITMQ_PASSWORD", "s3cret-pw")
    s = LabSettings.from_env()
    assert s.rabbitmq_amqp_url(2) == f"amqp://ops:s3cret-pw@127.0.0.1:{s.rabbitmq_port + 1}/%2F"
    assert "s3cret-pw" not in repr(s) and "s3cret-pw" not in json.dumps(s.public())
    assert "rabbitmq_user" not in s.public() and s.public()["brokers"] == 3
    run = _run_folder(tmp_path / "run")
    (run / "manifest.json").write_text(json.dumps({"seed": 0, "settings": {**s.__dict__}}, default=str))
    archive = bundle.finish(run, make_tar=True)
    assert "s3cret-pw" not in (run / "manifest.json").read_text()
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("run/manifest.json"))
    assert "rabbitmq_password" not in manifest["settings"] and manifest["settings"]["brokers"] == 3
