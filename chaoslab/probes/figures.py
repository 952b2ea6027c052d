"""What each probe puts into a second's sample, as typed models.

A probe writes plain JSON into the journal (so a report can be rebuilt from a run folder alone);
a condition reads it back through the probe's model (`Condition.figures(sample, probe_type)`),
never by string keys into nested dicts. Every field is optional: a probe's figures are merged
from loops that answer at different times, and a figure not there yet is simply None (the
condition then says *unknown*). Unknown extra figures are kept, so a probe may add some without
breaking older readers.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Figures(BaseModel):
    model_config = ConfigDict(extra="allow")
    probe_error: str | None = None


# -- pulsar-brokers (key `brokers`) -------------------------------------------------------------------
class BrokerFigures(Figures):
    metrics: dict[str, float | None] | None = None
    metrics_ok: bool | None = None
    shallow_ok: bool | None = None
    functional_ok: bool | None = None
    functional_detail: str | None = None
    version: str | None = None
    loadManagerClassName: str | None = None
    owned_bundles: int | None = None
    log_counts: dict[str, int] = {}
    log_new: dict[str, int] | None = None      # counted in the last slow period; None: log not read
    log_new_t: float | None = None             # when log_new was counted

    def metric(self, name: str) -> float | None:
        return (self.metrics or {}).get(name)


class BrokersFigures(Figures):
    """Per broker (broker-1, broker-2, ...); anything else the probe wrote stays in extras."""
    brokers: dict[str, BrokerFigures] = {}

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data):
        if isinstance(data, dict) and "brokers" not in data:
            return {"brokers": {k: v for k, v in data.items() if k.startswith("broker-")},
                    **{k: v for k, v in data.items() if not k.startswith("broker-")}}
        return data


# -- pulsar-cluster (key `cluster`) ---------------------------------------------------------------------
class FailedLookup(BaseModel):
    model_config = ConfigDict(extra="allow")
    topic: str
    answer: str = ""


class Ownership(BaseModel):
    model_config = ConfigDict(extra="allow")
    sampled: int = 0
    asked: str | None = None
    passed_over: str | None = None     # asked first, not there (refused / reset): asked `asked` instead
    unowned: int | None = None
    rejected: int = 0
    no_answer: int = 0
    failed_sample: list[FailedLookup] = []

    @property
    def answered(self) -> int:
        return self.sampled - self.rejected - self.no_answer


class Split(BaseModel):
    bundle: str
    brokers: list[str]


class ClusterFigures(Figures):
    system_topics: dict | None = None
    proxy: dict | None = None
    split: list[Split] | None = None             # None: ownership is not compared across brokers
    split_brokers_answered: int | None = None
    ownership: Ownership | None = None


# -- pulsar-client (key `client`) -----------------------------------------------------------------------
class ClientWindow(Figures):
    publish_ok: int = 0
    publish_failed: int = 0
    publish_success_rate: float | None = None
    publish_p50_ms: float | None = None
    publish_p99_ms: float | None = None
    lookup_ok: int = 0
    lookup_failed: int = 0
    lookup_stuck: int = 0
    reconnects: int = 0
    too_many_requests: int = 0
    errors: dict[str, int] = {}
    backlog: int | None = None
    acked_total: int | None = None
    window_secs: float | None = None
    lookups_expected: bool = False

    @property
    def publishes(self) -> int:
        return self.publish_ok + self.publish_failed

    def window_passed(self, elapsed: float | None) -> bool:
        return (elapsed or 0) > (self.window_secs or 0)


# -- broker-views (key `views`) -------------------------------------------------------------------------
class BrokerView(BaseModel):
    model_config = ConfigDict(extra="allow")
    state: str
    shallow: bool | None = None
    functional: bool | None = None
    workload: str | None = None
    detail: str = ""


class ViewsFigures(Figures):
    brokers: dict[str, BrokerView] = {}
    unattributed: dict[str, int] = {}


# -- rabbitmq-client (key `rabbitmq`) -------------------------------------------------------------------
class RabbitmqWindow(Figures):
    confirms: int = 0
    confirm_p50_ms: float | None = None
    confirm_p99_ms: float | None = None
    p99_ms_by_node: dict[str, float] = {}
    window_secs: float | None = None


# -- vm-agents (key `vms`) ------------------------------------------------------------------------------
class VmFigures(BaseModel):
    model_config = ConfigDict(extra="allow")
    cgroup: dict | None = None
    agent: dict | None = None            # the agent's last answer (kept while it does not answer)
    alive: bool | None = None
    agent_answered: bool | None = None   # did it answer this second
    agent_answer_secs: float | None = None   # how long the scrape took (answered or not)
    vcpus: float | None = None
    tasks_running: int | None = None     # threads in R state in the VM's cgroup this second
    tasks_blocked: int | None = None     # ... in D state
    load1: float | None = None           # the kernel's one-minute load average over R + D, per VM
    look_secs: float | None = None       # how long the lab's look at every VM took (the instrument's own pace)

    @property
    def buffer_events(self) -> float | None:
        return (self.agent or {}).get("vector_buffer_size_events")


class VmsFigures(Figures):
    vms: dict[str, VmFigures] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, data):
        if isinstance(data, dict) and "vms" not in data:
            return {"vms": {k: v for k, v in data.items() if isinstance(v, dict)},
                    **{k: v for k, v in data.items() if not isinstance(v, dict)}}
        return data
