"""Prometheus metrics of one rag-server app (own registry: no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.instances = Gauge("rag_instances", "LightRAG instances in the pool", registry=r)
        self.instances_created = Counter("rag_instances_created", "Instances built", registry=r)
        self.instances_evicted = Counter(
            "rag_instances_evicted", "Idle instances closed by the pool", registry=r
        )
        self.documents = Counter(
            "rag_documents_enqueued", "Documents accepted for indexing", registry=r
        )
        self.pipeline_runs = Counter(
            "rag_pipeline_runs", "Background indexing runs", ["outcome"], registry=r
        )
        self.given_embeddings = Counter(
            "rag_given_query_embeddings",
            "Query vectors sent by the caller: used, or ignored (another model or size)",
            ["outcome"],
            registry=r,
        )
        self.queries = Counter("rag_queries", "Queries", ["endpoint", "mode"], registry=r)
        self.query_seconds = Histogram(
            "rag_query_seconds", "Query time", ["endpoint", "mode"], registry=r
        )
