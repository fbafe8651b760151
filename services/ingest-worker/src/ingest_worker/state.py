"""What each codebase looked like when it was last ingested: one row per file, with the
content hash and the rag-server documents it produced. Re-ingesting compares against this."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

SCHEMA = """
CREATE TABLE IF NOT EXISTS ingest_codebase_files (
    workspace text NOT NULL,
    codebase text NOT NULL,
    path text NOT NULL,
    sha256 text NOT NULL,
    doc_ids text[] NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace, codebase, path)
);
"""

# Single documents uploaded one at a time share one "codebase" per workspace, keyed by name.
DOCUMENTS = "~documents"


@dataclass(frozen=True)
class FileState:
    sha256: str
    doc_ids: tuple[str, ...]


class CodebaseState:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def ensure_schema(self) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7349205531)")
            await conn.execute(SCHEMA)

    async def load(self, workspace: str, codebase: str) -> dict[str, FileState]:
        rows = await self.pool.fetch(
            "SELECT path, sha256, doc_ids FROM ingest_codebase_files"
            " WHERE workspace = $1 AND codebase = $2",
            workspace,
            codebase,
        )
        return {r["path"]: FileState(r["sha256"], tuple(r["doc_ids"])) for r in rows}

    async def record(
        self, workspace: str, codebase: str, files: list[tuple[str, str, list[str]]]
    ) -> None:
        """Files now in rag-server: (path, sha256, doc ids)."""
        if not files:
            return
        await self.pool.executemany(
            """
            INSERT INTO ingest_codebase_files (workspace, codebase, path, sha256, doc_ids)
            VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (workspace, codebase, path) DO UPDATE
            SET sha256 = EXCLUDED.sha256, doc_ids = EXCLUDED.doc_ids, updated_at = now()
            """,
            [(workspace, codebase, p, sha, ids) for p, sha, ids in files],
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
