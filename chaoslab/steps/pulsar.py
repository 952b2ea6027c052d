"""Operator actions on Pulsar brokers.

- `roll-broker`: recreate one broker on a release with settings (one rolling-upgrade step), wait
  the operator's way (shallow: /status.html, or functional: Pulsar's health check), record what
  the *other* check said at that moment, read the broker's runtime configuration back (every
  requested key must be in effect, else ChangeNotApplied: the run ends ERROR, never judged),
  then let `settle_secs` pass. Its undo restores exactly
  the settings the broker had before (and, with `undo_version`, its release) and waits until the
  broker serves.
- `recover-system-topics`: the incident's recovery, scripted and timed: stop every broker, start
  one, delete the named system topics through its admin API, start the others. By default only
  when some broker does not serve.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, field_validator

from chaoslab import http
from chaoslab.errors import ChangeNotApplied
from chaoslab.lab import health
from chaoslab.lab.broker_settings import not_applied, read_back
from chaoslab.pulsar_lookup import lookup_outcome, owner_host, topic_path
from chaoslab.settings import VERSION_RE, release_number
from chaoslab.spec.base import Change, Release, Secs, Settings, Step, StepPlan, register
from chaoslab.wait import Waited, wait_until

BrokerNo = Annotated[int, Field(ge=1, le=9)]
# reading a rolled broker's runtime configuration back: attempts, and the pause between them
READ_BACK_ATTEMPTS = 3
READ_BACK_PAUSE_SECS = 2.0


def broker_changes(lab, numbers: list[int], version: str, config: dict[str, str], undo_version: bool) -> StepPlan:
    """The changes (and undo) of recreating brokers on `version` with `config` over what they
    have, as the plan has them so far (spec/planning.py); `does` and the times are the step's."""
    target = lab.release(version)
    changes, undo = [], []
    for n in numbers:
        name = f"broker-{n}"
        before = lab.release_of(name)
        changes.append(Change(name, "release", before.value, target, source=before.source))
        if undo_version:
            undo.append(Change(name, "release", target, before.value))
        for key, value in config.items():
            was = lab.setting(name, key)
            changes.append(Change(name, "setting", was.value, value, key=key, source=was.source))
            undo.append(Change(name, "setting", value, was.value, key=key))
    if undo_version:
        words = "its release and settings back to what they were"
    elif config:
        words = f"its settings back to what they were; the release stays {target} (undo_version: false)"
    else:
        words = ""   # nothing of what it changed is put back
    return StepPlan(does="", changes=changes, undo=words, undo_changes=undo)


def wait_for_broker(ctx, n: int, how: str, timeout: float, stop=None) -> Waited:
    url = ctx.lab.broker_admin_url(n)
    if how == "shallow":
        return wait_until(lambda: health.shallow(url, timeout=3).ok, timeout, stop=stop)
    return wait_until(lambda: health.functional(url, timeout=10).ok, timeout, stop=stop)


