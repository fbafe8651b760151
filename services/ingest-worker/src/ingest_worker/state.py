"""What each codebase looked like when it was last ingested: one row per file, with the
content hash and the rag-server documents it produced. Re-ingesting compares against this.
The table is a migration of :mod:`sparkstack_common.ingestion.schema`."""

from __future__ import annotations

import asyncio
import contextlib
import json
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
    links_doc_id: str | None = None  # its cross-file links in rag-server (code files)

    @property
    def all_doc_ids(self) -> tuple[str, ...]:
        return (*self.doc_ids, self.links_doc_id) if self.links_doc_id else self.doc_ids


class CodebaseState:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def load(self, workspace: str, codebase: str) -> dict[str, FileState]:
        rows = await self.pool.fetch(
            "SELECT path, sha256, doc_ids, job_id, change, links_doc_id"
            " FROM ingest_codebase_files WHERE workspace = $1 AND codebase = $2",
            workspace,
            codebase,
        )
        return {
            r["path"]: FileState(
                r["sha256"],
                tuple(r["doc_ids"]),
                str(r["job_id"]) if r["job_id"] else None,
                r["change"],
                r["links_doc_id"],
            )
            for r in rows
        }

    async def record(
        self,
        workspace: str,
        codebase: str,
        job_id: str,
        files: list[tuple[str, str, list[str], str, dict | None]],
    ) -> None:
        """Files now in rag-server: (path, sha256, doc ids, added|changed, link data), by
        ``job_id``. A file's old links document stays recorded until the linker replaces
        it."""
        if not files:
            return
        await self.pool.executemany(
            """
            INSERT INTO ingest_codebase_files
                (workspace, codebase, path, sha256, doc_ids, job_id, change, graph)
            VALUES ($1, $2, $3, $4, $5, $6::uuid, $7, $8::text::jsonb)
            ON CONFLICT (workspace, codebase, path) DO UPDATE
            SET sha256 = EXCLUDED.sha256, doc_ids = EXCLUDED.doc_ids, updated_at = now(),
                job_id = EXCLUDED.job_id, change = EXCLUDED.change, graph = EXCLUDED.graph
            """,
            [
                (workspace, codebase, p, sha, ids, job_id, ch, json.dumps(g) if g else None)
                for p, sha, ids, ch, g in files
            ],
        )

    async def graphs(
        self, workspace: str, codebase: str
    ) -> list[tuple[str, str, dict, str | None]]:
        """(path, sha256, link data, links doc id) of every code file of the codebase."""
        rows = await self.pool.fetch(
            "SELECT path, sha256, graph::text AS graph, links_doc_id FROM ingest_codebase_files"
            " WHERE workspace = $1 AND codebase = $2 AND graph IS NOT NULL ORDER BY path",
            workspace,
            codebase,
        )
        return [(r["path"], r["sha256"], json.loads(r["graph"]), r["links_doc_id"]) for r in rows]

    async def set_links(
        self, workspace: str, codebase: str, links: list[tuple[str, str | None]]
    ) -> None:
        """(path, links doc id or None) after the linker wrote them."""
        if links:
            await self.pool.executemany(
                "UPDATE ingest_codebase_files SET links_doc_id = $4"
                " WHERE workspace = $1 AND codebase = $2 AND path = $3",
                [(workspace, codebase, p, d) for p, d in links],
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
