"""What one orchestrator process holds, built in the app's lifespan and closed with it."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sparkstack_common.auth import redact_url, secret_value
from sparkstack_common.catalog import Catalog
from sparkstack_common.embeddings import Embedder
from sparkstack_common.http import HTTP, HTTPError
from sparkstack_common.migrations import migrate
from sparkstack_common.rag_client import RagRefused, RagUnavailable
from sparkstack_common.retry import until_done

from .archival import ArchivalClient
from .keys import Keyring, KeyStore
from .memory import Memory
from .metrics import Metrics
from .promotion import Promoter, Summarizer
from .recall import SERVER_SETTINGS as recall_settings
from .recall import RecallStore
from .redis_wire import Redis
from .settings import Settings
from .turn_writer import TurnWriter
from .working_memory import WorkingMemory, WorkingMemoryUnavailable, redis_client

log = logging.getLogger("orchestrator")


async def keep_session(conn: asyncpg.Connection) -> None:
    """What a connection goes back to the pool with: as it is. asyncpg's default reset sends
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on every release (a round
    trip, and 6 % of the orchestrator's CPU in a burst); nothing here leaves session state
    behind (no SET, LISTEN, session advisory lock or cursor outside a transaction; the
    search settings come with the connection), and asyncpg still rolls back a transaction
    left open before this is called."""


@dataclass
class Runtime:
    settings: Settings
    catalog: Catalog
    metrics: Metrics
    http: HTTP
    redis: Redis | None = None
    pool: asyncpg.Pool | None = None
    keyring: Keyring | None = None
    working: WorkingMemory | None = None
    recall: RecallStore | None = None
    embedder: Embedder | None = None
    archive: ArchivalClient | None = None
    promoter: Promoter | None = None
    memory: Memory | None = None
    ingestion: Any = None
    _schema_task: asyncio.Task[None] | None = field(default=None, repr=False)
    _warm_task: asyncio.Task[None] | None = field(default=None, repr=False)

    async def start(self) -> None:
        s = self.settings
        rag_key = secret_value(s.rag_server_api_key)
        if rag_key is None:
            log.warning(
                "ORCHESTRATOR_RAG_SERVER_API_KEY is not set: rag-server will refuse archival "
                "lookups and workspace listings"
            )
        self.archive = ArchivalClient(self.http, s.rag_server_url, rag_key)
        # One pool for keys, recall and ingestion. min_size=0: the orchestrator starts (and
        # answers what it can) while PostgreSQL is down.
        self.pool = await asyncpg.create_pool(
            s.postgres_dsn,
            password=secret_value(s.postgres_password),
            min_size=0,
            max_size=s.postgres_pool_size,
            command_timeout=10,
            timeout=s.postgres_timeout_seconds,
            server_settings=recall_settings,
            reset=keep_session,
        )
        self.keyring = Keyring(
            KeyStore(self.pool), secret_value(s.admin_key), cache_seconds=s.key_cache_seconds
        )
        self.keyring.start()
        if s.memory_enabled:
            self._start_memory()
            assert self.working is not None
            self._warm_task = asyncio.create_task(
                until_done("working memory", self.working.warm, (WorkingMemoryUnavailable,))
            )
        self._schema_task = asyncio.create_task(self._ensure_schema())

    def _start_memory(self) -> None:
        s = self.settings
        assert self.pool is not None and self.archive is not None
        self.redis = redis_client(
            s.redis_url,
            password=secret_value(s.redis_password),
            max_in_flight=s.redis_max_in_flight,
        )
        self.working = WorkingMemory(
            self.redis,
            s.working_ttl_seconds,
            s.working_max_messages,
            max_concurrency=s.redis_max_in_flight,
            observe_wait=self.metrics.pool_wait.labels("redis").observe,
        )
        embed_model = s.embed_model or self.catalog.role("embed").tag
        self.recall = RecallStore(self.pool, s.embedding_dim, embed_model)
        extract_model = self.catalog.role("extract").tag
        embedder = Embedder(
            self.http,
            s.embed_url,
            embed_model,
            s.embedding_dim,
            secret_value(s.embed_api_key) or s.backend_api_key,
            dim_setting="ORCHESTRATOR_EMBEDDING_DIM",
        )
        summarizer = Summarizer(self.http, s.extract_url, extract_model, s.backend_api_key)
        self.promoter = Promoter(
            self.recall,
            self.archive,
            embedder,
            summarizer,
            promote_after_turns=s.promote_after_turns,
            archival_after_turns=s.archival_after_turns,
            concurrency=s.promotion_concurrency,
        )
        writer = TurnWriter(
            self.recall,
            window=s.turn_batch_window_ms / 1000,
            observe_batch=self.metrics.turn_batch.observe,
        )
        writer.start()
        self.embedder = embedder
        self.memory = Memory(
            s,
            self.working,
            self.recall,
            self.archive,
            embedder,
            self.metrics,
            writer,
            promote=self.promoter.maybe_promote,
        )

    async def _ensure_schema(self) -> None:
        """Retried until PostgreSQL answers: memory degrades meanwhile, requests go on."""
        assert self.pool is not None and self.keyring is not None
        await until_done("database schema", lambda: migrate(self.pool), (Exception,))
        self.keyring.schema_ready.set()
        recall, embedder = self.recall, self.embedder
        if recall is not None:
            # summaries of another embedding model are embedded again (once it answers)
            embed = embedder.embed if embedder is not None else None
            await until_done("recall schema", lambda: recall.ensure_schema(embed), (Exception,))

    async def close(self) -> None:
        if self.ingestion is not None:
            await self.ingestion.close()
        for task in (self._schema_task, self._warm_task):
            if task is not None:
                task.cancel()
        if self.keyring is not None:
            await self.keyring.close()
        if self.memory is not None:
            await self.memory.drain()
        if self.promoter is not None:
            await self.promoter.drain(cancel_after=10.0)
        if self.pool is not None:
            await self.pool.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def workspace_sources(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        if self.pool is not None and self.recall is not None:
            try:
                rows = await self.pool.fetch("SELECT DISTINCT workspace FROM sessions")
                found["sessions"] = {r["workspace"] for r in rows}
            except Exception as exc:
                log.warning("workspaces from sessions: %s", exc)
        if self.pool is not None and self.ingestion is not None:
            try:
                rows = await self.pool.fetch("SELECT DISTINCT workspace FROM ingest_jobs")
                found["jobs"] = {r["workspace"] for r in rows}
            except Exception as exc:
                log.warning("workspaces from jobs: %s", exc)
        assert self.archive is not None
        try:
            found["rag-server"] = set(await self.archive.rag.workspaces())
        except (RagUnavailable, RagRefused) as exc:
            log.warning("workspaces from rag-server: %s", exc)
        return found

    # -- readiness --------------------------------------------------------------------------
    async def check_redis(self) -> tuple[bool, str]:
        if self.working is None:
            return True, "memory disabled"
        try:
            await self.working.ping()
            return True, "reachable"
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def check_postgres(self) -> tuple[bool, str]:
        if self.pool is None:
            return False, "not started"
        try:
            await self.pool.fetchval("SELECT 1", timeout=2)
            if self._schema_task is not None and not self._schema_task.done():
                # not ready before the tables exist: a turn answered now could not be kept
                return False, "reachable; creating the schema"
            return True, "reachable"
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"

    async def check_rag_server(self) -> tuple[bool, str]:
        assert self.archive is not None
        return await self.archive.rag.reachable()

    async def check_backend(self, url: str) -> tuple[bool, str]:
        try:
            r = await self.http.get(f"{url}/models", timeout=2)
            return r.status_code < 500, f"{redact_url(url)} answered {r.status_code}"
        except HTTPError as exc:
            return False, f"{redact_url(url)} unreachable: {type(exc).__name__}"