@register("step")
class RollBroker(Step):
    """One rolling-upgrade step: recreate one broker on a release with settings, wait the
    operator's way (`wait_for`: shallow /status.html or Pulsar's functional health check), read
    its runtime configuration back (a requested key not in effect ends the run ERROR), then let
    `settle_secs` pass. Undo restores the settings it had before (and, with `undo_version`, its
    release) and waits until it serves."""
    type: Literal["roll-broker"] = "roll-broker"
    broker: BrokerNo
    version: Release = "to"
    broker_config: Settings = {}
    wait_for: Literal["shallow", "functional"] = Field("shallow", description="how the operator waits before moving on")
    wait_timeout_secs: Annotated[float, Field(ge=5, le=3600)] = 180.0
    settle_secs: Secs = Field(15.0, description="after the broker passed, watch this long before the step ends")
    settle_until_held_secs: Secs | None = Field(
        None, description="end the settle earlier, once the hypothesis has held this long since the broker passed")
    undo_version: bool = Field(False, description="undo also rolls the release back (default: only the settings)")
    undo_wait_secs: Annotated[float, Field(ge=5, le=3600)] = 120.0
    _before: dict = PrivateAttr(default_factory=dict)

    def pulsar_releases(self) -> list[str]:
        return [self.version]

    def preflight(self, experiment) -> None:
        """Every setting must be one of the target release's own (Pulsar ignores unknown keys)."""
        from chaoslab.lab.broker_settings import check_broker_settings
        check_broker_settings(experiment.release(self.version), self.broker_config, resolve=False)

    def describe(self, lab) -> StepPlan:
        plan = broker_changes(lab, [self.broker], self.version, self.broker_config, self.undo_version)
        settle = self.settle_secs if self.settle_until_held_secs is None else min(self.settle_secs,
                                                                                  self.settle_until_held_secs)
        settle_words = (f"settle {self.settle_secs:g} s" if self.settle_until_held_secs is None else
                        f"settle until the hypothesis held {self.settle_until_held_secs:g} s (at most {self.settle_secs:g} s)")
        plan.does = (f"recreate broker-{self.broker} on {lab.release(self.version)}"
                     + (f" with {len(self.broker_config)} setting(s)" if self.broker_config else "")
                     + f"; wait for its {self.wait_for} check (at most {self.wait_timeout_secs:g} s); "
                       f"read the change back; {settle_words}")
        plan.secs = (settle, self.wait_timeout_secs + self.settle_secs + READ_BACK_ATTEMPTS * READ_BACK_PAUSE_SECS)
        plan.undo_secs = (0.0, self.undo_wait_secs)
        return plan

    def run(self, ctx) -> dict:
        n, url = self.broker, ctx.lab.broker_admin_url(self.broker)
        configured = ctx.lab.configured(f"broker-{n}")
        runtime = http.get_json(f"{url}/admin/v2/brokers/configuration/runtime", timeout=10)
        self._before = {
            "config": configured["config"],
            "version": configured["release"],
            # what the broker itself said each changed key was (Pulsar's default when unset)
            "values": {k: (runtime or {}).get(k) for k in self.broker_config} if isinstance(runtime, dict) else None,
        }
        version = ctx.release(self.version)
        ctx.lab.set_broker(n, version=version, config=self.broker_config, wait=False)
        ctx.event("broker-recreated", broker=f"broker-{n}", version=version)
        waited = wait_for_broker(ctx, n, self.wait_for, self.wait_timeout_secs, stop=ctx.should_stop)
        shallow, functional = health.shallow(url), health.functional(url, timeout=15)
        result = {"broker": f"broker-{n}", "version": version, "config": self.broker_config,
                  "waited_for": self.wait_for, "wait_ok": waited.ok,
                  "wait_secs": round(waited.secs, 1), "shallow_ok": shallow.ok, "functional_ok": functional.ok,
                  "functional_detail": None if functional.ok else functional.detail[:200],
                  "previous": self._before["values"]}
        if not waited.ok:
            result["ok"] = False
            result["error"] = ("stopped waiting: the run aborted" if ctx.aborted.is_set() else
                               f"broker-{n} did not pass the {self.wait_for} check within {self.wait_timeout_secs:.0f} s")
            return result
        result["read_back"] = self.check_applied(ctx, n, url, version)  # ChangeNotApplied: the run ends ERROR
        settle_started = time.monotonic()
        result["settled"] = ctx.watch(self.settle_secs, self.settle_until_held_secs)  # False: the run aborted while settling
        result["settle_secs"] = round(time.monotonic() - settle_started, 1)
        result["ok"] = True
        return result

    def check_applied(self, ctx, n: int, url: str, version: str) -> dict:
        """Prove the roll applied the change: the broker's runtime configuration, key by key
        against what this step asked for, and the release it reports. Journals
        `change-read-back`; raises ChangeNotApplied for a key whose value in effect is not the
        requested one, for another release than the one asked for, or when settings were asked
        for and the configuration cannot be read (a change not shown applied is never judged)."""
        # no settings asked for (a plain upgrade): only the release is checked
        runtime = {} if not self.broker_config else None
        attempts = READ_BACK_ATTEMPTS if self.broker_config else 0
        for attempt in range(attempts):
            runtime = http.get_json(f"{url}/admin/v2/brokers/configuration/runtime", timeout=10)
            if isinstance(runtime, dict):
                break
            if attempt + 1 < attempts and not ctx.interrupted.is_set():
                time.sleep(READ_BACK_PAUSE_SECS)
        readable = isinstance(runtime, dict)
        answer = f"no JSON object from /admin/v2/brokers/configuration/runtime in {attempts} attempts"
        reported = None
        for attempt in range(READ_BACK_ATTEMPTS):
            answer_v = http.get_json(f"{url}/admin/v2/brokers/version", timeout=10)
            if isinstance(answer_v, str) and answer_v.strip():
                reported = answer_v.strip()
                break
            if attempt + 1 < READ_BACK_ATTEMPTS and not ctx.interrupted.is_set():
                time.sleep(READ_BACK_PAUSE_SECS)
        # a supplied build labelled X.Y.Z-label reports X.Y.Z (or its own label)
        wrong_release = bool(reported and VERSION_RE.match(reported) and reported not in (version, release_number(version)))
        keys = read_back(self.broker_config, runtime) if readable else {}
        bad = not_applied(keys)
        ok = readable and bad is None and not wrong_release
        ctx.event("change-read-back", broker=f"broker-{n}", version=version, version_in_effect=reported, ok=ok,
                  keys=keys, **({} if readable else {"error": f"runtime configuration not read: {answer}"}))
        if not readable:
            raise ChangeNotApplied(f"broker-{n}: the change could not be shown to have taken effect: its runtime "
                                   f"configuration could not be read ({answer})")
        if reported is None:
            raise ChangeNotApplied(f"broker-{n}: the release in effect could not be read "
                                   f"(/admin/v2/brokers/version did not answer in {READ_BACK_ATTEMPTS} attempts)")
        problems = ([f"it runs Pulsar {reported}, not {version}"] if wrong_release else []) + ([bad] if bad else [])
        if problems:
            raise ChangeNotApplied(f"broker-{n}: the change did not take effect: {'; '.join(problems)}")
        return {"version_in_effect": reported, "keys": keys}

    def undo(self, ctx) -> dict | None:
        if not self._before:
            return None
        n = self.broker
        version = self._before["version"] if self.undo_version else None
        if self._before["config"] == ctx.lab.configured(f"broker-{n}")["config"] and version is None:
            return None  # nothing this step changed is left to put back
        ctx.lab.set_broker(n, version=version, config=self._before["config"], replace_config=True, wait=False)
        timeout = min(self.undo_wait_secs, 60) if ctx.interrupted.is_set() else self.undo_wait_secs
        waited = wait_for_broker(ctx, n, "functional", timeout)
        return {"broker": f"broker-{n}", "restored_config": self._before["config"], "restored_values": self._before["values"],
                "restored_version": version, "serves": waited.ok, "secs": round(waited.secs, 1), "ok": waited.ok}


    @classmethod
    def changed(cls, result: dict) -> str:
        """e.g. "broker-1 to 3.3.1; loadManagerClassName: ModularLoadManagerImpl -> ExtensibleLoadManagerImpl"."""
        if not result.get("broker"):
            return ""
        previous = result.get("previous") or {}

        def short(v):
            return str(v).rsplit(".", 1)[-1] if v is not None else "default"
        keys = [f"{k}: {short(previous.get(k))} -> {short(v)}" for k, v in (result.get("config") or {}).items()]
        return f"{result['broker']} to {result.get('version')}" + (f"; {'; '.join(keys)}" if keys else "")

