"""A change that was never applied must never pass.

Each test names the road to a false verdict it closes:
- a misspelt or unknown key (Pulsar ignores it: the gate would judge a change it never made);
- a value that smuggles a second setting, runs a command or is changed on the way (the broker
  would run something else than what was asked, or the lab host would run the user's text);
- a roll whose broker does not run with the requested values (read back: ERROR, never SAFE).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import threading
import zipfile
from pathlib import Path

import fakelab
import pytest
from pydantic import ValidationError

from chaoslab import gate
from chaoslab.errors import ChangeNotApplied, LabError, UnknownSetting
from chaoslab.lab import broker_settings as bs
from chaoslab.lab import pulsar_dist
from chaoslab.spec.experiment import SpecError
from chaoslab.steps import pulsar as pulsar_steps
from chaoslab.steps.pulsar import RollBroker

ROOT = Path(__file__).resolve().parents[2]
PULSAR_RUN = ROOT / "images" / "pulsar" / "pulsar-run"
KNOWN = ["loadBalancerSheddingEnabled", "loadBalancerSheddingIntervalMinutes", "loadManagerClassName",
         "maxConcurrentLookupRequest", "managedLedgerDefaultEnsembleSize", "brokerServicePort"]


# -- which keys exist ---------------------------------------------------------------------------------
def class_file(fields: list[tuple[int, str, str]]) -> bytes:
    """A minimal Java class file declaring `fields` (access flags, name, descriptor); its constant
    pool also holds a Long and a Double (two slots each) and a String, as real ones do."""
    pool: list[bytes] = []
    slot = [1]

    def add(entry: bytes, slots: int = 1) -> int:
        index = slot[0]
        pool.append(entry)
        slot[0] += slots
        return index

    def utf8(text: str) -> int:
        raw = text.encode()
        return add(b"\x01" + struct.pack(">H", len(raw)) + raw)

    this = add(b"\x07" + struct.pack(">H", utf8("org/apache/pulsar/broker/ServiceConfiguration")))
    sup = add(b"\x07" + struct.pack(">H", utf8("java/lang/Object")))
    add(b"\x05" + struct.pack(">q", 300_000), slots=2)
    add(b"\x06" + struct.pack(">d", 0.5), slots=2)
    add(b"\x08" + struct.pack(">H", utf8("Server")))
    const_attr = utf8("ConstantValue")
    body = b""
    for access, name, descriptor in fields:
        n, d = utf8(name), utf8(descriptor)
        body += struct.pack(">HHHH", access, n, d, 1) + struct.pack(">HI", const_attr, 2) + b"\x00\x01"
    head = struct.pack(">IHHH", 0xCAFEBABE, 0, 61, slot[0]) + b"".join(pool)
    return head + struct.pack(">HHHH", 0x21, this, sup, 0) + struct.pack(">H", len(fields)) + body + b"\x00\x00\x00\x00"


FIELDS = [
    (0x001A, "CATEGORY_SERVER", "Ljava/lang/String;"),           # private static final: a constant
    (0x0002, "loadBalancerSheddingEnabled", "Z"),
    (0x0002, "brokerServicePort", "Ljava/util/Optional;"),
    (0x0002, "properties", "Ljava/util/Properties;"),          # the raw property bag, not a setting
    (0x1002, "this$0", "Ljava/lang/Object;"),                   # synthetic
    (0x0002, "maxConcurrentLookupRequest", "I"),
]


def test_the_settings_of_a_release_are_its_config_class_fields_not_constants_or_the_property_bag():
    assert bs.settings_of_class(class_file(FIELDS)) == [
        "loadBalancerSheddingEnabled", "brokerServicePort", "maxConcurrentLookupRequest"]
    with pytest.raises(ValueError):
        bs.settings_of_class(b"not a class")


JAVAP_SAMPLE = """Compiled from "ServiceConfiguration.java"
public class org.apache.pulsar.broker.ServiceConfiguration implements org.apache.pulsar.common.configuration.PulsarConfiguration {
  private static final java.lang.String CATEGORY_SERVER;
  private static final double MIN_ML_CACHE_EVICTION_FREQUENCY;
  private java.lang.String zookeeperServers;
  private java.util.Optional<java.lang.Integer> brokerServicePort;
  private java.util.Set<java.lang.String> superUserRoles;
  private boolean loadBalancerSheddingEnabled;
  private java.util.Map<java.lang.String, java.lang.String> brokerClientAuthenticationParameters;
  private java.util.Properties properties;
  private int[] someArray;
  public org.apache.pulsar.broker.ServiceConfiguration();
  public boolean isLoadBalancerSheddingEnabled();
  public void setLoadBalancerSheddingEnabled(boolean);
  static {};
}
"""


def test_javap_output_gives_the_same_kind_of_list():
    assert bs.settings_of_javap(JAVAP_SAMPLE) == [
        "zookeeperServers", "brokerServicePort", "superUserRoles", "loadBalancerSheddingEnabled",
        "brokerClientAuthenticationParameters", "someArray"]


def test_the_class_reader_agrees_with_javap_on_a_real_release():
    jars = sorted((ROOT / "build" / "pulsar").glob("*/lib/pulsar-broker-common-*.jar"))
    if not jars or not shutil.which("javap"):
        pytest.skip("no assembled Pulsar release or no javap here")
    jar = jars[0]
    javap = subprocess.run(["javap", "-p", "-cp", str(jar), "org.apache.pulsar.broker.ServiceConfiguration"],
                           capture_output=True, text=True, timeout=60).stdout
    names = bs.extract_settings(jar)
    assert names == bs.settings_of_javap(javap)
    assert {"loadBalancerSheddingEnabled", "maxConcurrentLookupRequest", "loadManagerClassName"} <= set(names)
    assert "properties" not in names and "CATEGORY_SERVER" not in names


@pytest.fixture
def releases(tmp_path, monkeypatch):
    """build/pulsar/<v>/ under tmp_path; 3.2.3 has its settings list, 3.2.2 only its jars."""
    monkeypatch.setattr(pulsar_dist, "classpath_dir", lambda v: tmp_path / v)
    (tmp_path / "3.2.3").mkdir()
    (tmp_path / "3.2.3" / bs.SETTINGS_FILE).write_text("\n".join(KNOWN) + "\n")
    lib = tmp_path / "3.2.2" / "lib"
    lib.mkdir(parents=True)
    with zipfile.ZipFile(lib / "pulsar-broker-common-3.2.2.jar", "w") as z:
        z.writestr(bs.CONFIG_CLASS + ".class", class_file(FIELDS))
    return tmp_path


def test_a_misspelt_key_is_refused_before_anything_starts_naming_the_closest_real_one(releases):
    # road: `loadBalancerSheddingEnabeld=false` accepted, ignored by Pulsar, gate says SAFE
    with pytest.raises(UnknownSetting) as exc:
        bs.check_broker_settings("3.2.3", {"loadBalancerSheddingEnabeld": "false"}, resolve=False)
    assert str(exc.value) .startswith(
        "'loadBalancerSheddingEnabeld' is not a setting of Pulsar 3.2.3 (closest: loadBalancerSheddingEnabled)")
    assert exc.value.exit_code == 2
    with pytest.raises(UnknownSetting, match=r"'maxconcurrentlookuprequest' .* \(closest: maxConcurrentLookupRequest\)"):
        bs.check_broker_settings("3.2.3", {"maxconcurrentlookuprequest": "5"}, resolve=False)
    with pytest.raises(UnknownSetting, match=r"'zzzNothingLikeIt' is not a setting of Pulsar 3.2.3 -"):
        bs.check_broker_settings("3.2.3", {"zzzNothingLikeIt": "1"}, resolve=False)
    bs.check_broker_settings("3.2.3", {"loadBalancerSheddingEnabled": "false", "loadManagerClassName": "X"},
                             resolve=False)


def test_the_gate_checks_the_change_against_the_release_it_rolls_to(releases):
    exp = type("E", (), {"versions": type("V", (), {"to": "3.2.3", "from_": "3.2.2"})()})()
    with pytest.raises(UnknownSetting, match="closest: loadBalancerSheddingEnabled"):
        gate.check_broker_conf_keys(exp, {"loadBalancerSheddingEnabeld": "false"}, resolve=False)


def test_keys_cannot_go_unchecked_when_the_list_is_missing_and_it_is_made_from_the_jars_on_demand(releases):
    # road: no list for a release -> nothing checked -> the typo passes
    with pytest.raises(LabError, match="not known yet"):
        bs.check_broker_settings("3.3.1", {"loadBalancerSheddingEnabled": "false"}, resolve=False)
    assert bs.known_broker_settings("3.3.1") is None
    # 3.2.2 has jars but no list yet: read from its pulsar-broker-common jar and stored
    assert bs.known_broker_settings("3.2.2") == {"loadBalancerSheddingEnabled", "brokerServicePort",
                                                 "maxConcurrentLookupRequest"}
    assert (releases / "3.2.2" / bs.SETTINGS_FILE).read_text().splitlines() == sorted(
        ["loadBalancerSheddingEnabled", "brokerServicePort", "maxConcurrentLookupRequest"])
    with pytest.raises(UnknownSetting, match="closest: loadBalancerSheddingEnabled"):
        bs.check_broker_settings("3.2.2", {"loadBalancerSheddingEnabeld": "false"}, resolve=False)


def test_the_image_recipe_stores_the_settings_list_with_the_release():
    dockerfile = (ROOT / "images" / "pulsar" / "Dockerfile").read_text()
    assert re.search(r"^COPY broker-settings\.txt /pulsar/broker-settings\.txt$", dockerfile, re.M)
    images = (ROOT / "chaoslab" / "lab" / "images.py").read_text()
    assert "broker_settings.SETTINGS_FILE" in images  # in the image's recipe hash: a new list, a new image


# -- values travel literally --------------------------------------------------------------------------
HOSTILE = {
    "sedCommand": "|e touch {tmp}/pwned-sed",
    "ampersand": "a&b",
    "backref": r"x\1y",
    "subshell": "$(touch {tmp}/pwned-subshell)",
    "backticks": "`touch {tmp}/pwned-backticks`",
    "spaces": "one two  three",
    "equals": "k=v=w",
    "comment": "value # not a comment",
    "quotes": "'single' \"double\"",
    "percent": "100%25 %%",
    "dollar": "${HOME}$HOME",
    "nonAscii": "caf\u00e9 \U0001F600",
    "leadingSpace": " padded",
    "backslashEnd": "ends\\",
    "loadBalancerSheddingEnabled": "false",
}


def render(tmp_path: Path, env_lines: str, template: str, name: str = "broker") -> subprocess.CompletedProcess:
    """pulsar-run's render_conf over `template`, with the environment a container gets from an env
    file of `env_lines` (KEY=VALUE lines, split at the first '=' as every env-file reader does)."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "out").mkdir(exist_ok=True)
    (tmp_path / "templates" / f"{name}.conf").write_text(template)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    for line in env_lines.splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    script = f'set -euo pipefail; source "{PULSAR_RUN}"; render_conf {name} "$1" "$2"'
    return subprocess.run(["bash", "-c", script, "render", str(tmp_path / "templates"), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True, timeout=60)


TEMPLATE = "clusterName=lab\n# loadBalancerSheddingEnabled=comment\nloadBalancerSheddingEnabled=true\nnumIOThreads=2\n" \
           "loadBalancerSheddingEnabled=true\nlast=z"


def properties_escaped(value: str) -> str:
    """How a value must stand in a java.util.Properties file to be read back as exactly `value`."""
    out = value.replace("\\", "\\\\")
    out = "\\" + out if out.startswith(" ") else out
    return "".join(c if ord(c) < 128 else "".join(f"\\u{u:04x}" for u in struct.unpack(
        f">{len(c.encode('utf-16-be')) // 2}H", c.encode("utf-16-be"))) for c in out)


def test_values_reach_the_config_file_literally_and_nothing_in_them_runs(tmp_path):
    # road: `|e cmd` run by sed, `&`/`\1` rewritten by it, `$(..)` run by a shell, `#` cut off
    # by the env file, a value changed on the way
    values = {k: v.replace("{tmp}", str(tmp_path)) for k, v in HOSTILE.items()}
    env_lines = "".join(f"PULSAR_CONF_{k}={bs.env_value(v)}\n" for k, v in values.items())
    assert re.fullmatch(r"(PULSAR_CONF_[A-Za-z]+=[A-Za-z0-9_.,:/@+=%-]*\n)+", env_lines)  # no env-file syntax in it
    proc = render(tmp_path, env_lines, TEMPLATE)
    assert proc.returncode == 0, proc.stderr
    assert not list(tmp_path.glob("pwned*"))
    lines = (tmp_path / "out" / "broker.conf").read_text(encoding="ascii").splitlines()
    appended = sorted(k for k in values if k != "loadBalancerSheddingEnabled")
    assert lines == (["clusterName=lab", "# loadBalancerSheddingEnabled=comment", "loadBalancerSheddingEnabled=false",
                      "numIOThreads=2", "last=z"]
                     + [f"{k}={properties_escaped(values[k])}" for k in appended])
    assert "sedCommand=|e touch " in lines[5 + appended.index("sedCommand")]


def test_java_reads_the_rendered_file_back_as_exactly_the_values_asked_for(tmp_path):
    java = shutil.which("java")
    if not java:
        pytest.skip("no java here")
    values = {k: v.replace("{tmp}", str(tmp_path)) for k, v in HOSTILE.items()}
    proc = render(tmp_path, "".join(f"PULSAR_CONF_{k}={bs.env_value(v)}\n" for k, v in values.items()), TEMPLATE)
    assert proc.returncode == 0, proc.stderr
    # read the way Pulsar reads broker.conf: Properties.load of an InputStream (ISO-8859-1)
    (tmp_path / "Dump.java").write_text(
        "import java.io.FileInputStream; import java.util.Properties;\n"
        "public class Dump { public static void main(String[] a) throws Exception {\n"
        "  Properties p = new Properties(); try (FileInputStream in = new FileInputStream(a[0])) { p.load(in); }\n"
        "  StringBuilder sb = new StringBuilder();\n"
        "  for (String k : new java.util.TreeSet<>(p.stringPropertyNames())) { sb.append(k);\n"
        "    for (char c : p.getProperty(k).toCharArray()) sb.append(' ').append((int) c);\n"
        "    sb.append('\\n'); }\n"
        "  System.out.print(sb); } }\n")
    dump = subprocess.run([java, str(tmp_path / "Dump.java"), str(tmp_path / "out" / "broker.conf")],
                          capture_output=True, text=True, timeout=120)
    if dump.returncode != 0 and "source" in dump.stderr.lower():
        pytest.skip("this java cannot run a source file")
    assert dump.returncode == 0, dump.stderr
    read = {}
    for line in dump.stdout.splitlines():
        key, *units = line.split(" ")
        read[key] = struct.pack(f">{len(units)}H", *map(int, units)).decode("utf-16-be")
    assert {k: read[k] for k in values} == values


@pytest.mark.parametrize("encoded", ["a%0Ab", "a%0D", "%00", "a%7F", "a%zz", "a%4"])
def test_a_control_character_or_a_broken_escape_never_reaches_the_file(tmp_path, encoded):
    # road: a newline smuggles a second setting into broker.conf
    proc = render(tmp_path, f"PULSAR_CONF_numIOThreads={encoded}%0AloadBalancerSheddingEnabled=false\n", TEMPLATE)
    assert proc.returncode == 2 and "PULSAR_CONF_numIOThreads: malformed value" in proc.stderr
    assert not (tmp_path / "out" / "broker.conf").exists()


def test_a_newline_in_another_variable_cannot_pose_as_a_setting(tmp_path):
    # the environment is read as NUL-separated entries, never line by line
    proc = render(tmp_path, "", TEMPLATE)
    env_proc = subprocess.run(
        ["bash", "-c", f'set -euo pipefail; source "{PULSAR_RUN}"; render_conf broker "$1" "$2"', "r",
         str(tmp_path / "templates"), str(tmp_path / "out")],
        env={"PATH": "/usr/bin:/bin", "OTHER": "x\nPULSAR_CONF_loadBalancerSheddingEnabled=false"},
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and env_proc.returncode == 0, env_proc.stderr
    assert "loadBalancerSheddingEnabled=true" in (tmp_path / "out" / "broker.conf").read_text()
    assert "loadBalancerSheddingEnabled=false" not in (tmp_path / "out" / "broker.conf").read_text()


def test_the_lab_writes_env_files_no_reader_can_misread_and_refuses_control_characters(tmp_path):
    from chaoslab.lab.cluster import Lab, conf_env_lines
    from chaoslab.settings import LabSettings
    lab = Lab(LabSettings())
    lab.state_dir, lab.state_path = tmp_path, tmp_path / "state.json"
    state = lab.state()
    state.broker_config["2"] = {"loadManagerClassName": "X", "note": "a #b $c 'd' \\e 100%"}
    lab._write(state)
    lines = (tmp_path / "broker-2.env").read_text().splitlines()
    assert lines == ["PULSAR_CONF_loadManagerClassName=X", "PULSAR_CONF_note=a%20%23b%20%24c%20%27d%27%20%5Ce%20100%25"]
    assert bs.env_value_decode(lines[1].partition("=")[2]) == "a #b $c 'd' \\e 100%"
    # road: a newline in a value becomes a second line (a second setting) of the env file
    for bad in ({"numIOThreads": "2\nloadBalancerSheddingEnabled=false"}, {"x": "a\rb"}, {"x": "\x00"}):
        with pytest.raises(LabError, match="one line of text"):
            conf_env_lines(bad, "broker-1")
    with pytest.raises(LabError, match="not a setting name"):
        conf_env_lines({"a\nb": "1"}, "broker-1")


@pytest.mark.parametrize("value", ["2\nloadBalancerSheddingEnabled=false", "a\rb", "\x00", "\x1b[31m", "a\u2028b"])
def test_the_schema_refuses_control_characters_in_setting_values(value):
    with pytest.raises(ValidationError, match="one line of text"):
        RollBroker(broker=1, broker_config={"numIOThreads": value})


def test_the_schema_keeps_other_values_as_written():
    step = RollBroker(broker=1, broker_config={"a": "|e touch /tmp/x", "b": True, "c": 40, "d": 0.8, "e": "caf\u00e9"})
    assert step.broker_config == {"a": "|e touch /tmp/x", "b": "true", "c": "40", "d": "0.8", "e": "caf\u00e9"}


# -- the --broker-conf file ------------------------------------------------------------------------
def test_a_broker_conf_file_that_is_not_utf8_is_one_line_spec_error(tmp_path):
    path = tmp_path / "change.conf"
    path.write_bytes(b"numIOThreads=2\nclusterName=caf\xe9\n")
    with pytest.raises(SpecError) as exc:
        gate.read_broker_conf(path)
    assert "line 2: not UTF-8 text (byte 0xe9)" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("content, message", [
    (b"numIOThreads=2\rloadBalancerSheddingEnabled=false\n", "carriage return"),
    (b"numIOThreads=2\x00\n", "NUL"),
    (b"numIOThreads=\x1b[2\n", r"U\+001B"),
    (b"numIOThreads=2\nnumIOThreads=3\n", "already set on line 1"),
    (b"num IOThreads=2\n", "expected key=value"),
])
def test_a_broker_conf_file_cannot_smuggle_or_hide_a_setting(tmp_path, content, message):
    path = tmp_path / "change.conf"
    path.write_bytes(content)
    with pytest.raises(SpecError, match=message):
        gate.read_broker_conf(path)


def test_a_broker_conf_file_is_read_as_written(tmp_path):
    path = tmp_path / "change.conf"
    path.write_bytes("\ufeff# comment\r\n  loadBalancerSheddingEnabled = false \r\n\tx=|e a&b \\1 $(id)\r\n\r\n".encode())
    assert gate.read_broker_conf(path) == {"loadBalancerSheddingEnabled": "false", "x": "|e a&b \\1 $(id)"}


# -- read back -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("requested, in_effect, ok", [
    ("false", "false", True),
    ("False", "false", True),           # Java reads booleans case-insensitively
    ("yes", "false", False),            # ... and anything else as false
    ("40", "40", True),
    ("40", "40.0", True),               # a double field
    ("0.80", "0.8", True),
    ("1e3", "1000.0", True),
    ("0.123456789", "0.12345679", True),  # a float field keeps single precision
    ("040", "40", True),
    ("40", "41", False),
    ("40", "4.0E1", True),
    (" X ", "X", True),                 # the broker trims values
    ("6650", "Optional[6650]", True),
    ("", "Optional.empty", True),
    ("a,b", "[b, a]", True),            # a set prints in hash order
    ("a, b", "[a, b]", True),
    ("a,b", "[a]", False),
    ("k=v,j=w", "{j=w, k=v}", True),
    ("", "", True),
    ("", "true", False),                # a blank value leaves the default in place
    ("org.X", "org.x", False),          # class names are exact
    ("x", None, False),                 # not reported: not shown applied
])
def test_same_setting(requested, in_effect, ok):
    assert bs.same_setting(requested, in_effect) is ok


