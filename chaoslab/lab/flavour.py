"""Which Pulsar images the lab runs, and how it starts and configures them: the image flavour.

- **local** (the default): the lab's own images, `chaoslab/pulsar:<release>`, built here from
  Maven jars (images.py). compose/lab.yaml starts them through their entry script `pulsar-run`,
  which renders /pulsar/conf-templates/<component>.conf with the settings of PULSAR_CONF_<key>
  variables whose values are percent-encoded, so that any one-line value arrives exactly.
- **official** (`PULSAR_IMAGE=apachepulsar/pulsar:{version}`): an image made the way Apache Pulsar's
  official one is, pulled from a registry. It has no pulsar-run; it is started with the official
  contract, written into build/lab/compose.official.yaml over compose/lab.yaml:

      sh -c 'bin/apply-config-from-env.py conf/broker.conf && exec bin/pulsar broker'

  with every setting as a `PULSAR_PREFIX_<key>=<value>` variable (the script replaces the key where
  the image's default file has it and appends it where it does not, so the lab need not know that
  file). The lab's own settings for each component (images/pulsar/conf/*.conf, the same files the
  local images start from) go first, then the service's identity (advertisedAddress), then the
  experiment's settings. Health checks are bash and curl, which the official image carries.

The official mechanism writes a value as it comes (`key=value`, stripped, read back by Java's
Properties) and the value travels through a compose env file, so a value it cannot carry exactly
is refused with a LabError before anything starts (`official_value_problem`), never altered.

The local images also honour the official contract (images/pulsar/bin/pulsar and
bin/apply-config-from-env.py): `PULSAR_IMAGE='chaoslab/pulsar:{version}'` runs the lab's own
images, built here as usual, through exactly the commands the official flavour uses.

Local-image features the official flavour goes without: class-data sharing archives and the jcmd
runtime copied in for thread dumps (a SIGQUIT dump instead), both kept when PULSAR_IMAGE names the
lab's own images, and the in-image note about setting names the release does not have (the lab
still checks names against the release's jars, from Maven, before anything starts).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from chaoslab.errors import LabError, UnknownPulsarVersion
from chaoslab.settings import REPO_ROOT, VERSION_RE, LabSettings, check_image_template, check_version

CONF_DIR = REPO_ROOT / "images" / "pulsar" / "conf"
COMPOSE_FILE = REPO_ROOT / "compose" / "lab.yaml"
OVERRIDE_NAME = "compose.official.yaml"
LOCAL_IMAGE = "chaoslab/pulsar:{version}"
PREFIX = "PULSAR_PREFIX_"

# component -> (the lab's settings for it in images/pulsar/conf, the file the official image reads)
CONF_FILES = {
    "zookeeper": ("zookeeper.conf", "conf/zookeeper.conf"),
    "bookie": ("bookie.conf", "conf/bookkeeper.conf"),
    "broker": ("broker.conf", "conf/broker.conf"),
    "proxy": ("proxy.conf", "conf/proxy.conf"),
}
# the JVM shape pulsar-run gives every component (its `jvm`), for the official bin/pulsar
OFFICIAL_GC = "-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k"
INIT_MEM = "-Xmx128m"
LOCAL_ONLY = ("class-data sharing archives", "the jcmd runtime for thread dumps (SIGQUIT dumps instead)",
              "the in-image note on unknown broker settings (names are still checked from the release's jars)")

_SETTING_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_TEMPLATE_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_.]*)=(.*)$")


def template_settings(component: str) -> dict[str, str]:
    """The lab's settings for `component` (images/pulsar/conf/<file>), in file order."""
    path = CONF_DIR / CONF_FILES[component][0]
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        m = _TEMPLATE_LINE.match(line)
        if not m or "\\" in line:   # plain key=value only: nothing Properties would read otherwise
            raise LabError(f"{path.relative_to(REPO_ROOT)}, line {n}: expected a plain key=value line")
        out[m.group(1)] = m.group(2)
    return out


# -- values through the official mechanism ------------------------------------------------------------
def official_value_problem(value: str) -> str | None:
    """Why `value` cannot reach a component exactly as PULSAR_PREFIX_<key>=<value> in a compose env
    file, through apply-config-from-env.py (which writes `key=value`, stripped) and Java's
    Properties (which reads the file as ISO-8859-1 and takes a backslash as an escape); None when
    it can."""
    from chaoslab.lab.broker_settings import control_character
    where = control_character(value)
    if where:
        return f"it has {where} (a line break would write a second setting)"
    for i, c in enumerate(value):
        if ord(c) > 126:
            return f"it has the non-ASCII character {c!r} at position {i} (the script writes UTF-8, Pulsar reads ISO-8859-1)"
        if c == "\\":
            return f"it has a backslash at position {i} (Java's Properties would read it as an escape)"
        if c in "#$":
            return f"it has {c!r} at position {i} (a compose env file cuts a value at '#' and expands '$')"
    if value[:1] in ("'", '"'):
        return "it starts with a quote (a compose env file would take it as quoting)"
    if value != value.strip():
        return "it starts or ends with a space (the script strips it)"
    return None


