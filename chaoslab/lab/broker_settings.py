"""The broker settings a Pulsar release has, and proof that a change under test took effect.

Pulsar ignores a broker.conf key it does not know, so a misspelt setting would leave the broker
exactly as it was and the change would be judged without having been made. Three defences:

- **Which keys exist.** The settings of a release are the field names of its broker
  configuration class (`org.apache.pulsar.broker.ServiceConfiguration`, in
  `pulsar-broker-common-<v>.jar`): every declared non-static field, except the raw
  `java.util.Properties` holder. They are read from the release's own jar when its classpath is
  assembled (pulsar_dist.resolve), stored as build/pulsar/<v>/broker-settings.txt and copied
  into its image as /pulsar/broker-settings.txt. `check_broker_settings` refuses any other key
  (UnknownSetting, exit 2) and names the closest real one.
- **Values travel literally.** A value goes into the broker's env file percent-encoded
  (`env_value`), so no env-file dialect can cut it at `#`, expand a `$`, strip quotes or trim
  spaces; pulsar-run decodes it and writes it into broker.conf without a shell or sed ever
  interpreting it. Control characters are refused before that (`control_character`).
- **Read back.** After a roll, the broker's runtime configuration is compared key by key with
  what was asked (`read_back`); a difference is ChangeNotApplied, so the run ends ERROR.

The class file is read here directly (its constant pool and field table), so no JDK is needed
on the host; `javap -p` shows the same field list.
"""

from __future__ import annotations

import difflib
import io
import re
import struct
import zipfile
from pathlib import Path

from chaoslab.errors import LabError, UnknownSetting
from chaoslab.settings import REPO_ROOT, check_version

CONFIG_CLASS = "org/apache/pulsar/broker/ServiceConfiguration"
# the broker.conf every lab broker starts from (pulsar-run adds PULSAR_CONF_<key> lines over it)
IMAGE_BROKER_CONF = REPO_ROOT / "images" / "pulsar" / "conf" / "broker.conf"
SETTINGS_FILE = "broker-settings.txt"
# declared fields of the configuration class that are not settings: the raw property bag the
# loader keeps beside the typed fields
NOT_SETTINGS_TYPES = ("Ljava/util/Properties;",)
_ACC_STATIC, _ACC_SYNTHETIC = 0x0008, 0x1000


# -- reading the field names out of the release ---------------------------------------------------
def class_fields(data: bytes) -> list[tuple[str, str, int]]:
    """(name, descriptor, access flags) of every field a Java class file declares, in order."""
    buf = io.BytesIO(data)

    def read(fmt: str):
        size = struct.calcsize(fmt)
        chunk = buf.read(size)
        if len(chunk) != size:
            raise ValueError("truncated class file")
        return struct.unpack(fmt, chunk)

    magic, _minor, _major, count = read(">IHHH")
    if magic != 0xCAFEBABE:
        raise ValueError("not a Java class file")
    utf8: dict[int, str] = {}
    # constant pool entry sizes after the tag byte (Utf8 is variable; Long and Double take two slots)
    sizes = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2, 17: 4, 18: 4, 19: 2, 20: 2}
    i = 1
    while i < count:
        (tag,) = read(">B")
        if tag == 1:
            (length,) = read(">H")
            raw = buf.read(length)
            if len(raw) != length:
                raise ValueError("truncated class file")
            utf8[i] = raw.decode("utf-8", errors="replace")   # field names are plain ASCII
        elif tag in sizes:
            buf.read(sizes[tag])
        else:
            raise ValueError(f"unknown constant pool tag {tag}")
        i += 2 if tag in (5, 6) else 1
    _access, _this, _super, n_interfaces = read(">HHHH")
    buf.read(2 * n_interfaces)
    (n_fields,) = read(">H")
    fields = []
    for _ in range(n_fields):
        access, name, descriptor, n_attributes = read(">HHHH")
        for _ in range(n_attributes):
            _attr_name, attr_length = read(">HI")
            buf.read(attr_length)
        fields.append((utf8[name], utf8[descriptor], access))
    return fields


def settings_of_class(data: bytes) -> list[str]:
    """The setting names a configuration class file declares (see the module docstring)."""
    return [name for name, descriptor, access in class_fields(data)
            if not access & (_ACC_STATIC | _ACC_SYNTHETIC) and descriptor not in NOT_SETTINGS_TYPES]


_JAVAP_FIELD = re.compile(r"^\s+(?:(?:public|protected|private|final|transient|volatile)\s+)*"
                          r"(?P<type>[\w.$<>\[\], ?]+?)\s+(?P<name>[\w$]+);$")