# what a full restart is expected to cost: the service itself (the conditions a planned outage
# excuses by default); split ownership and every other condition are judged as ever
OUTAGE_CONDITIONS = ["publish-success-rate", "publish-p99-ms", "backlog", "unowned-topics", "lookup-rejections",
                     "green-but-broken", "pending-lookups", "too-many-requests", "lookup-success-rate"]


@register("step")
class RestartBrokers(Step):
    """A full restart: the brokers recreated together on a release with settings (Pulsar's own
    migration advice for a load-manager switch: "restart the cluster"), so no broker ever runs next
    to one with the other load manager. The service it takes away is declared: during the step,
    violations of the `excuse` conditions are excused (counted apart, not in the coverage) for at
    most `outage_budget_secs`; the step measures the seconds until every broker serves and until
    the hypothesis holds again, and fails if that takes longer than the budget. Each broker's
    change is read back as `roll-broker` does; undo restores every broker's settings (and, with
    `undo_version`, release) together."""
    type: Literal["restart-brokers"] = "restart-brokers"
    brokers: list[BrokerNo] = Field([], description="default: every broker")
    version: Release = "to"
    broker_config: Settings = {}
    outage_budget_secs: Annotated[float, Field(ge=5, le=3600)] = Field(
        180.0, description="the service may be gone this long (from the restart until the hypothesis holds again)")
    excuse: list[str] = Field(default_factory=lambda: list(OUTAGE_CONDITIONS),
                              description="condition types a planned outage excuses while it lasts")
    until_held_secs: Secs = Field(10.0, description="the outage ends once the hypothesis has held this long")
    undo_version: bool = False
    undo_wait_secs: Annotated[float, Field(ge=5, le=3600)] = 180.0
    _before: dict = PrivateAttr(default_factory=dict)

    def pulsar_releases(self) -> list[str]:
        return [self.version]

    def preflight(self, experiment) -> None:
        from chaoslab.lab.broker_settings import check_broker_settings
        check_broker_settings(experiment.release(self.version), self.broker_config, resolve=False)

    def services_named(self) -> list[tuple[str, str]]:
        return [("brokers", f"broker-{n}") for n in self.brokers]

    def describe(self, lab) -> StepPlan:
        ns = lab.brokers(self.brokers)
        plan = broker_changes(lab, ns, self.version, self.broker_config, self.undo_version)
        plan.does = (f"recreate {', '.join(f'broker-{n}' for n in ns)} together on {lab.release(self.version)}"
                     + (f" with {len(self.broker_config)} setting(s)" if self.broker_config else "")
                     + f" (a planned outage: {', '.join(self.excuse) or 'no condition'} excused for at most "
                       f"{self.outage_budget_secs:g} s); read each change back; done once the hypothesis held "
                       f"{self.until_held_secs:g} s")
        plan.secs = (self.until_held_secs, self.outage_budget_secs)
        plan.undo_secs = (0.0, self.undo_wait_secs)
        return plan

    def band(self) -> str | None:
        return f"{self.id} (planned outage)"

    @field_validator("excuse")
    @classmethod
    def _known_conditions(cls, value: list[str]) -> list[str]:
        from chaoslab.spec.base import REGISTRY, load_package
        load_package("chaoslab.checks")   # where the conditions are registered
        unknown = [c for c in value if c not in REGISTRY["condition"]]
        if unknown:
            raise ValueError(f"not condition types: {', '.join(unknown)} (known: {', '.join(sorted(REGISTRY['condition']))})")
        return value

    def run(self, ctx) -> dict:
        ns = self.brokers or list(range(1, ctx.settings.brokers + 1))
        self._before = {n: {"config": c["config"], "version": c["release"]}
                        for n, c in ((n, ctx.lab.configured(f"broker-{n}")) for n in ns)}
        ctx.begin_outage(self.id, self.excuse)
        try:
            result = self._restart(ctx, ns)
        finally:
            figures = ctx.end_outage()
            ctx.event("planned-outage", step=self.id, budget_secs=self.outage_budget_secs, **figures)
        result["planned_outage"] = figures
        return result

    def _restart(self, ctx, ns: list[int]) -> dict:
        version = ctx.release(self.version)
        started = time.time()
        ctx.lab.set_brokers({n: {"version": version, "config": self.broker_config} for n in ns})
        ctx.event("brokers-recreated", brokers=[f"broker-{n}" for n in ns], version=version)

        def budget_left() -> float:
            return max(5.0, self.outage_budget_secs - (time.time() - started))

        serving = {}
        for n in ns:
            waited = wait_for_broker(ctx, n, "functional", budget_left(), stop=ctx.should_stop)
            serving[f"broker-{n}"] = round(time.time() - started, 1) if waited.ok else None
        result = {"brokers": [f"broker-{n}" for n in ns], "version": version, "config": self.broker_config,
                  "outage_budget_secs": self.outage_budget_secs, "serving_after_secs": serving}
        down = [b for b, v in serving.items() if v is None]
        if down:
            result.update(ok=False, error=("stopped waiting: the run aborted" if ctx.aborted.is_set() else
                                           f"{', '.join(down)} did not serve within the outage budget "
                                           f"({self.outage_budget_secs:.0f} s)"))
            return result
        result["read_back"] = {f"broker-{n}": RollBroker(broker=n, version=self.version, broker_config=self.broker_config)
                               .check_applied(ctx, n, ctx.lab.broker_admin_url(n), version) for n in ns}
        held = wait_until(lambda: ctx.tracker.held_for(time.time()) >= self.until_held_secs,
                          budget_left(), interval=0.5, stop=ctx.should_stop)
        ok_since = ctx.tracker.ok_since
        result["service_back_after_secs"] = round(ok_since - started, 1) if held.ok and ok_since else None
        result["ok"] = held.ok
        if not held.ok:
            result["error"] = ("stopped waiting: the run aborted" if ctx.aborted.is_set() else
                               f"the hypothesis did not hold {self.until_held_secs:.0f} s within the outage "
                               f"budget ({self.outage_budget_secs:.0f} s)")
        return result

    def undo(self, ctx) -> dict | None:
        if not self._before:
            return None
        changes = {n: {"config": b["config"], "replace_config": True,
                       "version": b["version"] if self.undo_version else None} for n, b in self._before.items()}
        ctx.lab.set_brokers(changes)
        timeout = min(self.undo_wait_secs, 60) if ctx.interrupted.is_set() else self.undo_wait_secs
        serves = {f"broker-{n}": wait_for_broker(ctx, n, "functional", timeout).ok for n in changes}
        return {"brokers": list(serves), "restored": {f"broker-{n}": b for n, b in self._before.items()},
                "serves": serves, "ok": all(serves.values())}