def official_env_lines(conf: dict[str, str], who: str) -> str:
    """PULSAR_PREFIX_<key>=<value> lines for a container's env file, in the order given; LabError
    for a key that is not a setting name or a value the official mechanism cannot carry exactly."""
    lines = []
    for key, value in conf.items():
        value = str(value)
        if not _SETTING_KEY.match(key):
            raise LabError(f"setting {key!r} for {who}: not a setting name")
        problem = official_value_problem(value)
        if problem:
            raise LabError(f"setting {key}={value!r} for {who}: the official image's apply-config-from-env.py "
                           f"cannot pass it exactly: {problem}. The lab's own images can (unset PULSAR_IMAGE)")
        lines.append(f"{PREFIX}{key}={value}\n")
    return "".join(lines)


def local_env_lines(conf: dict[str, str], who: str) -> str:
    """PULSAR_CONF_<key>=<value> lines for a container's env file. Values are percent-encoded
    (broker_settings.env_value: pulsar-run decodes them and writes them literally), so nothing in
    a value can be read as an env-file comment, variable, quote or line; a key that is not a plain
    name or a value with a control character is refused here as well as in the spec."""
    from chaoslab.lab.broker_settings import control_character, env_value
    lines = []
    for key, value in sorted(conf.items()):
        value = str(value)
        if not _SETTING_KEY.match(key):
            raise LabError(f"setting {key!r} for {who}: not a setting name")
        where = control_character(value)
        if where:
            raise LabError(f"setting {key} for {who}: the value must be one line of text; it has {where}")
        lines.append(f"PULSAR_CONF_{key}={env_value(value)}\n")
    return "".join(lines)


# -- the flavours ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LocalFlavour:
    """The lab's own images, started through pulsar-run (compose/lab.yaml as it stands)."""
    name = "local"
    template = LOCAL_IMAGE

    def image(self, release: str) -> str:
        return self.template.format(version=release)

    @property
    def builds_locally(self) -> bool:
        return True

    def describe(self) -> str:
        return "the lab's own images (chaoslab/pulsar:<release>, built here)"

    def compose_files(self, state_dir: Path) -> list[Path]:
        return [COMPOSE_FILE]

    def env_files(self, settings: LabSettings, state) -> dict[str, str]:
        """{file name in the state folder: content}: each broker's and the proxy's settings."""
        files = {f"broker-{n}.env": local_env_lines(state.broker_config.get(str(n), {}), f"broker-{n}")
                 for n in range(1, settings.brokers + 1)}
        files["proxy.env"] = local_env_lines(state.proxy_config, "the proxy")
        return files

    def override(self, settings: LabSettings, state, state_dir: Path) -> dict | None:
        return None

    def check_release(self, release: str, components: tuple[str, ...] = ("broker",)) -> None:
        from chaoslab.lab.releases import check_release_resolves
        check_release_resolves(release, components)


