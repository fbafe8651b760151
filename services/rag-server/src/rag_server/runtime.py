"""What one rag-server process holds: the instance pool, the registry, background work."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from lightrag import LightRAG
from lightrag.kg.shared_storage import (
    commit_manual_retry_request,
    get_namespace_data,
    get_namespace_lock,
    get_pipeline_ingress,
)

from . import reindex
from .deferred import ModelWatch, PendingDocuments
from .instances import InstanceFactory, clear_query_cache
from .metrics import Metrics
from .pool import WorkspacePool
from .registry import EmbedderId, WorkspaceRegistry
from .scores import ChunkVectors
from .settings import Settings

log = logging.getLogger("rag_server")


@dataclass
class RagRuntime:
    settings: Settings
    factory: InstanceFactory
    registry: WorkspaceRegistry
    metrics: Metrics
    pool: WorkspacePool[LightRAG] = field(init=False)
    # prose waiting for an extraction model (deferred.py)
    pending: PendingDocuments = field(init=False)
    model_watch: ModelWatch = field(init=False)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    # code documents of one workspace are written (and deleted) one batch at a time
    code_locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    # the last reindex of each workspace since start (running, done or failed)
    reindexes: dict[str, reindex.Progress] = field(default_factory=dict)
    _evicted_seen: int = 0
    # vectors of chunks recently scored (scores.py)
    chunk_vectors: ChunkVectors = field(init=False)

    def code_lock(self, workspace: str) -> asyncio.Lock:
        return self.code_locks.setdefault(workspace, asyncio.Lock())

    def __post_init__(self) -> None:
        self.pool = WorkspacePool(self._build, self.factory.close, self.settings.max_workspaces)
        self.pending = PendingDocuments(self.settings.data_dir / "extraction-pending.json")
        self.model_watch = ModelWatch(self.factory.llm)
        self.chunk_vectors = ChunkVectors(self.settings.score_vector_cache_mb << 20)

    @property
    def embedder(self) -> EmbedderId:
        return EmbedderId(self.settings.embed_model, self.settings.embed_dim)

    async def embedder_refusal(self, workspace: str) -> str | None:
        """Why ``workspace`` cannot be searched or written with the current embedding model,
        or None. A workspace made before embedders were recorded adopts the current one."""
        recorded = await self.registry.embedder(workspace)
        if recorded is None:
            await self.registry.set_embedder(workspace, self.embedder)
            return None
        if recorded == self.embedder:
            return None
        running = self.reindexing(workspace)
        return (
            f"workspace {workspace!r} was built with the embedding model {recorded}, and "
            f"rag-server now embeds with {self.embedder}: their vectors cannot be compared. "
            + (
                f"It is being reindexed: {running}."
                if running
                else f"Reindex it with {self.embedder.model} (`sparkstack workspaces reindex "
                f"{workspace}`, or POST /v1/workspaces/{workspace}/reindex), embed with "
                f"{recorded.model} again (RAG_SERVER_EMBED_MODEL; the local stack: --embedder), "
                "or delete the workspace and ingest it again"
            )
        )

    def reindexing(self, workspace: str) -> reindex.Progress | None:
        progress = self.reindexes.get(workspace)
        return progress if progress is not None and progress.state == reindex.RUNNING else None

    async def start_reindex(self, workspace: str) -> reindex.Progress:
        """Rebuild the workspace's vectors with today's embedder, in the background; a
        reindex already running is returned as it is. One built with today's embedder
        needs none (ReindexRefused)."""
        if running := self.reindexing(workspace):
            return running
        recorded = await self.registry.embedder(workspace)
        if recorded is None or recorded == self.embedder:
            raise reindex.ReindexRefused(
                f"workspace {workspace!r} is built with {self.embedder} already: nothing to do"
            )
        progress = self.reindexes[workspace] = reindex.Progress(workspace, recorded, self.embedder)
        task = asyncio.create_task(reindex.run(self, progress), name=f"reindex:{workspace}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return progress

    async def _build(self, workspace: str) -> LightRAG:
        await self.registry.add(workspace, self.embedder)
        # one built with another embedding model is opened with its vectors' size: its graph
        # and documents are read as before, its searches and writes refused until reindexed
        recorded = await self.registry.embedder(workspace)
        rag = await self.factory.build(workspace, embedder=recorded)
        self.metrics.instances_created.inc()
        return rag

    def observe_pool(self) -> None:
        self.metrics.instances.set(len(self.pool))
        if self.pool.evicted > self._evicted_seen:
            self.metrics.instances_evicted.inc(self.pool.evicted - self._evicted_seen)
            self._evicted_seen = self.pool.evicted

    def process_in_background(self, workspace: str) -> None:
        """Run the workspace's indexing pipeline off the request, holding a lease on its
        instance so eviction never closes it mid-run."""
        task = asyncio.create_task(self._process(workspace), name=f"pipeline:{workspace}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _process(self, workspace: str) -> None:
        try:
            async with self.pool.lease(workspace) as rag:
                await rag.apipeline_process_enqueue_documents()
                await clear_query_cache(rag)
            self.metrics.pipeline_runs.labels("completed").inc()
        except Exception:
            # documents keep their failed status and reason; a later run retries them
            log.exception("indexing pipeline of workspace %s failed", workspace)
            self.metrics.pipeline_runs.labels("failed").inc()
        finally:
            self.observe_pool()

    async def retry_failed(self, workspace: str) -> str | None:
        """Ask the workspace's pipeline to retry its failed documents (once each) and run it.
        Returns LightRAG's reason when it refuses (a delete is dropping storages, say)."""
        async with self.pool.lease(workspace):  # the pipeline status exists once built
            status = await get_namespace_data("pipeline_status", workspace=workspace)
            lock = get_namespace_lock("pipeline_status", workspace=workspace)
            ingress = await get_pipeline_ingress(workspace)
            refusal = await commit_manual_retry_request(
                status, lock, ingress, f"retry-{uuid.uuid4().hex[:12]}", {}
            )
        if refusal is None:
            self.process_in_background(workspace)
        return refusal

    async def drain(self, grace: float = 30.0) -> None:
        # a reindex is not waited for: stopped, it leaves the old index as it was, and the
        # next run starts over
        for task in self.tasks:
            if task.get_name().startswith("reindex:"):
                task.cancel()
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in pending:
                task.cancel()
        await self.pool.close_all(grace)