@register("step")
class RecoverSystemTopics(Step):
    """The incident's recovery, scripted and timed: stop every broker, start one, delete the
    named system topics through its admin API, start the others. By default only when some
    broker does not serve (`only_if_not_serving`)."""
    type: Literal["recover-system-topics"] = "recover-system-topics"
    delete_topics: list[Annotated[str, Field(pattern=r"^(non-)?persistent://[^/]+/[^/]+/.+$")]] = []
    wait_timeout_secs: Annotated[float, Field(ge=5, le=3600)] = 120.0
    only_if_not_serving: bool = True

    def describe(self, lab) -> StepPlan:
        names = lab.settings.broker_names
        changes = [Change(n, "state", lab.state(n).value, "stopped, then started again", source=lab.state(n).source,
                          lasting=False) for n in names]
        changes += [Change("pulsar", "topic", t, "deleted") for t in self.delete_topics]
        when = "if some broker does not serve: " if self.only_if_not_serving else ""
        return StepPlan(does=f"{when}stop every broker, start {names[0]}, delete {len(self.delete_topics)} system "
                             f"topic(s) through it, start the others (each wait at most {self.wait_timeout_secs:g} s)",
                        changes=changes, secs=(0.0, 2 * self.wait_timeout_secs + 30 * len(self.delete_topics)))

    def run(self, ctx) -> dict:
        n_brokers = ctx.settings.brokers
        if self.only_if_not_serving and all(health.functional(ctx.lab.broker_admin_url(n), timeout=10).ok
                                            for n in range(1, n_brokers + 1)):
            return {"ok": True, "skipped": "every broker serves"}
        started = time.monotonic()
        names = ctx.settings.broker_names
        for name in names:
            ctx.lab.stop_service(name)
        ctx.event("recovery-all-brokers-stopped")
        ctx.lab.start_service(names[0], wait=False)
        first = wait_for_broker(ctx, 1, "shallow", self.wait_timeout_secs, stop=ctx.interrupted.is_set)
        url = ctx.lab.broker_admin_url(1)
        deleted = {t: http.request("DELETE", f"{url}/admin/v2/{topic_path(t)}?force=true", timeout=30).status
                   for t in self.delete_topics}
        ctx.event("recovery-topics-deleted", status=deleted)
        for name in names[1:]:
            ctx.lab.start_service(name, wait=False)
        ok = all(wait_for_broker(ctx, n, "functional", self.wait_timeout_secs, stop=ctx.interrupted.is_set).ok
                 for n in range(1, len(names) + 1))
        return {"ok": ok, "first_broker_up": first.ok, "deleted": deleted, "secs": round(time.monotonic() - started, 1)}