class FakeLab(fakelab.FakeLab):
    def __init__(self, runs_with: dict):
        super().__init__()
        self.runs_with = runs_with      # what the broker reports after the roll
        self.rolled = False

    def roll(self, changes, wait=True, timeout=300):
        self.rolled = True
        super().roll(changes, wait, timeout)


def roll(monkeypatch, runs_with, version_in_effect="3.2.3", waits=True, config=None):
    ok = type("P", (), {"ok": True, "detail": "ok"})()
    monkeypatch.setattr(pulsar_steps.health, "shallow", lambda *a, **k: ok)
    monkeypatch.setattr(pulsar_steps.health, "functional", lambda *a, **k: ok)
    monkeypatch.setattr(pulsar_steps, "READ_BACK_PAUSE_SECS", 0)
    monkeypatch.setattr(pulsar_steps, "wait_for_broker",
                        lambda *a, **k: type("W", (), {"ok": waits, "secs": 1.0})())
    lab = FakeLab(runs_with)
    before = {"loadBalancerSheddingEnabled": "true", "managedLedgerDefaultEnsembleSize": "2"}

    def get_json(url, timeout=10):
        if url.endswith("/brokers/version"):
            return version_in_effect
        return (runs_with if lab.rolled else before)
    monkeypatch.setattr(pulsar_steps.http, "get_json", get_json)
    events = []
    ctx = type("Ctx", (), {})()
    ctx.lab, ctx.interrupted, ctx.aborted = lab, threading.Event(), threading.Event()
    ctx.release = lambda v: {"to": "3.2.3"}.get(v, v)
    ctx.event = lambda name, **k: events.append((name, k))
    ctx.should_stop = lambda: False
    ctx.watch = lambda secs, until_held_secs=None: True
    step = RollBroker(broker=1, broker_config=config or {"loadBalancerSheddingEnabled": False,
                                                         "managedLedgerDefaultEnsembleSize": 3}, settle_secs=0)
    return step, ctx, events


