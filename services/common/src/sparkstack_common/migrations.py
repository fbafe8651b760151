"""One ordered schema history for the stack's PostgreSQL database.

Every service that owns tables runs :func:`migrate` at start-up (and again whenever the
database was unreachable): migrations are applied in version order, each in its own
transaction, under one advisory lock, and recorded in ``schema_migrations``, so several
processes starting at once apply each exactly once. A migration is never edited after it has
shipped; a change is a new migration.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from sparkstack_common.ingestion import schema as ingestion

# One key for every process that changes the schema.
MIGRATION_LOCK = 0x5350_4B5F_4D49_4752


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "api keys: hashed, named, scoped to workspaces (or admin), revocable",
        """
        CREATE TABLE IF NOT EXISTS api_keys (
            id           uuid PRIMARY KEY,
            name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
            digest       bytea NOT NULL UNIQUE,
            hint         text NOT NULL,
            admin        boolean NOT NULL DEFAULT false,
            workspaces   text[] NOT NULL DEFAULT '{}',
            created_at   timestamptz NOT NULL DEFAULT now(),
            last_used_at timestamptz,
            revoked_at   timestamptz
        );
        CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name_idx
            ON api_keys (name) WHERE revoked_at IS NULL;
        """,
    ),
    Migration(2, "ingestion: uploads, jobs, outbox", ingestion.UPLOADS_JOBS_OUTBOX),
    Migration(3, "ingestion: searchable jobs, tracked documents", ingestion.SEARCHABLE_JOBS),
    Migration(4, "ingestion: codebase file state", ingestion.CODEBASE_FILES),
    Migration(
        5,
        "rag-server: the workspaces it holds (cluster and postgres profiles)",
        """
        CREATE TABLE IF NOT EXISTS rag_server_workspaces (
            name       text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    Migration(
        6,
        "recall: sessions and their messages (summaries, whose vector size is the embedding "
        "model's, are created by the orchestrator for its dimension)",
        """
        CREATE EXTENSION IF NOT EXISTS vector;
        CREATE TABLE IF NOT EXISTS sessions (
            id                 text PRIMARY KEY,
            workspace          text NOT NULL,
            created_at         timestamptz NOT NULL DEFAULT now(),
            last_seen_at       timestamptz NOT NULL DEFAULT now(),
            title              text,
            model              text,
            turn_count         integer NOT NULL DEFAULT 0,
            promoted_upto_turn integer NOT NULL DEFAULT 0,
            archived_upto_turn integer NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS sessions_workspace_seen_idx
            ON sessions (workspace, last_seen_at DESC);
        CREATE INDEX IF NOT EXISTS sessions_seen_idx ON sessions (last_seen_at DESC);
        CREATE TABLE IF NOT EXISTS messages (
            id         bigserial PRIMARY KEY,
            workspace  text NOT NULL,
            session_id text NOT NULL,
            turn       integer NOT NULL,
            role       text NOT NULL,
            content    text NOT NULL DEFAULT '',
            extra      jsonb,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX IF NOT EXISTS messages_session_turn_idx ON messages (session_id, turn, id);
        CREATE INDEX IF NOT EXISTS messages_workspace_idx ON messages (workspace, created_at);
        """,
    ),
    Migration(7, "ingestion: code graph link data per file", ingestion.CODE_GRAPH),
    Migration(
        8,
        "rag-server: the embedding model each workspace was built with",
        """
        ALTER TABLE rag_server_workspaces
            ADD COLUMN IF NOT EXISTS embed_model text,
            ADD COLUMN IF NOT EXISTS embed_dim   integer;
        """,
    ),
    Migration(
        9,
        "recall: the embedding model the summaries' vectors were made with (one row)",
        """
        CREATE TABLE IF NOT EXISTS recall_embedder (
            only_row   boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            model      text NOT NULL,
            dimensions integer NOT NULL
        );
        """,
    ),
)


async def migrate(pool: asyncpg.Pool, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply what is missing; returns the versions applied by this call."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError("migration versions must be unique and ascending")
    applied: list[int] = []
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    integer PRIMARY KEY,
                    name       text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )
                """
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                applied.append(migration.version)
    return applied
