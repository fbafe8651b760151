"""``DELETE /v1/workspaces/{workspace}``: a workspace and everything kept for it, at once.

Its knowledge (rag-server), its ingestion jobs and uploads, and its sessions (recall and
working memory). The caller names the workspace twice (``?confirm=<name>``), so a mistyped
path or a replayed request cannot delete one by accident. Refused while a job of the
workspace is running. Within the key's scope only, like every route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from sparkstack_common.ingestion.store import WorkspaceBusy
from sparkstack_common.rag_client import RagRefused, RagUnavailable

from .errors import APIError, bad_request
from .gate import Caller, scoped_workspace
from .ingest.service import DB_ERRORS, StoreDep, db_unavailable

router = APIRouter()


@router.get("/v1/workspaces/{workspace}/stats")
async def workspace_stats(request: Request, workspace: str, principal: Caller) -> dict[str, Any]:
    """Documents by status, entities, relations (zeros for a workspace rag-server does not
    hold yet)."""
    ws = scoped_workspace(principal, workspace)
    try:
        r = await request.app.state.runtime.archive.rag.request(
            "GET", f"/workspaces/{quote(ws, safe='')}/stats", missing_ok=True
        )
    except (RagUnavailable, RagRefused) as exc:
        raise APIError(
            502, f"rag-server is unavailable: {exc}", "server_error", "rag_unavailable"
        ) from None
    found = r.json() if r is not None else {"documents": {}, "entities": 0, "relations": 0}
    return {"object": "workspace.stats", "name": ws, **found}


@router.delete("/v1/workspaces/{workspace}")
async def delete_workspace(
    request: Request, workspace: str, store: StoreDep, principal: Caller, confirm: str = ""
) -> dict[str, Any]:
    ws = scoped_workspace(principal, workspace)
    if confirm != ws:
        raise bad_request(
            f"deleting workspace {ws!r} removes its knowledge, jobs, uploads and sessions for "
            f"good: repeat its name as ?confirm={ws}",
            "confirm",
        )
    runtime = request.app.state.runtime
    try:
        ingestion = await store.delete_workspace(ws)  # first: no job may write meanwhile
    except WorkspaceBusy as exc:
        raise APIError(
            409, f"{exc}: wait until they end, then delete", "invalid_request_error", "busy"
        ) from None
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    try:
        knowledge = await runtime.archive.rag.delete_workspace(ws)
    except (RagUnavailable, RagRefused) as exc:
        raise APIError(
            502,
            f"rag-server could not delete the knowledge of {ws!r} ({exc}); jobs and uploads "
            "are gone already: delete again to finish",
            "server_error",
            "rag_unavailable",
        ) from None
    sessions = await runtime.recall.delete_workspace(ws) if runtime.recall else []
    for session_id in sessions:
        await runtime.working.delete(ws, session_id)
    if runtime.memory is not None:
        runtime.memory.forget_cached()  # no archival answer from before the deletion
    return {
        "object": "workspace.deleted",
        "name": ws,
        "deleted": True,
        "knowledge": knowledge,
        "jobs": ingestion["jobs"],
        "uploads": ingestion["uploads"],
        "sessions": len(sessions),
    }