@register("step")
class ObserveBroker(Step):
    """Watch one broker for `secs` and name what became of it: `exits` (the process ended),
    `up-but-broken` (running, but Pulsar's health check fails or it is not registered as an
    active broker), or `fine`; and whether the operator's shallow wait would have rolled on
    (/status.html answered 200 while the broker was not fine)."""
    type: Literal["observe-broker"] = "observe-broker"
    broker: BrokerNo
    secs: Annotated[float, Field(ge=5, le=3600)] = 90.0
    every_secs: Annotated[float, Field(ge=1, le=60)] = 3.0

    def describe(self, lab) -> StepPlan:
        return StepPlan(does=f"watch broker-{self.broker} for {self.secs:g} s (every {self.every_secs:g} s): its "
                             "container, both health checks, its registration; nothing is changed",
                        secs=(self.secs, self.secs + self.every_secs + 20))

    def run(self, ctx) -> dict:
        n, url = self.broker, ctx.lab.broker_admin_url(self.broker)
        name = f"broker-{n}"
        seen = []
        deadline = time.monotonic() + self.secs
        while time.monotonic() < deadline and not ctx.interrupted.is_set():
            st = ctx.lab.service_state(name)
            state, exit_code = st.state, st.exit_code
            shallow = health.shallow(url, timeout=3).ok if state == "running" else False
            functional = health.functional(url, timeout=10).ok if state == "running" else False
            others = [ctx.lab.broker_admin_url(m) for m in range(1, ctx.settings.brokers + 1) if m != n]
            active = next((x for x in (http.get_json(f"{o}/admin/v2/brokers/{ctx.settings.cluster}", timeout=5)
                                       for o in others) if isinstance(x, list)), None)
            registered = None if active is None else any(a.split(":")[0] == name for a in active)
            seen.append({"t": round(time.time(), 1), "container": state, "exit_code": exit_code, "shallow": shallow,
                         "functional": functional, "registered": registered})
            time.sleep(self.every_secs)
        last = seen[-1] if seen else {}
        exited = any(s["container"] != "running" for s in seen)
        fine = last.get("container") == "running" and last.get("functional") and last.get("registered") is not False
        outcome = "fine" if fine else ("exits" if exited and last.get("container") != "running" else "up-but-broken")
        would_roll_on = any(s["shallow"] and not (s["functional"] and s["registered"] is not False) for s in seen)
        ctx.event("broker-outcome", broker=name, outcome=outcome, shallow_wait_would_roll_on=would_roll_on)
        return {"broker": name, "outcome": outcome, "shallow_wait_would_roll_on": would_roll_on,
                "exited": exited, "exit_codes": sorted({s["exit_code"] for s in seen if s["exit_code"] is not None}),
                "last": last, "samples": len(seen), "ok": True}


