"""`chaoslab doctor [FILE...]`: can this machine run the lab? Nothing is started or changed.

Each check is a small function registered with `@check`; it gets a Context (the lab's settings,
the experiment files named, where cgroups and /proc are, the engine client once asked) and
returns Findings: {check, ok, detail, fix, fatal}. A problem is one line with its fix; `fatal`
means the lab cannot run here at all (exit 2); anything else is a warning (exit 0). The host's
figures come from psutil, the engine's from its API, the tools' from running them with
`--version`; tests/unit/test_doctor.py replaces each of those with a fake.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import yaml

from chaoslab.errors import LabError
from chaoslab.settings import BUILD_DIR, REPO_ROOT, RUNS_DIR, LabSettings

DEFAULT_FILE = str(REPO_ROOT / "experiments" / "transfer-shedder.yaml")
COMPOSE_FILE = REPO_ROOT / "compose" / "lab.yaml"
PULSAR_RUN = REPO_ROOT / "images" / "pulsar" / "pulsar-run"
ENGINE_TIMEOUT_SECS = 5
TOOL_TIMEOUT_SECS = 30
# compose/lab.yaml's env_file entries with `required: false` need Compose 2.24 or newer
COMPOSE_MIN = (2, 24)
# what the hypervisor groups never take (chaoslab/workload/vm_agents.py RESERVED_FOR_LAB_BYTES)
RESERVED_BESIDE_HYPERVISORS = 6 * 2**30
GiB = 2**30


@dataclass
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""
    fatal: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def engine_client():
    """A docker client that answers (asked with a short timeout), or the client library's error."""
    import docker
    client = docker.from_env(timeout=ENGINE_TIMEOUT_SECS)
    client.ping()
    return client


@dataclass
class Context:
    files: list[str] = field(default_factory=lambda: [DEFAULT_FILE])
    offline: bool = False
    settings: LabSettings | None = None
    cgroup_root: Path = Path("/sys/fs/cgroup")
    proc: Path = Path("/proc")
    compose_file: Path = COMPOSE_FILE
    _client: object = None
    _engine_error: str | None = None
    _asked: bool = False
    _experiments: list | None = None

    def __post_init__(self):
        if self.settings is None:
            self.settings = LabSettings.from_env()

    def client(self):
        """The engine's client, or None (engine_error() says why). Asked once."""
        if not self._asked:
            self._asked = True
            try:
                self._client = engine_client()
            except Exception as exc:   # DockerException, connection refused, a missing socket
                self._engine_error = " ".join((str(exc).splitlines() or [type(exc).__name__])[0].split())[:200]
        return self._client

    def engine_error(self) -> str | None:
        self.client()
        return self._engine_error

    def experiments(self) -> list[tuple[str, object, str | None]]:
        """(file, Experiment or None, its one-line error) for every file named."""
        if self._experiments is None:
            from chaoslab.spec.experiment import load
            self._experiments = []
            for f in self.files:
                try:
                    self._experiments.append((f, load(f), None))
                except LabError as exc:
                    self._experiments.append((f, None, str(exc)))
        return self._experiments

    def needs(self) -> set[str]:
        """The lab-driver capabilities the named experiments' steps and workloads need, and
        "io-budget" for VMs in hypervisors with a disk-read budget."""
        out = set()
        for _f, exp, _err in self.experiments():
            for v in exp.variants if exp else []:
                plan = exp.plan(v)
                for item in [*plan.steps(), plan.workload]:
                    out |= item.needs()
                if getattr(getattr(plan.workload, "hypervisors", None), "read_mib_per_sec", None):
                    out.add("io-budget")
        return out

    def image_missing(self, tag: str) -> bool | None:
        """Whether the engine lacks `tag` (None: no engine to ask)."""
        client = self.client()
        if client is None:
            return None
        try:
            client.images.get(tag)
            return False
        except Exception:
            return True


CHECKS: list = []


def check(fn):
    """Register a check: fn(ctx) -> Finding or [Finding]; run in the order registered."""
    CHECKS.append(fn)
    return fn


