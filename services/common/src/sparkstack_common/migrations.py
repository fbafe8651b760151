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