@dataclass(frozen=True)
class OfficialFlavour:
    """Images made like Apache Pulsar's official one (PULSAR_IMAGE), started with its contract."""
    template: str
    name = "official"

    def image(self, release: str) -> str:
        return self.template.replace("{version}", release)

    @property
    def builds_locally(self) -> bool:
        """True when the template names the lab's own images (built here, not pulled)."""
        return self.template == LOCAL_IMAGE

    def describe(self) -> str:
        return f"{self.template} through the official image's contract"

    def compose_files(self, state_dir: Path) -> list[Path]:
        return [COMPOSE_FILE, state_dir / OVERRIDE_NAME]

    # -- settings ------------------------------------------------------------------------------------
    def service_settings(self, service: str, state) -> dict[str, str]:
        """Every setting `service` starts with: the lab's for its component, its identity, then
        the experiment's (each later one wins)."""
        component = re.sub(r"-\d+$", "", service)
        conf = dict(template_settings(component))
        if component in ("bookie", "broker"):
            conf["advertisedAddress"] = service   # what pulsar-run gives them: their host name
        m = re.fullmatch(r"broker-(\d+)", service)
        user = state.broker_config.get(m.group(1), {}) if m else state.proxy_config if service == "proxy" else {}
        for key in sorted(user):
            conf.pop(key, None)   # the experiment's keys last, in name order
            conf[key] = str(user[key])
        return conf

    def services(self, settings: LabSettings) -> list[str]:
        return ["zookeeper", *(f"bookie-{n}" for n in range(1, settings.bookies + 1)),
                *settings.broker_names, "proxy"]

    def env_files(self, settings: LabSettings, state) -> dict[str, str]:
        """{file name in the state folder: content}: every Pulsar service's settings."""
        who = {"proxy": "the proxy"}
        return {f"{s}.env": official_env_lines(self.service_settings(s, state), who.get(s, s))
                for s in self.services(settings)}

    # -- commands ------------------------------------------------------------------------------------
    def command(self, service: str, state, settings: LabSettings) -> str:
        """The shell command (for `sh -c`) that starts `service` the official way."""
        component = re.sub(r"-\d+$", "", service)
        if component == "pulsar-init":
            return "exec bin/pulsar initialize-cluster-metadata " + shlex.join(self.init_args(settings))
        conf_file = CONF_FILES[component][1]
        steps = [f"bin/apply-config-from-env.py {conf_file}"]
        if component == "broker":
            # /status.html answers only while statusFilePath exists (pulsar-run touches it too)
            status = self.service_settings(service, state).get("statusFilePath", "").strip()
            if status:
                steps.append(f"touch {shlex.quote(status)}")
        steps.append(f"exec bin/pulsar {component}")
        return " && ".join(steps)

    def init_args(self, settings: LabSettings) -> list[str]:
        """PulsarClusterMetadataSetup's arguments: the lab's cluster, metadata store and brokers."""
        broker = template_settings("broker")
        web, service = broker["webServicePort"], broker["brokerServicePort"]
        names = settings.broker_names
        return ["--cluster", settings.cluster,
                "--metadata-store", broker["metadataStoreUrl"],
                "--configuration-metadata-store", broker["configurationMetadataStoreUrl"],
                "--web-service-url", ",".join(f"http://{b}:{web}" for b in names),
                "--broker-service-url", ",".join(f"pulsar://{b}:{service}" for b in names),
                "--initial-num-stream-storage-containers", "0"]

    def healthcheck(self, component: str) -> str:
        """A bash command that succeeds when `component` is ready: the checks pulsar-run makes,
        with bash's /dev/tcp for open ports and curl for HTTP (both in the official image)."""
        if component == "zookeeper":
            port = template_settings("zookeeper")["clientPort"]
            return f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo ruok >&3 && timeout 2 cat <&3 | grep -q imok"
        if component == "bookie":
            conf = template_settings("bookie")
            return (f"exec 3<>/dev/tcp/127.0.0.1/{conf['bookiePort']} && curl -sf --max-time 5 -o /dev/null "
                    f"http://localhost:{conf['prometheusStatsHttpPort']}/metrics")
        if component == "broker":
            web = template_settings("broker")["webServicePort"]
            return (f"curl -sf --max-time 3 -o /dev/null http://localhost:{web}/status.html "
                    f"&& curl -sf --max-time 20 -o /dev/null http://localhost:{web}/admin/v2/brokers/health")
        if component == "proxy":
            conf = template_settings("proxy")
            return (f"exec 3<>/dev/tcp/127.0.0.1/{conf['servicePort']} && curl -sf --max-time 5 -o /dev/null "
                    f"http://localhost:{conf['webServicePort']}/metrics/")
        raise LabError(f"no health check for {component}")

    def override(self, settings: LabSettings, state, state_dir: Path) -> dict:
        """The compose file laid over compose/lab.yaml: per Pulsar service, the official contract's
        command, health check and env file (intervals, ports, limits stay compose/lab.yaml's)."""
        services = {"pulsar-init": {
            "entrypoint": ["/bin/sh", "-c"], "command": [self.command("pulsar-init", state, settings)],
            "environment": {"PULSAR_MEM": INIT_MEM, "PULSAR_GC": OFFICIAL_GC}}}
        for service in self.services(settings):
            component = re.sub(r"-\d+$", "", service)
            entry = {"entrypoint": ["/bin/sh", "-c"], "command": [self.command(service, state, settings)],
                     "environment": {"PULSAR_GC": OFFICIAL_GC},
                     "healthcheck": {"test": ["CMD", "bash", "-c", self.healthcheck(component)]}}
            if component in ("zookeeper", "bookie"):   # compose/lab.yaml names the brokers' and the proxy's
                entry["env_file"] = [{"path": str(state_dir / f"{service}.env"), "required": True}]
            services[service] = entry
        return {"services": _compose_escaped(services)}

    def check_release(self, release: str, components: tuple[str, ...] = ("broker",)) -> None:
        """What can be said without an engine: a release number (a labelled release or a build
        supplied with PULSAR_DIST_<release> runs on the local images only). Whether the image
        exists is asked by ComposeLab.check_releases."""
        from chaoslab.lab import supplied
        check_version(release)
        if self.builds_locally:
            from chaoslab.lab.releases import check_release_resolves
            check_release_resolves(release, components)
            return
        if supplied.supplied_path(release) is not None or not VERSION_RE.match(release):
            raise UnknownPulsarVersion(
                f"Pulsar {release}: a build supplied with {supplied.env_name(release)} runs on the lab's own images; "
                f"with PULSAR_IMAGE={self.template} the lab runs {self.image(release)} (unset one of the two)")


def _compose_escaped(value):
    """`value` with every '$' written '$$' (compose would read '$' as one of its variables)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_compose_escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _compose_escaped(v) for k, v in value.items()}
    return value


Flavour = LocalFlavour | OfficialFlavour


def flavour_of(settings: LabSettings) -> Flavour:
    """The flavour the settings ask for: official when PULSAR_IMAGE is set, else local."""
    return OfficialFlavour(check_image_template(settings.pulsar_image)) if settings.pulsar_image else LocalFlavour()