def read_backs(events):
    return [k for name, k in events if name == "change-read-back"]


def test_a_roll_whose_broker_runs_the_requested_values_is_journalled_key_by_key(monkeypatch):
    step, ctx, events = roll(monkeypatch, {"loadBalancerSheddingEnabled": "false", "managedLedgerDefaultEnsembleSize": "3"})
    out = step.run(ctx)
    assert out["ok"] and out["read_back"]["keys"]["loadBalancerSheddingEnabled"]["ok"]
    (event,) = read_backs(events)
    assert event["ok"] and event["version_in_effect"] == "3.2.3"
    assert event["keys"] == {
        "loadBalancerSheddingEnabled": {"requested": "false", "in_effect": "false", "ok": True},
        "managedLedgerDefaultEnsembleSize": {"requested": "3", "in_effect": "3", "ok": True}}


def test_a_roll_whose_broker_runs_something_else_is_change_not_applied_never_a_verdict(monkeypatch):
    # road: the setting did not take effect (ignored, overridden, mangled) and the run passes
    step, ctx, events = roll(monkeypatch, {"loadBalancerSheddingEnabled": "true", "managedLedgerDefaultEnsembleSize": "3"})
    with pytest.raises(ChangeNotApplied) as exc:
        step.run(ctx)
    assert str(exc.value) == ("broker-1: the change did not take effect: loadBalancerSheddingEnabled requested "
                              "'false', in effect 'true'")
    assert isinstance(exc.value, LabError) and exc.value.exit_code == 2  # the run ends ERROR (exit 2)
    (event,) = read_backs(events)
    assert not event["ok"] and event["keys"]["loadBalancerSheddingEnabled"] == {
        "requested": "false", "in_effect": "true", "ok": False}
    assert event["keys"]["managedLedgerDefaultEnsembleSize"]["ok"]