def settings_of_javap(text: str) -> list[str]:
    """The same list from `javap -p <class>` output (for a cross-check, or a host with a JDK)."""
    out = []
    for line in text.splitlines():
        if "(" in line or re.search(r"\bstatic\b", line):
            continue
        m = _JAVAP_FIELD.match(line)
        if m and m.group("type") != "java.util.Properties":
            out.append(m.group("name"))
    return out


def broker_common_jar(lib: Path, version: str) -> Path | None:
    """pulsar-broker-common-<version>.jar as Maven names it; in a distribution's lib/
    org.apache.pulsar-pulsar-broker-common-<version>.jar; in a supplied build labelled
    X.Y.Z-label, the one broker-common jar of X.Y.Z (or the only one there is)."""
    from chaoslab.settings import release_number
    for name in (f"pulsar-broker-common-{version}.jar", f"org.apache.pulsar-pulsar-broker-common-{version}.jar"):
        if (lib / name).is_file():
            return lib / name
    if release_number(version) != version:
        found = sorted(lib.glob(f"*pulsar-broker-common-{release_number(version)}*.jar"))
        found = found or sorted(lib.glob("*pulsar-broker-common-*.jar"))
        if len(found) == 1:
            return found[0]
    return None


def extract_settings(jar: Path) -> list[str]:
    """The setting names of the broker configuration class in `jar`."""
    try:
        with zipfile.ZipFile(jar) as z:
            data = z.read(CONFIG_CLASS + ".class")
        names = settings_of_class(data)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise LabError(f"cannot read the broker settings from {jar.name}: {exc}") from None
    if not names:
        raise LabError(f"{jar.name}: {CONFIG_CLASS.replace('/', '.')} declares no settings")
    return names


def write_settings_file(dist: Path, version: str) -> Path:
    """build/pulsar/<v>/broker-settings.txt from the assembled jars (one name a line, sorted)."""
    jar = broker_common_jar(dist / "lib", version)
    if jar is None:
        raise LabError(f"Pulsar {version}: no pulsar-broker-common jar of that release in {dist / 'lib'}; "
                       "its broker settings cannot be listed")
    names = sorted(set(extract_settings(jar)))
    path = dist / SETTINGS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{n}\n" for n in names))
    tmp.replace(path)
    return path


def read_settings_file(path: Path) -> set[str] | None:
    try:
        names = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except OSError:
        return None
    return names or None


def known_broker_settings(version: str, resolve: bool = False, log=print) -> set[str] | None:
    """The setting names of Pulsar `version`'s broker, or None when they are not at hand.

    From build/pulsar/<v>/broker-settings.txt; made on demand from the assembled jars when only
    those are there; with resolve=True the classpath is assembled first (Maven, on a cold machine
    minutes; no container engine needed)."""
    from chaoslab.lab import pulsar_dist
    check_version(version)
    dist = pulsar_dist.classpath_dir(version)
    names = read_settings_file(dist / SETTINGS_FILE)
    if names is not None:
        return names
    if broker_common_jar(dist / "lib", version) is None:
        if not resolve:
            return None
        pulsar_dist.resolve(version, ("broker",), log=log)
    if not (dist / SETTINGS_FILE).exists():
        write_settings_file(dist, version)
    return read_settings_file(dist / SETTINGS_FILE)


def closest_setting(key: str, known: set[str]) -> str | None:
    """The real setting a mistyped key most likely meant (case differences first)."""
    by_case = [k for k in known if k.lower() == key.lower()]
    if by_case:
        return sorted(by_case)[0]
    lowered = {k.lower(): k for k in sorted(known)}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


def unknown_settings(settings, known: set[str]) -> list[str]:
    return [k for k in settings if k not in known]


def describe_unknown(version: str, keys: list[str], known: set[str]) -> str:
    parts = []
    for key in keys:
        near = closest_setting(key, known)
        parts.append(f"'{key}' is not a setting of Pulsar {version}" + (f" (closest: {near})" if near else ""))
    return "; ".join(parts) + " - Pulsar would ignore it and the change would not be made"


def check_broker_settings(version: str, settings, resolve: bool = True, log=print) -> None:
    """UnknownSetting (exit 2) naming each key of `settings` that Pulsar `version`'s broker does
    not have, and the closest real key; LabError when the release's settings cannot be listed."""
    if not settings:
        return
    known = known_broker_settings(version, resolve=resolve, log=log)
    if known is None:
        raise LabError(f"the broker settings of Pulsar {version} are not known yet (its classpath is not "
                       "assembled): the keys cannot be checked")
    unknown = unknown_settings(settings, known)
    if unknown:
        raise UnknownSetting(describe_unknown(version, unknown, known))