@register("step")
class NamespacePersistence(Step):
    """Set a namespace's persistence policy (ensemble / write quorum / ack quorum) through the
    admin API; undo removes the policy again. With more bookies asked for than exist, nothing in
    that namespace can be written — e.g. the extensible load manager's channel in pulsar/system."""
    type: Literal["namespace-persistence"] = "namespace-persistence"
    namespace: Annotated[str, Field(pattern=r"^[^/]+/[^/]+$")] = "pulsar/system"
    ensemble: Annotated[int, Field(ge=1, le=20)]
    write_quorum: Annotated[int, Field(ge=1, le=20)]
    ack_quorum: Annotated[int, Field(ge=1, le=20)]
    _set: bool = PrivateAttr(False)

    def describe(self, lab) -> StepPlan:
        policy = f"ensemble {self.ensemble}, write quorum {self.write_quorum}, ack quorum {self.ack_quorum}"
        bookies = lab.settings.bookies
        warn = f" (the lab has {bookies} bookies: nothing in it can be written)" if self.ensemble > bookies else ""
        return StepPlan(does=f"set {self.namespace}'s persistence policy to {policy}{warn}",
                        changes=[Change(f"namespace {self.namespace}", "policy", "the broker's defaults", policy)],
                        secs=(0.0, 30.0), undo=f"remove {self.namespace}'s persistence policy again",
                        undo_changes=[Change(f"namespace {self.namespace}", "policy", policy, "the broker's defaults")],
                        undo_secs=(0.0, 30.0))

    def run(self, ctx) -> dict:
        body = {"bookkeeperEnsemble": self.ensemble, "bookkeeperWriteQuorum": self.write_quorum,
                "bookkeeperAckQuorum": self.ack_quorum, "managedLedgerMaxMarkDeleteRate": 0}
        resp = http.request("POST", f"{ctx.lab.proxy_admin_url}/admin/v2/namespaces/{self.namespace}/persistence",
                            body=body, timeout=30)
        self._set = resp.ok
        if not resp.ok:   # the fault was never injected: nothing about the change can be judged
            raise ChangeNotApplied(f"namespace-persistence: {self.namespace} refused the policy: {resp.describe()[:160]}")
        return {"namespace": self.namespace, "policy": body, "answer": resp.describe(), "ok": True}

    def undo(self, ctx) -> dict | None:
        if not self._set:
            return None
        resp = http.request("DELETE", f"{ctx.lab.proxy_admin_url}/admin/v2/namespaces/{self.namespace}/persistence",
                            timeout=30)
        self._set = not resp.ok
        return {"namespace": self.namespace, "answer": resp.describe(), "ok": resp.ok}


