"""A realistic, high-cardinality topic layout: many tenants `orga_<uuid>`, each with a `logs`
namespace holding non-partitioned and partitioned topics. Deterministic for a given seed, so a
replay creates the same names."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    tenant: str
    namespace: str
    name: str
    partitions: int  # 0 = non-partitioned

    @property
    def fqn(self) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Layout:
    topics: tuple[Topic, ...]

    @property
    def tenants(self) -> list[str]:
        return sorted({t.tenant for t in self.topics})

    @property
    def namespaces(self) -> list[str]:
        return sorted({f"{t.tenant}/{t.namespace}" for t in self.topics})

    @classmethod
    def generate(cls, tenants: int, topics_per_tenant: int, partitioned_every: int = 5,
                 partitions: int = 3, seed: int = 0, namespace: str = "logs") -> "Layout":
        rng = random.Random(seed)
        topics = []
        for _ in range(tenants):
            tenant = f"orga_{uuid.UUID(int=rng.getrandbits(128), version=4)}"
            for i in range(topics_per_tenant):
                parted = partitioned_every > 0 and i % partitioned_every == partitioned_every - 1
                name = f"{'metrics' if parted else 'app'}-{i:03d}"
                topics.append(Topic(tenant, namespace, name, partitions if parted else 0))
        return cls(tuple(topics))