def conf_file_settings(path: Path = IMAGE_BROKER_CONF) -> dict[str, str]:
    """The key=value lines of a .conf file (comments and blank lines left out): for the image's
    broker.conf, the settings a lab broker has before an experiment sets any ({} when unreadable)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


# -- carrying values through the env file -----------------------------------------------------------
# Bytes every env-file reader passes through unchanged: no `#` (comment), `$` (interpolation),
# quotes, backslash, spaces. Everything else goes as %XX (UTF-8 bytes), which pulsar-run decodes.
_ENV_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.,:/@+=-")


# Control characters (C0, DEL, C1, line and paragraph separators) and lone surrogates: a newline
# would smuggle a second line into a broker's env file or broker.conf, the others have no use in a
# setting and are mangled on the way. Nothing else in a value is special anywhere.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def control_character(value: str) -> str | None:
    """How to name the first control character in `value` (None: there is none)."""
    m = _CONTROL.search(value)
    if not m:
        return None
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL"}
    kind = "an unpaired surrogate" if 0xD800 <= ord(m.group()) <= 0xDFFF else "the control character"
    return names.get(m.group(), f"{kind} U+{ord(m.group()):04X}") + f" at position {m.start()}"


def env_value(value: str) -> str:
    """`value` percent-encoded for a PULSAR_CONF_<key>=... line (pulsar-run decodes it)."""
    return "".join(chr(b) if b in _ENV_SAFE else f"%{b:02X}" for b in value.encode("utf-8"))


def env_value_decode(text: str) -> str:
    """The inverse of env_value (what pulsar-run does), for tests and for reading env files."""
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == "%":
            if not re.fullmatch(r"[0-9A-Fa-f]{2}", text[i + 1:i + 3]):
                raise ValueError(f"bad percent escape at {i} in {text!r}")
            out.append(int(text[i + 1:i + 3], 16))
            i += 3
        else:
            out += text[i].encode()
            i += 1
    return out.decode("utf-8")


# -- read-back: is the requested value the one in effect? ----------------------------------------
_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_INTEGER = re.compile(r"^[+-]?\d+$")


def _float32(x: float) -> float | None:
    try:
        return struct.unpack(">f", struct.pack(">f", x))[0]
    except (OverflowError, struct.error):
        return None


def _items(text: str, sep: str) -> list[str]:
    return [x.strip() for x in text.split(sep) if x.strip()]


def same_setting(requested: str, in_effect: str | None) -> bool:
    """Whether the broker runs with `requested`, given the value its runtime configuration
    reports (`String.valueOf` of the field; "" for null; None: not reported at all).

    Explicit rules, nothing else:
    - not reported: not in effect;
    - the requested value is compared trimmed (the broker trims every value before parsing it);
    - the same text: in effect;
    - `Optional[x]` / `Optional.empty` are compared as x / "";
    - booleans: true/false in any case (Java reads booleans case-insensitively);
    - numbers: equal as integers when both are integers, else as doubles, or as floats when the
      field is single precision (`40` vs `40.0`, `0.8` vs `0.8`, `1e3` vs `1000.0`);
    - lists, sets and maps (`[a, b]`, `{k=v}`): the same items, in any order (a set prints in
      hash order), against the comma-separated items asked for.
    """
    if in_effect is None:
        return False
    r, e = requested.strip(), str(in_effect)
    if r == e:
        return True
    if e.startswith("Optional[") and e.endswith("]"):
        e = e[len("Optional["):-1]
    elif e == "Optional.empty":
        e = ""
    if r == e:
        return True
    if r.lower() in ("true", "false") and e in ("true", "false"):
        return r.lower() == e
    if _NUMBER.match(r) and _NUMBER.match(e):
        if _INTEGER.match(r) and _INTEGER.match(e):
            return int(r) == int(e)
        fr, fe = float(r), float(e)
        return fr == fe or (_float32(fr) is not None and _float32(fr) == _float32(fe))
    if len(e) >= 2 and (e[0], e[-1]) in (("[", "]"), ("{", "}")):
        want, have = _items(r, ","), _items(e[1:-1], ", ")
        return want == have or sorted(want) == sorted(have)
    return False


def read_back(requested: dict[str, str], runtime) -> dict[str, dict]:
    """Per requested key: {requested, in_effect, ok}, from the broker's runtime configuration
    (a dict; anything else means it could not be read: every key is then not ok)."""
    runtime = runtime if isinstance(runtime, dict) else {}
    out = {}
    for key, value in requested.items():
        have = runtime.get(key)
        have = None if have is None else str(have)
        out[key] = {"requested": str(value), "in_effect": have, "ok": same_setting(str(value), have)}
    return out


def not_applied(keys: dict[str, dict]) -> str | None:
    """One line naming each key whose requested value is not in effect (None: all are)."""
    bad = [f"{k} requested {v['requested']!r}, "
           + ("the broker does not report it" if v["in_effect"] is None else f"in effect {v['in_effect']!r}")
           for k, v in keys.items() if not v["ok"]]
    return "; ".join(bad) if bad else None