def test_a_key_the_broker_does_not_report_is_not_shown_applied(monkeypatch):
    step, ctx, events = roll(monkeypatch, {"managedLedgerDefaultEnsembleSize": "3"})
    with pytest.raises(ChangeNotApplied, match="loadBalancerSheddingEnabled requested 'false', the broker does not report it"):
        step.run(ctx)


def test_an_unreadable_runtime_configuration_is_change_not_applied(monkeypatch):
    # road: the read fails and the unproven change is judged anyway
    step, ctx, events = roll(monkeypatch, None)
    with pytest.raises(ChangeNotApplied, match="could not be read"):
        step.run(ctx)
    (event,) = read_backs(events)
    assert not event["ok"] and "error" in event


def test_a_broker_on_another_release_than_asked_is_change_not_applied(monkeypatch):
    step, ctx, events = roll(monkeypatch, {"loadBalancerSheddingEnabled": "false", "managedLedgerDefaultEnsembleSize": "3"},
                             version_in_effect="3.2.2")
    with pytest.raises(ChangeNotApplied, match="it runs Pulsar 3.2.2, not 3.2.3"):
        step.run(ctx)


def test_no_read_back_when_the_broker_never_passed_its_wait(monkeypatch):
    # the step already fails (ok False -> abort); an aborted or interrupted wait reads nothing back
    step, ctx, events = roll(monkeypatch, {}, waits=False)
    out = step.run(ctx)
    assert not out["ok"] and "read_back" not in out and read_backs(events) == []


def test_a_release_that_cannot_be_read_back_is_change_not_applied(monkeypatch):
    # road: /brokers/version did not answer and a version-only change was taken as applied
    step, ctx, events = roll(monkeypatch, {"loadBalancerSheddingEnabled": "false", "managedLedgerDefaultEnsembleSize": "3"},
                             version_in_effect=None)
    with pytest.raises(ChangeNotApplied, match="release in effect could not be read"):
        step.run(ctx)
