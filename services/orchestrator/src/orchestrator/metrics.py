"""Prometheus metrics of one orchestrator app (own registry: no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "orchestrator_requests", "Requests answered", ["endpoint", "status"], registry=r
        )
        self.overhead = Histogram(
            "orchestrator_overhead_seconds",
            "Time spent in the orchestrator itself, around the backend call",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.disconnects = Counter(
            "orchestrator_client_disconnects",
            "Clients that left mid-request",
            ["phase"],
            registry=r,
        )
        self.backend_errors = Counter(
            "orchestrator_backend_errors",
            "Error answers from backends",
            ["role", "status"],
            registry=r,
        )
        self.memory = Counter(
            "orchestrator_memory_tier", "Memory tier outcomes", ["tier", "state"], registry=r
        )
        self.memory_seconds = Histogram(
            "orchestrator_memory_seconds", "Time to fetch a memory tier", ["tier"], registry=r
        )
        self.pool_wait = Histogram(
            "orchestrator_pool_wait_seconds",
            "Time waited for a Redis command slot (redis) or a memory-fetch slot (memory)",
            ["pool"],
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.turn_batch = Histogram(
            "orchestrator_turn_batch_size",
            "Turns written to PostgreSQL in one statement",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.promotions = Counter(
            "orchestrator_promotions", "Background promotions", ["kind", "outcome"], registry=r
        )
