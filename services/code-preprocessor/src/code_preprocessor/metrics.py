"""Prometheus metrics of one code-preprocessor app (own registry: no process-global state)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .model import FileResult


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.files = Counter(
            "preprocessor_files", "Files processed", ["language", "status"], registry=r
        )
        self.bytes = Counter("preprocessor_bytes", "Bytes of files processed", registry=r)
        self.chunks = Counter("preprocessor_chunks", "Chunks produced", registry=r)
        self.seconds = Histogram(
            "preprocessor_request_seconds", "Time to answer a request", ["endpoint"], registry=r
        )
        self.documents_sent = Counter(
            "preprocessor_documents_sent", "Documents sent to rag-server", registry=r
        )
        self.workers_replaced = Gauge(
            "preprocessor_workers_replaced",
            "Parser workers replaced after dying, running out of memory or overrunning",
            registry=r,
        )
        self.rag_errors = Counter(
            "preprocessor_rag_server_errors", "Failed calls to rag-server", registry=r
        )

    def record(self, results: list[FileResult]) -> None:
        for r in results:
            self.files.labels(r.language or "unknown", r.status).inc()
            self.bytes.inc(r.size)
            self.chunks.inc(len(r.chunks))
