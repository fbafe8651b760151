"""Recall memory: every message and the session summaries in PostgreSQL + pgvector.

Vectors travel as pgvector's text form (``'[0.1,0.2,...]'::vector``), not through the binary
codec of the ``pgvector`` package: the codec must be registered on every pooled connection
(the pool belongs to the application, and registration fails on a database where the
extension does not exist yet, which :meth:`RecallStore.ensure_schema` is the one to create),
and ``pgvector`` is no dependency of the orchestrator. We only ever send vectors (one per
summary and one per search) and never read them back, so the text form costs a few tens of
microseconds of formatting and parsing per call and nothing else.

Session ids are global: a session belongs to the workspace that first wrote it, and writing it
from another workspace raises :class:`SessionWorkspaceConflict`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import numpy as np
import orjson
from sparkstack_common.migrations import MIGRATION_LOCK, migrate

from .identity import text_of

log = logging.getLogger("orchestrator.recall")
TITLE_CHARS = 200
# Settings every connection of a pool that recall uses starts with (asyncpg's
# server_settings: no round trip): the HNSW index is scanned iteratively (pgvector 0.8), so
# the workspace and session filters cannot starve a search the way one ef_search pass would.
SERVER_SETTINGS = {"hnsw.iterative_scan": "strict_order"}
# Sessions and messages are migration 6 of the stack's one history; the summaries table is
# created here because its vector size is the embedding model's (``{dim}``).
SCHEMA = """
CREATE TABLE IF NOT EXISTS summaries (
    id         bigserial PRIMARY KEY,
    workspace  text NOT NULL,
    session_id text NOT NULL,
    upto_turn  integer NOT NULL,
    text       text NOT NULL,
    embedding  vector({dim}) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, upto_turn)
);
CREATE INDEX IF NOT EXISTS summaries_workspace_idx ON summaries (workspace, session_id);
CREATE INDEX IF NOT EXISTS summaries_embedding_hnsw_idx
    ON summaries USING hnsw (embedding vector_cosine_ops);
"""


def schema_sql(dim: int) -> str:
    if not isinstance(dim, int) or dim < 1:
        raise ValueError("dim must be a positive integer")
    return SCHEMA.replace("{dim}", str(dim))


class RecallError(RuntimeError):
    """Recall memory cannot do what was asked (for example a schema of another dimension)."""


class SessionWorkspaceConflict(RecallError):
    """The session id is already used in another workspace."""


@dataclass(frozen=True)
class RecallHit:
    session_id: str
    text: str
    similarity: float
    upto_turn: int = 0


@dataclass(frozen=True)
class SessionInfo:
    id: str
    workspace: str
    created_at: datetime
    last_seen_at: datetime
    title: str | None
    model: str | None
    turn_count: int
    promoted_upto_turn: int
    archived_upto_turn: int


@dataclass(frozen=True)
class StoredMessage:
    id: int
    turn: int
    role: str
    content: str
    created_at: datetime
    extra: dict[str, Any] | None = None

    @property
    def memory(self) -> dict[str, Any] | None:
        """What memory the orchestrator gave the model for this (assistant) message."""
        return (self.extra or {}).get("memory")

    def as_chat(self) -> dict[str, Any]:
        """The message as an OpenAI chat message again."""
        extra = dict(self.extra or {})
        parts = extra.pop("content_parts", None)
        extra.pop("memory", None)
        return {**extra, "role": self.role, "content": self.content if parts is None else parts}


@dataclass(frozen=True)
class Summary:
    session_id: str
    upto_turn: int
    text: str
    created_at: datetime


def vector_literal(embedding: Sequence[float] | np.ndarray, dim: int) -> str:
    """pgvector's text form of ``embedding`` (which is JSON's: ``[0.1,0.2]``); checks its
    length and that it is finite."""
    if len(embedding) != dim:
        raise ValueError(f"embedding has {len(embedding)} dimensions, expected {dim}")
    if isinstance(embedding, np.ndarray):
        if embedding.dtype.kind != "f":
            raise ValueError("embedding contains something other than numbers")
        finite = bool(np.isfinite(embedding).all())
    else:
        embedding = list(embedding)
        try:
            finite = math.isfinite(math.fsum(embedding))
        except TypeError as exc:
            raise ValueError("embedding contains something other than numbers") from exc
    if not finite:
        raise ValueError("embedding contains NaN or infinity")
    return orjson.dumps(embedding, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _session(row: asyncpg.Record) -> SessionInfo:
    return SessionInfo(
        id=row["id"],
        workspace=row["workspace"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        title=row["title"],
        model=row["model"],
        turn_count=row["turn_count"],
        promoted_upto_turn=row["promoted_upto_turn"],
        archived_upto_turn=row["archived_upto_turn"],
    )


def _title(messages: Sequence[dict[str, Any]]) -> str | None:
    for m in messages:
        if m.get("role") == "user":
            text = " ".join(text_of(m.get("content")).split())
            if text:
                return text[:TITLE_CHARS]
    return None


_UPSERT_SESSION = """
INSERT INTO sessions AS s (id, workspace, title, model, turn_count)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET
    last_seen_at = now(),
    title = COALESCE(s.title, EXCLUDED.title),
    model = COALESCE(EXCLUDED.model, s.model),
    turn_count = CASE WHEN $6 THEN s.turn_count + 1
                      ELSE GREATEST(s.turn_count, EXCLUDED.turn_count) END
