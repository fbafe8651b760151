"""Sessions and workspaces: what memory holds, and deleting it, within the caller's scope."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from .errors import APIError, not_found
from .gate import Caller, filter_workspace

router = APIRouter()


def _runtime(request: Request) -> Any:
    runtime = request.app.state.runtime
    if runtime.recall is None:
        raise APIError(
            503,
            "session storage is off (ORCHESTRATOR_MEMORY_ENABLED=false)",
            "server_error",
            "memory_disabled",
        )
    return runtime


def _session_json(info: Any) -> dict[str, Any]:
    data = asdict(info)
    for key in ("created_at", "last_seen_at"):
        data[key] = data[key].isoformat() if data.get(key) else None
    return data


async def _scoped_session(runtime: Any, principal: Any, session_id: str) -> Any:
    """The session, or 404 alike when it does not exist and when it is outside the scope."""
    info = await runtime.recall.session(session_id)
    if info is None or not principal.allows(info.workspace):
        raise not_found(f"session {session_id!r} does not exist", "session_not_found")
    return info


@router.get("/v1/sessions")
async def list_sessions(
    request: Request,
    principal: Caller,
    workspace: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    runtime = _runtime(request)
    name, scope = filter_workspace(principal, workspace)
    sessions = await runtime.recall.sessions(
        workspace=name, limit=limit, offset=offset, workspaces=scope
    )
    return {"object": "list", "data": [_session_json(s) for s in sessions]}


@router.get("/v1/sessions/{session_id}")
async def get_session(
    request: Request,
    session_id: str,
    principal: Caller,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    runtime = _runtime(request)
    info = await _scoped_session(runtime, principal, session_id)
    messages = await runtime.recall.messages(session_id, limit)
    return {
        **_session_json(info),
        "messages": [
            {
                "turn": m.turn,
                **m.as_chat(),
                "created_at": m.created_at.isoformat(),
                **({"memory": m.memory} if m.memory else {}),
            }
            for m in messages
        ],
    }


@router.delete("/v1/sessions/{session_id}")
async def delete_session(request: Request, session_id: str, principal: Caller) -> dict[str, Any]:
    runtime = _runtime(request)
    info = await _scoped_session(runtime, principal, session_id)
    # working memory first: a failure there leaves the durable record to retry the delete
    await runtime.working.delete(info.workspace, session_id)
    await runtime.recall.delete_session(session_id)
    return {"id": session_id, "object": "session.deleted", "deleted": True}


@router.get("/v1/workspaces")
async def list_workspaces(request: Request, principal: Caller) -> dict[str, Any]:
    """The workspaces of the key's scope the stack knows: from sessions, ingestion jobs and
    rag-server (a scoped key also sees its own workspaces nobody has written to yet)."""
    runtime = request.app.state.runtime
    names: dict[str, set[str]] = {}
    sources = await runtime.workspace_sources()
    for source, found in sources.items():
        for name in principal.visible(found):
            names.setdefault(name, set()).add(source)
    if not principal.admin:
        for name in principal.workspaces:
            names.setdefault(name, set()).add("key")
    return {
        "object": "list",
        "data": [{"name": n, "sources": sorted(s)} for n, s in sorted(names.items())],
    }
