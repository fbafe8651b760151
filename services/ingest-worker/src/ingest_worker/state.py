"""What each codebase looked like when it was last ingested: one row per file, with the
content hash and the rag-server documents it produced. Re-ingesting compares against this.
The table is a migration of :mod:`sparkstack_common.ingestion.schema`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg

# Single documents uploaded one at a time share one "codebase" per workspace, keyed by name.
DOCUMENTS = "~documents"


@dataclass(frozen=True)
class FileState:
    sha256: str
    doc_ids: tuple[str, ...]
    job_id: str | None = None  # the job that last wrote it
    change: str | None = None  # how: added or changed


class CodebaseState:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, workspace: str, codebase: str) -> dict[str, FileState]:
        rows = await self.pool.fetch(
            "SELECT path, sha256, doc_ids, job_id, change FROM ingest_codebase_files"
            " WHERE workspace = $1 AND codebase = $2",
            workspace,
            codebase,
        )
        return {
            r["path"]: FileState(
                r["sha256"],
                tuple(r["doc_ids"]),
                str(r["job_id"]) if r["job_id"] else None,
                r["change"],
            )
            for r in rows
        }

    async def record(
        self,
        workspace: str,
        codebase: str,
        job_id: str,
        files: list[tuple[str, str, list[str], str]],
    ) -> None:
        """Files now in rag-server: (path, sha256, doc ids, added|changed), by ``job_id``."""
        if not files:
            return
        await self.pool.executemany(
            """
            INSERT INTO ingest_codebase_files
                (workspace, codebase, path, sha256, doc_ids, job_id, change)
            VALUES ($1, $2, $3, $4, $5, $6::uuid, $7)
            ON CONFLICT (workspace, codebase, path) DO UPDATE
            SET sha256 = EXCLUDED.sha256, doc_ids = EXCLUDED.doc_ids, updated_at = now(),
                job_id = EXCLUDED.job_id, change = EXCLUDED.change
            """,
            [(workspace, codebase, p, sha, ids, job_id, ch) for p, sha, ids, ch in files],
        )

    async def forget(self, workspace: str, codebase: str, paths: list[str]) -> None:
        if paths:
            await self.pool.execute(
                "DELETE FROM ingest_codebase_files"
                " WHERE workspace = $1 AND codebase = $2 AND path = ANY($3::text[])",
                workspace,
                codebase,
                paths,
            )


@contextlib.asynccontextmanager
async def codebase_lock(
    pool: asyncpg.Pool,
    workspace: str,
    codebase: str,
    while_waiting: Callable[[], Awaitable[None]],
    poll: float = 1.0,
) -> AsyncIterator[None]:
    """One job at a time per (workspace, codebase), across every worker: a session-level
    advisory lock on a connection held for the duration (it goes with the connection if the
    worker dies). ``while_waiting`` runs while another job holds it (the caller's heartbeat)."""
    async with pool.acquire() as conn:
        key = f"codebase:{workspace}/{codebase}"
        while not await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key):
            await while_waiting()
            await asyncio.sleep(poll)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", key)
