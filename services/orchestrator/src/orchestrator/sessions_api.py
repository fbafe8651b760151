"""Sessions and workspaces: what memory holds, and deleting it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace

router = APIRouter()


def _runtime(request: Request) -> Any:
    runtime = request.app.state.runtime
    if runtime.recall is None:
        raise HTTPException(503, "session storage (PostgreSQL) is not configured")
    return runtime


def _session_json(info: Any) -> dict[str, Any]:
    data = asdict(info)
    for key in ("created_at", "last_seen_at"):
        data[key] = data[key].isoformat() if data.get(key) else None
    return data


@router.get("/v1/sessions")
async def list_sessions(
    request: Request,
    workspace: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    runtime = _runtime(request)
    if workspace is not None:
        try:
            workspace = validate_workspace(workspace)
        except InvalidWorkspace as exc:
            raise HTTPException(400, str(exc)) from exc
    sessions = await runtime.recall.sessions(workspace=workspace, limit=limit, offset=offset)
    return {"object": "list", "data": [_session_json(s) for s in sessions]}


@router.get("/v1/sessions/{session_id}")
async def get_session(
    request: Request, session_id: str, limit: Annotated[int | None, Query(ge=1)] = None
) -> dict[str, Any]:
    runtime = _runtime(request)
    info = await runtime.recall.session(session_id)
    if info is None:
        raise HTTPException(404, f"session {session_id!r} does not exist")
    messages = await runtime.recall.messages(session_id, limit)
    return {
        **_session_json(info),
        "messages": [
            {"turn": m.turn, **m.as_chat(), "created_at": m.created_at.isoformat()}
            for m in messages
        ],
    }


@router.delete("/v1/sessions/{session_id}")
async def delete_session(request: Request, session_id: str) -> dict[str, Any]:
    runtime = _runtime(request)
    info = await runtime.recall.session(session_id)
    if info is None:
        raise HTTPException(404, f"session {session_id!r} does not exist")
    # working memory first: a failure there leaves the durable record to retry the delete
    await runtime.working.delete(info.workspace, session_id)
    await runtime.recall.delete_session(session_id)
    return {"id": session_id, "object": "session.deleted", "deleted": True}


@router.get("/v1/workspaces")
async def list_workspaces(request: Request) -> dict[str, Any]:
    """Every workspace the stack knows: from sessions, ingestion jobs and rag-server."""
    runtime = request.app.state.runtime
    names: dict[str, set[str]] = {}
    sources = await runtime.workspace_sources()
    for source, found in sources.items():
        for name in found:
            names.setdefault(name, set()).add(source)
    return {
        "object": "list",
        "data": [{"name": n, "sources": sorted(s)} for n, s in sorted(names.items())],
    }