@register("step")
class ConcurrentLookups(Step):
    """Upstream's own check (ExtensibleLoadManagerTest.testConcurrentLookups): several clients
    look up every partition of one partitioned topic at once, through every broker; all answers
    for a partition must name the same owner. Fails with the disagreeing partitions as evidence."""
    type: Literal["concurrent-lookups"] = "concurrent-lookups"
    topic: str = "persistent://public/default/chaoslab-lookup-check"
    partitions: Annotated[int, Field(ge=1, le=1000)] = 20
    clients: Annotated[int, Field(ge=2, le=50)] = 5

    settle_timeout_secs: Annotated[float, Field(ge=1, le=600)] = 60.0
    lookup_timeout_secs: Annotated[float, Field(ge=1, le=120)] = 10.0

    def describe(self, lab) -> StepPlan:
        rounds = self.partitions   # lookups each of the clients makes, one after another
        return StepPlan(does=f"create {self.topic} with {self.partitions} partitions; {self.clients} clients look up "
                             "every partition through every broker at once; all answers for a partition must name "
                             "the same owner",
                        changes=[Change("pulsar", "topic", "absent (or as it is)",
                                        f"{self.topic} with {self.partitions} partitions")],
                        secs=(0.0, 30 + self.settle_timeout_secs + rounds * self.lookup_timeout_secs))

    def run(self, ctx) -> dict:
        from concurrent.futures import ThreadPoolExecutor

        path = topic_path(self.topic)
        created = http.request("PUT", f"{ctx.lab.proxy_admin_url}/admin/v2/{path}/partitions", body=self.partitions,
                               timeout=30)
        urls = [ctx.lab.broker_admin_url(n) for n in range(1, ctx.settings.brokers + 1)]
        names = [f"{self.topic}-partition-{p}" for p in range(self.partitions)]

        def ask(url, topic):
            # followed to the end, like an admin client: a redirect names a candidate, and only the
            # broker at the end of the redirects owns the bundle (that lookup makes it take it)
            resp = http.get(f"{url}/lookup/v2/topic/{topic_path(topic)}", timeout=self.lookup_timeout_secs)
            outcome = lookup_outcome(resp)
            return outcome, (owner_host(resp) if outcome == "owned" else None)

        def owner(url, topic):
            return ask(url, topic)[1]
        # first every partition gets an owner (the first lookup of a bundle assigns it)
        settled = wait_until(lambda: all(owner(urls[0], t) for t in names), self.settle_timeout_secs,
                             interval=2, stop=ctx.should_stop)
        jobs = [(c, p, urls[(c + p) % len(urls)]) for c in range(self.clients) for p in range(self.partitions)]
        with ThreadPoolExecutor(self.clients) as pool:
            answers = list(pool.map(lambda job: (job[1], job[2], *ask(job[2], names[job[1]])), jobs))
        per: dict[int, set] = {}
        outcomes: dict[str, dict[str, int]] = {}
        for p, url, outcome, o in answers:
            if o:
                per.setdefault(p, set()).add(o)
            asked = f"broker-{urls.index(url) + 1}"
            outcomes.setdefault(asked, {}).setdefault(outcome, 0)
            outcomes[asked][outcome] += 1
        disagree = {p: sorted(o) for p, o in per.items() if len(o) > 1}
        unanswered = sum(1 for _p, _u, _out, o in answers if o is None)
        return {"topic": self.topic, "created": created.describe()[:80], "owners_settled": settled.ok,
                "lookups": len(answers), "unanswered": unanswered, "disagreeing_partitions": len(disagree),
                "outcomes_by_broker_asked": "; ".join(f"{b}: " + ", ".join(f"{k} {n}" for k, n in sorted(c.items()))
                                                      for b, c in sorted(outcomes.items())),
                "example": "; ".join(f"partition {p}: {', '.join(o)}" for p, o in list(disagree.items())[:2]),
                "ok": not disagree and unanswered < len(answers),
                **({"error": f"{len(disagree)} partitions with different owners at once"} if disagree else
                   {"error": "no lookup was answered: the brokers could not say who owns the topic"}
                   if answers and unanswered == len(answers) else {})}


