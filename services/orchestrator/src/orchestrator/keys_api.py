"""``/v1/keys``: create, list and revoke scoped keys (admin keys only; the Gate checks)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace

from .errors import bad_request, not_found, request_error
from .gate import Caller
from .keys import BOOTSTRAP_NAME, KeyInfo, KeyRefused, Keyring

router = APIRouter()
_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class CreateKey(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    workspaces: list[str] = Field(default_factory=list, max_length=256)
    admin: bool = False


def _keyring(request: Request) -> Keyring:
    return request.app.state.keyring


async def _store_call(keyring: Keyring, call: Any) -> Any:
    try:
        # just after start-up the key table may still be on its way (bounded wait)
        await asyncio.wait_for(keyring.schema_ready.wait(), 5.0)
        return await call
    except KeyRefused as exc:
        raise bad_request(str(exc), "name") from None
    except _DB_ERRORS:  # PostgreSQL down, or the table not there yet: the caller can retry
        call.close()
        raise request_error(
            503, "the key store (PostgreSQL) is unavailable", code="key_store_unavailable"
        ) from None


def _bootstrap_info() -> dict[str, Any]:
    return KeyInfo(
        id="bootstrap",
        name=BOOTSTRAP_NAME,
        hint="(from ORCHESTRATOR_ADMIN_KEY)",
        admin=True,
        workspaces=[],
        created_at=None,
        last_used_at=None,
        revoked_at=None,
        bootstrap=True,
    ).to_dict()


@router.get("/v1/me")
async def whoami(principal: Caller) -> dict[str, Any]:
    """The key in use: its name and scope (what the console shows and offers)."""
    return {
        "object": "principal",
        "name": principal.name,
        "admin": principal.admin,
        "workspaces": sorted(principal.workspaces),
    }


@router.get("/v1/keys")
async def list_keys(request: Request, include_revoked: bool = False) -> dict[str, Any]:
    keyring = _keyring(request)
    keys = await _store_call(keyring, keyring.store.list(include_revoked))
    return {"object": "list", "data": [_bootstrap_info(), *(k.to_dict() for k in keys)]}


@router.post("/v1/keys", status_code=201)
async def create_key(request: Request, body: CreateKey) -> JSONResponse:
    """The new key is in the answer once (``key``); only its digest is stored."""
    workspaces = []
    for name in body.workspaces:
        try:
            workspaces.append(validate_workspace(name))
        except InvalidWorkspace as exc:
            raise bad_request(str(exc), "workspaces") from None
    keyring = _keyring(request)
    info, key = await _store_call(keyring, keyring.store.create(body.name, workspaces, body.admin))
    keyring.forget()
    return JSONResponse({**info.to_dict(), "key": key}, status_code=201)


@router.delete("/v1/keys/{name}")
async def revoke_key(request: Request, name: str) -> dict[str, Any]:
    if name == BOOTSTRAP_NAME:
        raise bad_request(
            "the bootstrap key comes from ORCHESTRATOR_ADMIN_KEY (the Secret, or the local "
            "stack's key file): replace it there",
            "name",
        )
    keyring = _keyring(request)
    info = await _store_call(keyring, keyring.store.revoke(name))
    keyring.forget()
    if info is None:
        raise not_found(f"no active key named {name!r}", "key_not_found", "name")
    return {**info.to_dict(), "object": "api_key.revoked"}
