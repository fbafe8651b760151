"""Prometheus metrics of the worker (own registry)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.jobs = Counter("ingest_jobs", "Job attempts by outcome", ["outcome"], registry=r)
        self.messages = Counter(
            "ingest_messages", "Messages by what was done with them", ["action"], registry=r
        )
        self.in_flight = Gauge("ingest_jobs_in_flight", "Jobs running now", registry=r)
        self.seconds = Histogram(
            "ingest_job_seconds",
            "Job attempt duration",
            registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
        )