def run_checks(ctx: Context, checks: list | None = None) -> list[Finding]:
    out: list[Finding] = []
    for fn in CHECKS if checks is None else checks:
        try:
            found = fn(ctx)
        except Exception as exc:   # a check that breaks says so and the others still run
            found = Finding(fn.__name__, False, f"the check itself failed: {type(exc).__name__}: {exc}"[:240])
        out += found if isinstance(found, list) else [found]
    return out


def exit_code(findings: list[Finding]) -> int:
    return 2 if any(f.fatal and not f.ok for f in findings) else 0


def _run(argv: list[str]) -> tuple[int, str]:
    """A tool's exit code and its first non-empty output line (stdout, else stderr)."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECS)
    except FileNotFoundError:
        return 127, "not found"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 126, str(exc)[:160]
    text = re.sub(r"\x1b\[[0-9;]*m", "", (proc.stdout or "").strip() or (proc.stderr or "").strip())
    return proc.returncode, next((line.strip() for line in text.splitlines() if line.strip()), "")


# -- the engine and compose --------------------------------------------------------------------------
@check
def engine(ctx: Context) -> Finding:
    client = ctx.client()
    if client is None:
        return Finding("engine", False, f"no container engine answers ({ctx.engine_error()})",
                       "start the engine (dockerd), or run 'make setup' as root on Debian to install and start it",
                       fatal=True)
    version = client.version()
    info = client.info()
    return Finding("engine", True, f"engine: {version.get('Platform', {}).get('Name') or 'engine'} {version.get('Version')} "
                                   f"answers (API {version.get('ApiVersion')}); cgroup v{info.get('CgroupVersion', '?')}, "
                                   f"driver {info.get('CgroupDriver', '?')}, storage {info.get('Driver', '?')}")


def compose_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


@check
def compose(ctx: Context) -> Finding:
    code, line = _run(["docker", "compose", "version", "--short"])
    version = compose_version(line) if code == 0 else None
    if version is None:
        return Finding("compose", False, f"'docker compose' (v2) does not answer ({line or f'exit {code}'})",
                       "install the Compose v2 plugin (make setup does it as root on Debian)", fatal=True)
    if version[0] < 2 or version[:2] < COMPOSE_MIN:
        return Finding("compose", False, f"compose {line} is older than {'.'.join(map(str, COMPOSE_MIN))}, which "
                                         "compose/lab.yaml needs (env_file entries with `required: false`)",
                       "install Compose v2.24 or newer", fatal=True)
    return Finding("compose", True, f"compose {line}")


# -- cgroups -----------------------------------------------------------------------------------------
# controller -> (what needs it, the driver capability of the steps that need it; None: every lab)
CONTROLLERS = {
    "freezer": ("the pause step (slow-service pause_secs) cannot run", "pause"),
    "cpu": ("the CPU cap (slow-service cpus, VM cpu shares) cannot be set", "cpu-quota"),
    "io": ("the hypervisors' disk-read budgets (vm-agents hypervisors read_mib_per_sec) cannot be set", "io-budget"),
    "memory": ("the lab's memory caps (RabbitMQ 1 GiB, VMs 256/512 MiB, hypervisor budgets) would not hold", None),
}


def cgroup_controllers(root: Path, proc: Path) -> tuple[int, dict[str, bool]]:
    """(cgroup version, {freezer, cpu, io, memory: usable}) of this host."""
    if (root / "cgroup.controllers").exists():   # v2: one tree; the freezer is cgroup.freeze in every child
        try:
            have = set((root / "cgroup.controllers").read_text().split())
        except OSError:
            have = set()
        freezer = any(root.glob("*/cgroup.freeze"))
        return 2, {"freezer": freezer, "cpu": "cpu" in have, "io": "io" in have, "memory": "memory" in have}
    enabled = {}
    try:
        for line in (proc / "cgroups").read_text().splitlines():
            parts = line.split()
            if len(parts) == 4 and not line.startswith("#"):
                enabled[parts[0]] = parts[3] == "1"
    except OSError:
        pass

    def mounted(name: str, probe: str | None = None) -> bool:
        d = root / name
        return enabled.get(name, False) and d.is_dir() and (probe is None or (d / probe).exists())
    return 1, {"freezer": mounted("freezer"), "cpu": mounted("cpu", "cpu.cfs_quota_us"),
               "io": mounted("blkio"), "memory": mounted("memory")}


@check
def cgroups(ctx: Context) -> list[Finding]:
    version, have = cgroup_controllers(ctx.cgroup_root, ctx.proc)
    needs = ctx.needs()
    out = [Finding("cgroup", True, f"cgroup v{version}: "
                                   + ", ".join(f"{'blkio' if c == 'io' and version == 1 else c} "
                                               f"{'yes' if ok else 'no'}" for c, ok in have.items()))]
    for name, usable in have.items():
        if usable:
            continue
        what, capability = CONTROLLERS[name]
        shown = "blkio" if name == "io" and version == 1 else name
        fix = (f"mount it (mount -t cgroup -o {shown} cgroup {ctx.cgroup_root / shown}) or use a host with cgroup v2"
               if version == 1 else f"enable it (+{name} in {ctx.cgroup_root / 'cgroup.subtree_control'}) or use "
                                    "another host")
        fatal = capability is None or capability in needs
        named = " (an experiment named here needs it)" if capability in needs else ""
        out.append(Finding(f"cgroup {shown}", False, f"cgroup controller {shown} missing: {what}{named}", fix,
                           fatal=fatal))
    return out


# -- memory ------------------------------------------------------------------------------------------
def _mib(text: str) -> int | None:
    m = re.fullmatch(r"(\d+)([kKmMgG])?[bB]?", str(text).strip())
    if not m:
        return None
    n, unit = int(m.group(1)), (m.group(2) or "").lower()
    return {"k": n // 1024, "m": n, "g": n * 1024}.get(unit, n // 2**20)


def jvm_mib(options: str) -> int | None:
    """Heap plus direct memory a JVM may take (-Xmx and -XX:MaxDirectMemorySize, which defaults to
    the heap's size), in MiB."""
    heap = re.search(r"-Xmx(\d+[kKmMgG]?)", options or "")
    if not heap:
        return None
    direct = re.search(r"-XX:MaxDirectMemorySize=(\d+[kKmMgG]?)", options)
    h = _mib(heap.group(1))
    return h + (_mib(direct.group(1)) if direct else h)


def lab_memory_caps(compose_file: Path, settings: LabSettings, pulsar_run: Path = PULSAR_RUN) -> dict[str, int]:
    """MiB per service of the lab as `make up` starts it (Pulsar, one RabbitMQ node, PICO_VMS /
    NANO_VMS VMs): a container's mem_limit where compose/lab.yaml sets one, else its JVM's heap
    and direct memory (PULSAR_MEM, else pulsar-run's default). One-shot jobs are left out."""
    doc = yaml.safe_load(compose_file.read_text()) or {}
    m = re.search(r"PULSAR_MEM:-([^}]*)\}", pulsar_run.read_text()) if pulsar_run.exists() else None
    default_jvm = m.group(1) if m else ""
    out = {}
    for name, svc in (doc.get("services") or {}).items():
        profiles = svc.get("profiles") or []
        if "rabbitmq-cluster" in profiles or svc.get("command") == ["init-cluster"]:
            continue
        count = {"vm-pico": settings.pico_vms, "vm-nano": settings.nano_vms}.get(name, 1)
        if not count:
            continue
        env = svc.get("environment") or {}
        limit = _mib(svc["mem_limit"]) if svc.get("mem_limit") else None
        if limit is None and "pulsar" in profiles:
            limit = jvm_mib(env.get("PULSAR_MEM", default_jvm) if isinstance(env, dict) else default_jvm)
        if limit:
            out[name if count == 1 else f"{name} x{count}"] = limit * count
    return out


@check
def memory(ctx: Context) -> list[Finding]:
    vm = psutil.virtual_memory()
    caps = lab_memory_caps(ctx.compose_file, ctx.settings)
    need = sum(caps.values()) * 2**20
    figures = f"{vm.total / GiB:.1f} GiB total, {vm.available / GiB:.1f} GiB available"
    caps_words = f"the lab's caps {need / GiB:.1f} GiB ({', '.join(f'{k} {v} MiB' for k, v in caps.items())})"
    out = []
    if vm.total < need:
        out.append(Finding("memory", False, f"memory: {figures}: less than {caps_words}",
                           "use a host with more memory, or fewer VMs (PICO_VMS=0)", fatal=True))
    elif vm.available < need:
        out.append(Finding("memory", False, f"memory: {figures}: less available than {caps_words} (is a lab already up?)",
                           "free memory ('chaoslab down' if a lab is up) before 'make up'"))
    else:
        out.append(Finding("memory", True, f"memory: {figures}; {caps_words}"))
    spare = vm.available - RESERVED_BESIDE_HYPERVISORS
    if spare <= 0:
        out.append(Finding("memory for hypervisors", False,
                           f"memory for hypervisor groups: {vm.available / GiB:.1f} GiB available is within the {RESERVED_BESIDE_HYPERVISORS / GiB:.0f} GiB "
                           "the hypervisor groups never take: experiments with VMs in hypervisors will be refused",
                           "free memory, or run experiments without hypervisor groups"))
    else:
        out.append(Finding("memory for hypervisors", True,
                           f"memory for hypervisor groups: {spare / GiB:.1f} GiB beyond the "
                           f"{RESERVED_BESIDE_HYPERVISORS / GiB:.0f} GiB kept for the bus and the lab"))
    return out


# -- ports -------------------------------------------------------------------------------------------
def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def port_holder(port: int) -> tuple[int | None, str] | None:
    """(pid, process name) of who listens on `port`, None when nobody visible does."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port:
            try:
                return c.pid, psutil.Process(c.pid).name() if c.pid else "?"
            except psutil.Error:
                return c.pid, "?"
    return None


def lab_ports(settings: LabSettings) -> list[tuple[int, str, str, bool]]:
    """(port, what, the variable that moves it, needed by every lab) the lab publishes."""
    s = settings
    out = [(s.proxy_port, "proxy (binary)", "CHAOSLAB_PROXY_PORT", True),
           (s.proxy_http_port, "proxy (http)", "CHAOSLAB_PROXY_HTTP_PORT", True)]
    out += [(s.broker_http_base_port + n - 1, f"broker-{n} (http)", "CHAOSLAB_BROKER_HTTP_BASE_PORT", True)
            for n in range(1, s.brokers + 1)]
    out += [(s.rabbitmq_port, "rabbitmq (amqp)", "CHAOSLAB_RABBITMQ_PORT", True),
            (s.rabbitmq_mgmt_port, "rabbitmq (management)", "CHAOSLAB_RABBITMQ_MGMT_PORT", True)]
    for n in (2, 3):
        out += [(s.rabbitmq_port + n - 1, f"rabbitmq-{n} (amqp)", "CHAOSLAB_RABBITMQ_PORT", False),
                (s.rabbitmq_mgmt_port + n - 1, f"rabbitmq-{n} (management)", "CHAOSLAB_RABBITMQ_MGMT_PORT", False)]
    return out


def own_ports(ctx: Context) -> dict[int, str]:
    """Host ports the lab's own running containers publish: {port: container name}."""
    client = ctx.client()
    if client is None:
        return {}
    out = {}
    try:
        containers = client.containers.list(filters={"label": f"com.docker.compose.project={ctx.settings.project}"})
    except Exception:
        return {}
    for c in containers:
        for bindings in ((c.attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
            for b in bindings or []:
                if str(b.get("HostPort", "")).isdigit():
                    out[int(b["HostPort"])] = c.name
    return out


@check
def ports(ctx: Context) -> list[Finding]:
    ours = own_ports(ctx)
    free, out = [], []
    for port, what, var, always in lab_ports(ctx.settings):
        if port in ours:
            out.append(Finding(f"port {port}", True, f"port {port} ({what}) is held by the lab's own container "
                                                     f"{ours[port]}: fine, the lab is up"))
            continue
        if port_free(port):
            free.append(str(port))
            continue
        holder = port_holder(port)
        who = f"{holder[1]} (pid {holder[0]})" if holder else "another process"
        if holder and holder[1] == "docker-proxy" and ctx.client() is None:
            out.append(Finding(f"port {port}", False, f"port {port} ({what}) is held by docker-proxy (pid {holder[0]}): "
                                                      "likely the lab's own container; no engine answers to confirm",
                               "start the engine, or 'chaoslab down' if the lab is up"))
            continue
        needed = "" if always else " (needed by 3-node RabbitMQ experiments)"
        out.append(Finding(f"port {port}", False, f"port {port} on 127.0.0.1 ({what}) is held by {who}, not by the lab"
                                                  f"{needed}", f"stop it, or set {var} to move the lab's port",
                           fatal=always))
    if free:
        out.insert(0, Finding("ports", True, f"ports free on 127.0.0.1: {', '.join(free)}"))
    return out


# -- disk --------------------------------------------------------------------------------------------
def _existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists():
            return p
    return Path("/")


@check
def disk(ctx: Context) -> list[Finding]:
    client = ctx.client()
    docker_root = None
    if client is not None:
        try:
            docker_root = client.info().get("DockerRootDir")
        except Exception:
            docker_root = None
    places = [(Path(docker_root or "/var/lib/docker"), "images (the engine's storage)", 10, 2),
              (BUILD_DIR, "build/ (Pulsar classpaths, the agent)", 5, 1),
              (RUNS_DIR, "runs/ (run folders)", 2, 0.5)]
    out = []
    for path, what, warn_gib, fatal_gib in places:
        usage = psutil.disk_usage(str(_existing(path)))
        free = usage.free / GiB
        detail = f"disk {path}: {free:.1f} GiB free of {usage.total / GiB:.0f} GiB, for {what}"
        if free < fatal_gib:
            out.append(Finding(f"disk {path}", False, detail + f" (under {fatal_gib} GiB)",
                               "free disk space there (docker image prune, old runs/)", fatal=True))
        elif free < warn_gib:
            out.append(Finding(f"disk {path}", False, detail + f" (under {warn_gib} GiB)",
                               "free disk space there (docker image prune, old runs/)"))
        else:
            out.append(Finding(f"disk {path}", True, detail))
    return out


# -- Maven: the releases the named experiments need -----------------------------------------------------
@check
def releases(ctx: Context) -> list[Finding]:
    from chaoslab.lab.releases import check_release_resolves
    out, wanted = [], {}
    for f, exp, err in ctx.experiments():
        if exp is None:
            out.append(Finding(f"experiment {f}", False, err, "fix the file (chaoslab validate names the field)",
                               fatal=True))
            continue
        if not any(exp.plan(v).lab.pulsar for v in exp.variants):
            out.append(Finding(f"experiment {f}", True, f"{f}: RabbitMQ only, no Pulsar release needed"))
            continue
        for r in exp.releases():
            wanted.setdefault(r, ("broker",))
    if wanted:
        wanted.setdefault(ctx.settings.proxy_version, ())
        wanted[ctx.settings.proxy_version] = tuple(dict.fromkeys([*wanted[ctx.settings.proxy_version], "proxy"]))
    for release, components in wanted.items():
        name = f"release {release}"
        try:
            how = check_release_resolves(release, components, maven=not ctx.offline)
        except LabError as exc:
            out.append(Finding(name, False, str(exc), "supply a build (PULSAR_DIST_<release>), pick another release, "
                                                      "or check Maven's network and settings (mvn -v)", fatal=True))
            continue
        if how is None:
            out.append(Finding(name, True, f"Pulsar {release}: not asked (--offline); not in the local Maven repository"))
        else:
            out.append(Finding(name, True, f"Pulsar {release} ({', '.join(components)}): {how}"))
    return out


# -- the tools that build the images ----------------------------------------------------------------------
def _cargo() -> str | None:
    return shutil.which("cargo") or next((str(p) for p in [Path.home() / ".cargo" / "bin" / "cargo"] if p.exists()), None)


TOOLS = [
    # (name, how to find it, version argv after the path, what builds with it, images it builds, how to get it)
    ("cargo", _cargo, ["--version"], "the VM agent (Rust)", ("agent",), "install Rust with rustup (https://rustup.rs) "
                                                                         "or apt-get install cargo"),
    ("protoc", lambda: shutil.which("protoc"), ["--version"], "the VM agent's Pulsar client", ("agent",),
     "apt-get install protobuf-compiler"),
    ("debootstrap", lambda: shutil.which("debootstrap"), None, "the Debian base image every image is built on",
     ("base",), "apt-get install debootstrap"),
    ("mvn", lambda: shutil.which("mvn"), ["-v"], "the Pulsar images' classpaths (Maven Central)", ("pulsar",),
     "apt-get install maven"),
    ("java", lambda: shutil.which("java"), ["-version"], "jlink's jcmd-only runtime for thread dumps (else SIGQUIT)",
     (), "apt-get install default-jdk-headless (optional)"),
]


def _images_for(ctx: Context, role: str) -> list[str]:
    from chaoslab.lab.images import BASE_IMAGE, pulsar_image
    if role == "agent":
        return [ctx.settings.agent_image]
    if role == "base":
        return [BASE_IMAGE]
    releases = {r for _f, exp, _e in ctx.experiments()
                if exp and any(exp.plan(v).lab.pulsar for v in exp.variants) for r in exp.releases()}
    return [pulsar_image(r) for r in sorted((releases or {ctx.settings.pulsar_from}) | {ctx.settings.proxy_version})]


@check
def tools(ctx: Context) -> list[Finding]:
    out = []
    for name, find, version_args, what, roles, fix in TOOLS:
        path = find()
        if path:
            line = _run([path, *version_args])[1] if version_args else path
            out.append(Finding(name, True, f"{name}: {line or path}"))
            continue
        images = [t for role in roles for t in _images_for(ctx, role)]
        missing = [t for t in images if ctx.image_missing(t)]
        unknown = images and ctx.client() is None
        if missing:
            out.append(Finding(name, False, f"{name} missing: {what} cannot be built, and {', '.join(missing)} "
                                            "is not built yet", fix, fatal=True))
        elif unknown:
            out.append(Finding(name, False, f"{name} missing: needed to build {what} if its image is not built "
                                            "(no engine answers to tell)", fix))
        else:
            out.append(Finding(name, False, f"{name} missing: {what}"
                               + (" (its images are built already)" if images else ""), fix))
    return out


# -- for people --------------------------------------------------------------------------------------------
def line(f: Finding) -> str:
    mark = "ok  " if f.ok else ("FAIL" if f.fatal else "warn")
    return f"{mark}  {f.detail}" + ("" if f.ok or not f.fix else f"; fix: {f.fix}")


def render(findings: list[Finding], console) -> None:
    for f in findings:
        console.print(line(f), highlight=False, markup=False, soft_wrap=True)
    fatal = [f for f in findings if f.fatal and not f.ok]
    warnings = [f for f in findings if not f.ok and not f.fatal]
    if fatal:
        console.print(f"doctor: the lab cannot run here: {len(fatal)} fatal problem(s)"
                      + (f", {len(warnings)} warning(s)" if warnings else ""), highlight=False)
    else:
        console.print("doctor: the lab can run here" + (f" ({len(warnings)} warning(s))" if warnings else ""),
                      highlight=False)