WHERE s.workspace = EXCLUDED.workspace
RETURNING turn_count
"""

# One round trip for a batch of turns (at most one per session): count each turn on its
# session (created on first use, titled by its first user message; not when the session
# belongs to another workspace) and store its messages under that number, in their order.
_ADD_TURNS = """
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
        AS i(id, workspace, title, model)
), counted AS (
    INSERT INTO sessions AS s (id, workspace, title, model, turn_count)
    SELECT id, workspace, title, model, 1 FROM input
    ON CONFLICT (id) DO UPDATE SET
        last_seen_at = now(),
        title = COALESCE(s.title, EXCLUDED.title),
        model = COALESCE(EXCLUDED.model, s.model),
        turn_count = s.turn_count + 1
    WHERE s.workspace = EXCLUDED.workspace
    RETURNING s.id, s.workspace, s.turn_count
), stored AS (
    INSERT INTO messages (workspace, session_id, turn, role, content, extra)
    SELECT c.workspace, c.id, c.turn_count, m.role, m.content, m.extra::jsonb
    FROM unnest($5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY
        AS m(session_id, role, content, extra, n)
    JOIN counted c ON c.id = m.session_id
    ORDER BY m.n
)
SELECT id, turn_count FROM counted
"""

# What memory hands the turn writer: one request's new messages in one session.
TurnInput = tuple[str, str, Sequence[dict[str, Any]], str | None]  # workspace, session, msgs, model

_INSERT_MESSAGES = """
INSERT INTO messages (workspace, session_id, turn, role, content, extra)
SELECT $1, $2, $3, m.role, m.content, m.extra::jsonb
FROM unnest($4::text[], $5::text[], $6::text[]) AS m(role, content, extra)
"""


# texts embedded per call when the summaries are embedded again
REEMBED_BATCH = 64
Embed = Callable[[list[str]], Awaitable[list[list[float]]]]


class RecallStore:
    def __init__(self, pool: asyncpg.Pool, dim: int, model: str | None = None) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.pool = pool
        self.dim = dim
        self.model = model  # the embedding model's name, recorded with the summaries

    async def ensure_schema(self, embed: Embed | None = None) -> int:
        """Create the extension, tables and indexes if missing (idempotent; safe when several
        replicas start at once). Summaries embedded by another model (or another size) are
        embedded again with ``embed``, all in one transaction (a stop half-way changes
        nothing); without ``embed`` they are an error. Returns how many were embedded."""
        await migrate(self.pool)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(schema_sql(self.dim))
            existing = await conn.fetchval(
                "SELECT atttypmod FROM pg_attribute "
                "WHERE attrelid = 'summaries'::regclass AND attname = 'embedding'"
            )
            recorded = await conn.fetchval("SELECT model FROM recall_embedder")
            other_model = None not in (recorded, self.model) and recorded != self.model
            reembedded = 0
            if existing != self.dim or other_model:
                was = f"{recorded or 'an unrecorded model'} ({existing} dimensions)"
                if embed is None:
                    raise RecallError(
                        f"the summaries were embedded by {was} and the embedding model is "
                        f"{self.model or 'another'} ({self.dim} dimensions): start with an "
                        "embedder to embed them again, or configure the matching model"
                    )
                reembedded = await self._embed_again(conn, embed)
                log.warning(
                    "recall memory: %d summaries embedded again with %s (%d dimensions), were %s",
                    reembedded,
                    self.model,
                    self.dim,
                    was,
                )
            if self.model is not None:
                await conn.execute(
                    "INSERT INTO recall_embedder (model, dimensions) VALUES ($1, $2) "
                    "ON CONFLICT (only_row) DO UPDATE SET model = $1, dimensions = $2",
                    self.model,
                    self.dim,
                )
        return reembedded

    async def _embed_again(self, conn: asyncpg.Connection, embed: Embed) -> int:
        rows = await conn.fetch("SELECT id, text FROM summaries ORDER BY id")
        # the column is made again at the new size (its index goes with it), then filled a
        # batch at a time: only one batch's vectors are held (the transaction undoes it all
        # if the embedder fails)
        await conn.execute("ALTER TABLE summaries DROP COLUMN embedding")
        await conn.execute(f"ALTER TABLE summaries ADD COLUMN embedding vector({self.dim})")
        for start in range(0, len(rows), REEMBED_BATCH):
            batch = rows[start : start + REEMBED_BATCH]
            embedded = await embed([r["text"] for r in batch])
            await conn.executemany(
                "UPDATE summaries SET embedding = $2::vector WHERE id = $1",
                [
                    (r["id"], vector_literal(v, self.dim))
                    for r, v in zip(batch, embedded, strict=True)
                ],
            )
        await conn.execute("ALTER TABLE summaries ALTER COLUMN embedding SET NOT NULL")
        await conn.execute(schema_sql(self.dim))  # the index again
        return len(rows)

    # -- sessions and messages -------------------------------------------------------------
    async def record_session(
        self,
        workspace: str,
        session_id: str,
        *,
        model: str | None = None,
        title: str | None = None,
        turn_count: int = 0,
    ) -> None:
        """Create the session or touch it (last_seen_at, model; the title is kept once set;
        the turn count only grows)."""
        async with self.pool.acquire() as conn:
            await self._upsert(conn, workspace, session_id, title, model, turn_count, False)

    async def add_turn(
        self,
        workspace: str,
        session_id: str,
        messages: Sequence[dict[str, Any]],
        *,
        model: str | None = None,
    ) -> int:
        """Store one turn: count it on the session (created on first use, titled by its first
        user message) and store its messages under that turn number, in one statement.
        Returns the turn number (1 for the first). PostgreSQL's count is the durable one."""
        [result] = await self.add_turns([(workspace, session_id, messages, model)])
        if isinstance(result, SessionWorkspaceConflict):
            raise result
        return result

    async def add_turns(self, turns: Sequence[TurnInput]) -> list[int | SessionWorkspaceConflict]:
        """Store several turns in one round trip (each session at most once): per turn its
        number, or the conflict when its session belongs to another workspace."""
        sessions = [t[1] for t in turns]
        if len(set(sessions)) != len(sessions):
            raise ValueError("one turn per session in a batch")
        ids, workspaces, titles, models = [], [], [], []
        m_sessions, roles, contents, extras = [], [], [], []
        for workspace, session_id, messages, model in turns:
            ids.append(session_id)
            workspaces.append(workspace)
            titles.append(_title(messages))
            models.append(model)
            for role, content, extra in _message_rows(messages):
                m_sessions.append(session_id)
                roles.append(role)
                contents.append(content)
                extras.append(extra)
        rows = await self.pool.fetch(
            _ADD_TURNS, ids, workspaces, titles, models, m_sessions, roles, contents, extras
        )
        counted = {r["id"]: int(r["turn_count"]) for r in rows}
        out: list[int | SessionWorkspaceConflict] = []
        for workspace, session_id, _, _ in turns:
            if session_id in counted:
                out.append(counted[session_id])
            else:
                owner = await self.pool.fetchval(
                    "SELECT workspace FROM sessions WHERE id = $1", session_id
                )
                out.append(
                    SessionWorkspaceConflict(
                        f"session {session_id!r} belongs to workspace {owner!r}, not {workspace!r}"
                    )
                )
        return out

    async def add_messages(
        self,
        workspace: str,
        session_id: str,
        messages: Sequence[dict[str, Any]],
        turn: int,
    ) -> None:
        """Store messages under a turn number counted elsewhere (for example by working
        memory); the session row is created if needed and its turn count raised to ``turn``."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._upsert(conn, workspace, session_id, _title(messages), None, turn, False)
            await self._insert_messages(conn, workspace, session_id, turn, messages)

    async def messages(
        self,
        session_id: str,
        limit: int | None = None,
        *,
        after_turn: int = 0,
        upto_turn: int | None = None,
    ) -> list[StoredMessage]:
        """The session's messages in order; with ``limit``, the newest ``limit`` of them."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM (
                SELECT id, turn, role, content, extra, created_at FROM messages
                WHERE session_id = $1 AND turn > $2 AND ($3::int IS NULL OR turn <= $3)
                ORDER BY turn DESC, id DESC
                LIMIT $4
            ) newest ORDER BY turn, id
            """,
            session_id,
            after_turn,
            upto_turn,
            limit,
        )
        return [
            StoredMessage(
                id=r["id"],
                turn=r["turn"],
                role=r["role"],
                content=r["content"],
                created_at=r["created_at"],
                extra=json.loads(r["extra"]) if r["extra"] is not None else None,
            )
            for r in rows
        ]

    async def session(self, session_id: str) -> SessionInfo | None:
        row = await self.pool.fetchrow("SELECT * FROM sessions WHERE id = $1", session_id)
        return _session(row) if row else None

    async def sessions(
        self,
        workspace: str | None = None,
        limit: int = 50,
        offset: int = 0,
        workspaces: Sequence[str] | None = None,
    ) -> list[SessionInfo]:
        """Sessions, most recently seen first, of one workspace or all (``workspaces``: only
        those of a key's scope)."""
        rows = await self.pool.fetch(
            """
            SELECT * FROM sessions WHERE ($1::text IS NULL OR workspace = $1)
              AND ($4::text[] IS NULL OR workspace = ANY($4::text[]))
            ORDER BY last_seen_at DESC, id LIMIT $2 OFFSET $3
            """,
            workspace,
            limit,
            offset,
            None if workspaces is None else list(workspaces),
        )
        return [_session(r) for r in rows]

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session's messages, summaries and row; False when it did not exist."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM messages WHERE session_id = $1", session_id)
            await conn.execute("DELETE FROM summaries WHERE session_id = $1", session_id)
            status = await conn.execute("DELETE FROM sessions WHERE id = $1", session_id)
        return status != "DELETE 0"

    async def delete_workspace(self, workspace: str) -> list[str]:
        """Delete every session of the workspace with its messages and summaries; the ids."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM messages WHERE workspace = $1", workspace)
            await conn.execute("DELETE FROM summaries WHERE workspace = $1", workspace)
            rows = await conn.fetch(
                "DELETE FROM sessions WHERE workspace = $1 RETURNING id", workspace
            )
        return [r["id"] for r in rows]

    async def mark_promoted(self, session_id: str, upto_turn: int) -> None:
        await self.pool.execute(
            "UPDATE sessions SET promoted_upto_turn = GREATEST(promoted_upto_turn, $2) "
            "WHERE id = $1",
            session_id,
            upto_turn,
        )

    async def mark_archived(self, session_id: str, upto_turn: int) -> None:
        await self.pool.execute(
            "UPDATE sessions SET archived_upto_turn = GREATEST(archived_upto_turn, $2) "
            "WHERE id = $1",
            session_id,
            upto_turn,
        )

    # -- summaries -------------------------------------------------------------------------
    async def add_summary(
        self,
        workspace: str,
        session_id: str,
        upto_turn: int,
        text: str,
        embedding: Sequence[float],
        *,
        mark_promoted: bool = True,
    ) -> bool:
        """Store the summary of the session up to ``upto_turn``; False when one exists already
        (idempotent). With ``mark_promoted`` the session's promoted_upto_turn advances in the
        same transaction, so a summary never exists without its mark or the reverse."""
        literal = vector_literal(embedding, self.dim)
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.execute(
                """
                INSERT INTO summaries (workspace, session_id, upto_turn, text, embedding)
                VALUES ($1, $2, $3, $4, $5::vector)
                ON CONFLICT (session_id, upto_turn) DO NOTHING
                """,
                workspace,
                session_id,
                upto_turn,
                text,
                literal,
            )
            if mark_promoted:
                await conn.execute(
                    "UPDATE sessions SET promoted_upto_turn = GREATEST(promoted_upto_turn, $2) "
                    "WHERE id = $1",
                    session_id,
                    upto_turn,
                )
        return status == "INSERT 0 1"

    async def latest_summary(self, session_id: str, upto_turn: int | None = None) -> Summary | None:
        """The newest summary of the session (covering at most ``upto_turn``)."""
        row = await self.pool.fetchrow(
            """
            SELECT session_id, upto_turn, text, created_at FROM summaries
            WHERE session_id = $1 AND ($2::int IS NULL OR upto_turn <= $2)
            ORDER BY upto_turn DESC LIMIT 1
            """,
            session_id,
            upto_turn,
        )
        if row is None:
            return None
        return Summary(row["session_id"], row["upto_turn"], row["text"], row["created_at"])

    async def search(
        self,
        workspace: str,
        embedding: Sequence[float],
        exclude_session: str | None,
        top_k: int,
        min_similarity: float,
    ) -> list[RecallHit]:
        """Summaries of other sessions of ``workspace`` most similar to ``embedding``
        (cosine similarity at least ``min_similarity``), best first, one per session.

        The HNSW index is scanned iteratively (pgvector 0.8), so the workspace and session
        filters cannot starve the result the way a single ``ef_search`` pass would.
        """
        if top_k <= 0:
            return []
        literal = vector_literal(embedding, self.dim)
        # hnsw.iterative_scan comes with every pooled connection (SERVER_SETTINGS)
        rows = await self.pool.fetch(
            """
            WITH nearest AS MATERIALIZED (
                SELECT session_id, upto_turn, text, embedding <=> $1::vector AS distance
                FROM summaries
                WHERE workspace = $2 AND ($3::text IS NULL OR session_id <> $3)
                ORDER BY embedding <=> $1::vector
                LIMIT $4
            ),
            best AS (
                SELECT DISTINCT ON (session_id) session_id, upto_turn, text, distance
                FROM nearest
                WHERE 1 - distance >= $5
                ORDER BY session_id, distance, upto_turn DESC
            )
            SELECT session_id, upto_turn, text, 1 - distance AS similarity
            FROM best ORDER BY distance, session_id LIMIT $6
            """,
            literal,
            workspace,
            exclude_session,
            top_k * 4,  # a session may own several summaries; one hit per session
            min_similarity,
            top_k,
        )
        return [
            RecallHit(
                session_id=r["session_id"],
                text=r["text"],
                similarity=float(r["similarity"]),
                upto_turn=r["upto_turn"],
            )
            for r in rows
        ]

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    async def _upsert(
        conn: asyncpg.Connection,
        workspace: str,
        session_id: str,
        title: str | None,
        model: str | None,
        turn_count: int,
        count_turn: bool,
    ) -> int:
        turn = await conn.fetchval(
            _UPSERT_SESSION, session_id, workspace, title, model, turn_count, count_turn
        )
        if turn is None:
            owner = await conn.fetchval("SELECT workspace FROM sessions WHERE id = $1", session_id)
            raise SessionWorkspaceConflict(
                f"session {session_id!r} belongs to workspace {owner!r}, not {workspace!r}"
            )
        return int(turn)

    @staticmethod
    async def _insert_messages(
        conn: asyncpg.Connection,
        workspace: str,
        session_id: str,
        turn: int,
        messages: Sequence[dict[str, Any]],
    ) -> None:
        if not messages:
            return
        roles, contents, extras = zip(*_message_rows(messages), strict=True)
        await conn.execute(
            _INSERT_MESSAGES, workspace, session_id, turn, list(roles), list(contents), list(extras)
        )


def _message_rows(messages: Sequence[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """(role, text, extra JSON) per message: what the messages table keeps of it."""
    rows = []
    for m in messages:
        rest = {k: v for k, v in m.items() if k not in ("role", "content")}
        if not isinstance(m.get("content"), str | None):
            rest["content_parts"] = m["content"]  # keep images and other parts
        extra = orjson.dumps(rest).decode() if rest else None
        rows.append((str(m.get("role") or "user"), text_of(m.get("content")), extra))
    return rows
