"""The lab as `chaoslab plan` imagines it, one step after another: nothing is started or asked.

A fresh lab starts every broker on the experiment's `from` release with the image's broker.conf
(images/pulsar/conf/broker.conf) and the experiment's `lab.broker_config` over it, the proxy on
the lab's proxy release with `lab.proxy_config`, every service running. Each step's `describe()`
reads what it is about to change from here (the value and where it comes from), and the plan
applies the changes it returns, so that the next step's "before" is this step's "after".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from chaoslab.lab.broker_settings import IMAGE_BROKER_CONF, conf_file_settings
from chaoslab.settings import REPO_ROOT, LabSettings
from chaoslab.spec.base import Change

IMAGE_DEFAULT = f"image default ({IMAGE_BROKER_CONF.relative_to(REPO_ROOT)})"
PULSAR_DEFAULT = "Pulsar's default"


@dataclass(frozen=True)
class Value:
    """A planned value and where it comes from (versions.from, lab.broker_config, the image's
    broker.conf, Pulsar's own default, or the id of the step that set it)."""
    value: Any
    source: str


class PlannedLab:
    """Per service: its release, its settings and whether it runs, as planned so far."""

    def __init__(self, experiment, plan, settings: LabSettings | None = None,
                 broker_defaults: dict[str, str] | None = None):
        self.experiment = experiment
        self.settings = settings or LabSettings()
        self.broker_defaults = conf_file_settings() if broker_defaults is None else dict(broker_defaults)
        self.releases: dict[str, Value] = {}
        self.configs: dict[str, dict[str, Value]] = {}
        self.states: dict[str, Value] = {}
        self.workload = plan.workload
        self.fresh(plan)

    def fresh(self, plan) -> None:
        """The lab a variant starts on when it gets a fresh one."""
        s, lab = self.settings, plan.lab
        self.releases, self.configs, self.states = {}, {}, {}
        if lab.pulsar:
            for name in s.broker_names:
                self.releases[name] = Value(self.experiment.versions.from_, "versions.from")
                self.configs[name] = {k: Value(str(v), "lab.broker_config") for k, v in lab.broker_config.items()}
            self.releases["proxy"] = Value(s.proxy_version, "the lab's proxy release")
            self.configs["proxy"] = {k: Value(str(v), "lab.proxy_config") for k, v in lab.proxy_config.items()}
        for name in s.services(pulsar=lab.pulsar, rabbitmq_nodes=lab.rabbitmq_nodes):
            self.states[name] = Value("running", "lab up")

    # -- what steps read ---------------------------------------------------------------------------
    def release(self, name: str) -> str:
        """from / to / fixed as the release number they stand for (X.Y.Z as written stays)."""
        return self.experiment.release(name)

    def brokers(self, numbers: list[int] | None = None) -> list[int]:
        """The broker numbers a step names (none named: every broker of the lab)."""
        return list(numbers) if numbers else list(range(1, self.settings.brokers + 1))

    def release_of(self, service: str) -> Value:
        return self.releases.get(service, Value(None, "not a Pulsar service"))

    def setting(self, service: str, key: str) -> Value:
        """A setting's planned value: set by the lab or a step, else the image's broker.conf
        (brokers), else Pulsar's own default (None)."""
        have = self.configs.get(service, {})
        if key in have:
            return have[key]
        if re.fullmatch(r"broker-\d+", service) and key in self.broker_defaults:
            return Value(self.broker_defaults[key], IMAGE_DEFAULT)
        return Value(None, PULSAR_DEFAULT)

    def state(self, service: str) -> Value:
        return self.states.get(service, Value("absent", "not part of this lab"))

    def workload_topics(self) -> int | None:
        """How many topics (partitions counted) the variant's workload writes, when its layout
        can be known before it runs (pulsar-topics: generated from the experiment's seed)."""
        layout, every = getattr(self.workload, "layout", None), getattr(self.workload, "every_topic", None)
        if not (callable(layout) and callable(every)):
            return None
        layout(self.experiment.seed)
        return len(every())

    # -- what the plan does with a step's changes --------------------------------------------------
    def apply(self, changes: list[Change], by: str) -> None:
        """Record what lasts of `changes` (made by the step `by`)."""
        for c in changes:
            if not c.lasting:
                continue
            if c.what == "release":
                self.releases[c.service] = Value(c.after, by)
            elif c.what == "setting" and c.key:
                if c.after is None:
                    self.configs.setdefault(c.service, {}).pop(c.key, None)
                else:
                    self.configs.setdefault(c.service, {})[c.key] = Value(c.after, by)
            elif c.what == "state":
                self.states[c.service] = Value(c.after, by)