@register("step")
class LookupEveryBundle(Step):
    """Look up every topic the workload writes (each partition) through one broker directly,
    all at once: every bundle that carries a workload topic gets a lookup at that broker.

    Why: in a cluster that mixes load managers, an extensible broker answers a lookup for a
    bundle its own ownership channel does not know by assigning that bundle, without asking the
    modular broker that already owns it; the two then both serve the bundle (split ownership).
    The workload's own lookups reach the flipped broker by chance (through the proxy); this step
    reaches every bundle at the moment the split can happen, so one run decides. The step only
    asks and records the answers (how many topics each broker was named owner of, how many of
    each outcome); judging is the hypothesis' (`split-ownership`). With `load: true` it also asks the owner for each topic's
    stats, which loads the topic (after a rollback: which topics can no longer be loaded)."""
    type: Literal["lookup-every-bundle"] = "lookup-every-bundle"
    broker: BrokerNo | None = Field(None, description="ask this broker directly (default: through the proxy)")
    clients: Annotated[int, Field(ge=1, le=64)] = 8
    lookup_timeout_secs: Annotated[float, Field(ge=1, le=120)] = 10.0
    load: bool = Field(False, description="also load each topic (its stats, from the owner); one that cannot be "
                                          "loaded fails the step")
    min_answered: Annotated[float, Field(ge=0, le=1, description=(
        "the step fails (and, with ok_required, aborts) when fewer lookups than this share named an owner"))] = 0.0

    def describe(self, lab) -> StepPlan:
        asked = f"broker-{self.broker} directly" if self.broker else "the proxy"
        topics = lab.workload_topics()
        # each of `clients` threads asks its share one after another: the bundle (5 s at most),
        # the lookup and, with `load`, the stats (lookup_timeout_secs each at most)
        per_topic = 5 + self.lookup_timeout_secs * (2 if self.load else 1)
        return StepPlan(does=f"look up every workload topic (each partition{f', {topics}' if topics else ''}) at "
                             f"{asked}, {self.clients} at a time"
                             + ("; then load each one (its stats)" if self.load else "")
                             + (f"; fails under {self.min_answered:.0%} answered" if self.min_answered else "")
                             + "; nothing is changed (a lookup may assign an unowned bundle)",
                        secs=(0.0, None if topics is None else -(-topics // self.clients) * per_topic))

    def run(self, ctx) -> dict:
        from concurrent.futures import ThreadPoolExecutor

        every = getattr(ctx.workload, "every_topic", None)
        topics = every() if every else []
        if not topics:
            return {"ok": False, "error": "the workload has no topics to look up (it is not pulsar-topics, or not started)"}
        url = ctx.lab.broker_admin_url(self.broker) if self.broker else ctx.lab.proxy_admin_url
        asked = f"broker-{self.broker}" if self.broker else "proxy"

        def one(topic: str) -> dict:
            if ctx.should_stop():   # the run aborted: a hung broker is not asked 140 more times
                return {"topic": topic, "bundle": None, "outcome": "not asked", "owner": None,
                        "loaded": False, "load_error": "not asked: the run aborted"}
            path = topic_path(topic)
            bundle = http.get_json(f"{url}/lookup/v2/topic/{path}/bundle", timeout=5)
            resp = http.get(f"{url}/lookup/v2/topic/{path}", timeout=self.lookup_timeout_secs)
            outcome = lookup_outcome(resp)
            answer = {"topic": topic, "bundle": f"{topic.split('://', 1)[1].rsplit('/', 1)[0]}/{bundle}"
                      if isinstance(bundle, str) and bundle else None, "outcome": outcome,
                      "owner": owner_host(resp) if outcome == "owned" else None}
            if self.load:
                stats = http.get(f"{url}/admin/v2/{path}/stats", timeout=self.lookup_timeout_secs)
                answer["loaded"] = stats.ok
                if not stats.ok:
                    answer["load_error"] = stats.describe()[:120]
            return answer

        started = time.monotonic()
        ctx.event("lookup-every-bundle-start", asked=asked, topics=len(topics))
        with ThreadPoolExecutor(self.clients) as pool:
            answers = list(pool.map(one, topics))
        outcomes: dict[str, int] = {}
        owners: dict[str, int] = {}
        for a in answers:
            outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
            if a["owner"]:
                owners[a["owner"]] = owners.get(a["owner"], 0) + 1
        bundles = {a["bundle"] for a in answers if a["bundle"]}
        answered = outcomes.get("owned", 0) / len(answers)
        # `bundles` counts the bundles that were named; a topic whose /bundle call failed is not a
        # bundle fewer but one not known
        result = {"asked": asked, "topics": len(answers), "bundles": len(bundles),
                  "bundle_unknown_topics": sum(1 for a in answers if not a["bundle"]),
                  "outcomes": dict(sorted(outcomes.items())), "owners": dict(sorted(owners.items())),
                  "answered_share": round(answered, 3), "secs": round(time.monotonic() - started, 1),
                  "unanswered_examples": [a["topic"] for a in answers if a["outcome"] not in ("owned", "not asked")][:3]}
        if outcomes.get("not asked"):
            result["error"] = f"stopped asking: the run aborted ({outcomes['not asked']} of {len(answers)} topics not asked)"
        if self.load:
            failed = [a for a in answers if not a["loaded"]]
            result.update({"loaded": len(answers) - len(failed), "not_loaded": len(failed),
                           "not_loaded_examples": [f"{a['topic']}: {a['load_error']}" for a in failed[:3]]})
        result["ok"] = answered >= self.min_answered and not result.get("not_loaded")
        if outcomes.get("not asked"):
            result["ok"] = False
        elif answered < self.min_answered:
            result["error"] = (f"{len(answers) - outcomes.get('owned', 0)} of {len(answers)} lookups at {asked} "
                               f"named no owner ({answered:.0%} answered, {self.min_answered:.0%} required)")
        elif result.get("not_loaded"):     # asked to load them: a topic that cannot be loaded fails the step
            result["error"] = f"{result['not_loaded']} of {len(answers)} topics could not be loaded through {asked}"
        return result
