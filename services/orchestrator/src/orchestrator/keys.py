"""Scoped API keys: who may call the orchestrator, and which workspaces they may touch.

Keys live in PostgreSQL (table ``api_keys``, see ``sparkstack_common.migrations``) as SHA-256
digests, never in the clear: each has a name, the workspaces it may use (or admin: all),
created and last-used times, and a revocation time. The bootstrap admin key comes from the
settings (the cluster's Secret, or the file ``sparkstack up`` generates) and is compared in
memory, so an operator can still reach the API while PostgreSQL is down.

Verification is cached for ``cache_seconds`` (default 0.5 s): a revoked key stops working
within that time on every replica, and a burst of requests with one key costs one lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sparkstack_common.auth import digest, same_key

from .cache import SingleFlightCache

log = logging.getLogger("orchestrator.keys")

KEY_PREFIX = "sk-ss-"
BOOTSTRAP_NAME = "admin"
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class KeyRefused(Exception):
    """A key could not be created or revoked (message says why); routes answer 400/404."""


class KeyStoreUnavailable(RuntimeError):
    """PostgreSQL did not answer a key lookup: the request is a 503, not a 401."""


@dataclass(frozen=True)
class Principal:
    """The caller a request was authenticated as."""

    key_id: str
    name: str
    admin: bool
    workspaces: frozenset[str]

    def allows(self, workspace: str) -> bool:
        return self.admin or workspace in self.workspaces

    def visible(self, names: Iterable[str]) -> list[str]:
        return sorted(n for n in names if self.allows(n))

    @property
    def scope(self) -> list[str] | None:
        """For SQL filters: None means every workspace."""
        return None if self.admin else sorted(self.workspaces)

    @property
    def only_workspace(self) -> str | None:
        """The workspace a key scoped to exactly one uses when a request names none."""
        if not self.admin and len(self.workspaces) == 1:
            return next(iter(self.workspaces))
        return None


@dataclass(frozen=True)
class KeyInfo:
    id: str
    name: str
    hint: str
    admin: bool
    workspaces: list[str]
    created_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool = False

    def to_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.id,
            "object": "api_key",
            "name": self.name,
            "hint": self.hint,
            "admin": self.admin,
            "workspaces": self.workspaces,
            "created_at": iso(self.created_at),
            "last_used_at": iso(self.last_used_at),
            "revoked_at": iso(self.revoked_at),
            "bootstrap": self.bootstrap,
        }


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hint_of(key: str) -> str:
    """Enough to tell keys apart in a listing, nowhere near enough to guess one."""
    return f"{KEY_PREFIX}...{key[-4:]}"


def validate_key_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KeyRefused(f"invalid key name {name!r}: use 1 to 64 letters, digits, '_', '-' or '.'")
    return name


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        id=str(row["id"]),
        name=row["name"],
        hint=row["hint"],
        admin=row["admin"],
        workspaces=sorted(row["workspaces"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


class KeyStore:
    """The ``api_keys`` table."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(
        self, name: str, workspaces: Iterable[str], admin: bool
    ) -> tuple[KeyInfo, str]:
        """A new key; the key itself is returned once and never stored."""
        name = validate_key_name(name)
        if name == BOOTSTRAP_NAME:
            raise KeyRefused(f"the name {BOOTSTRAP_NAME!r} belongs to the bootstrap key")
        scope = sorted(set(workspaces))
        if not admin and not scope:
            raise KeyRefused("a key needs at least one workspace, or admin")
        key = new_key()
        try:
            row = await self.pool.fetchrow(
                """
                INSERT INTO api_keys (id, name, digest, hint, admin, workspaces)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING *
                """,
                uuid.uuid4(),
                name,
                digest(key),
                hint_of(key),
                admin,
                [] if admin else scope,
            )
        except asyncpg.UniqueViolationError:
            raise KeyRefused(f"a key named {name!r} exists: revoke it first") from None
        return _info(row), key

    async def list(self, include_revoked: bool = False) -> list[KeyInfo]:
        rows = await self.pool.fetch(
            "SELECT * FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY created_at, name",
            include_revoked,
        )
        return [_info(r) for r in rows]

    async def revoke(self, name: str) -> KeyInfo | None:
        row = await self.pool.fetchrow(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL "
            "RETURNING *",
            name,
        )
        return _info(row) if row else None

    async def lookup(self, key_digest: bytes) -> Principal | None:
        row = await self.pool.fetchrow(
            "SELECT id, name, admin, workspaces FROM api_keys "
            "WHERE digest = $1 AND revoked_at IS NULL",
            key_digest,
        )
        if row is None:
            return None
        return Principal(
            key_id=str(row["id"]),
            name=row["name"],
            admin=row["admin"],
            workspaces=frozenset(row["workspaces"]),
        )

    async def touch(self, key_ids: Iterable[str]) -> None:
        ids = [uuid.UUID(k) for k in key_ids]
        if ids:
            await self.pool.execute(
                "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])", ids
            )


class Keyring:
    """Verifies presented keys: the bootstrap admin key in memory, the others through the
    store behind a short cache; records last use in batches, off the request path."""

    def __init__(
        self,
        store: KeyStore,
        admin_key: str | None,
        cache_seconds: float = 0.5,
        touch_seconds: float = 10.0,
        schema_wait_seconds: float = 3.0,
    ) -> None:
        self.store = store
        # set once the key table exists; until then a lookup waits (bounded), then is a 503
        self.schema_ready = asyncio.Event()
        self._schema_wait = schema_wait_seconds
        self._admin_digest = digest(admin_key) if admin_key else None
        self._cache: SingleFlightCache[Principal | None] = SingleFlightCache(
            cache_seconds, max_entries=4096
        )
        self._touch_seconds = touch_seconds
        self._used: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def bootstrap(self) -> Principal:
        return Principal("bootstrap", BOOTSTRAP_NAME, True, frozenset())

    async def verify(self, token: str | None) -> Principal | None:
        """The principal of ``token``, or None (unknown, revoked or malformed).
        Raises KeyStoreUnavailable when PostgreSQL cannot tell."""
        if not token or len(token) > 256:
            return None
        if self._admin_digest is not None and same_key(token, self._admin_digest):
            return self.bootstrap
        if not token.startswith(KEY_PREFIX):
            return None
        key_digest = digest(token)

        async def load() -> Principal | None:
            try:
                await asyncio.wait_for(self.schema_ready.wait(), self._schema_wait)
                return await self.store.lookup(key_digest)
            except _DB_ERRORS as exc:
                raise KeyStoreUnavailable(f"{type(exc).__name__}") from None

        principal = await self._cache.get(key_digest, load)
        if principal is not None:
            self._used.add(principal.key_id)
        return principal

    def forget(self) -> None:
        """After a change in this process (create, revoke): no cached answer survives it."""
        self._cache.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._record_use(), name="keys-last-used")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._flush()

    async def _record_use(self) -> None:
        while True:
            await asyncio.sleep(self._touch_seconds)
            await self._flush()

    async def _flush(self) -> None:
        used, self._used = self._used, set()
        if not used:
            return
        try:
            await self.store.touch(used)
        except _DB_ERRORS as exc:
            log.warning("could not record key use: %s", type(exc).__name__)
            self._used |= used
