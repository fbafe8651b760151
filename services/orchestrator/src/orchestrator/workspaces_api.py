"""A workspace as a whole: its stats, its reindex with a new embedding model, and
``DELETE /v1/workspaces/{workspace}``: the workspace and everything kept for it, at once.

Its knowledge (rag-server), its ingestion jobs and uploads, and its sessions (recall and
working memory). The caller names the workspace twice (``?confirm=<name>``), so a mistyped
path or a replayed request cannot delete one by accident. Refused while a job of the
workspace is running. Within the key's scope only, like every route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sparkstack_common.ingestion.store import WorkspaceBusy
from sparkstack_common.rag_client import RagRefused, RagUnavailable

from .errors import APIError, bad_request, not_found, rag_error
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
        raise rag_error(exc) from None
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


@router.post("/v1/workspaces/{workspace}/reindex")
async def reindex_workspace(request: Request, workspace: str, principal: Caller) -> JSONResponse:
    """Rebuild the workspace's vectors with the embedding model rag-server uses now (after
    the embedder changed: its reads and writes are refused until then). 202 while it runs in
    the background (GET for progress), 200 when there is nothing to do. The workspace answers
    as before until the new vectors are complete; a stopped reindex changes nothing."""
    ws = scoped_workspace(principal, workspace)
    r = await _reindex_call(request, "POST", ws)
    return JSONResponse({"object": "workspace.reindex", **r.json()}, status_code=r.status_code)


@router.get("/v1/workspaces/{workspace}/reindex")
async def reindex_progress(request: Request, workspace: str, principal: Caller) -> dict[str, Any]:
    """The workspace's last reindex since rag-server started: state, vectors done of total."""
    ws = scoped_workspace(principal, workspace)
    r = await _reindex_call(request, "GET", ws)
    return {"object": "workspace.reindex", **r.json()}


async def _reindex_call(request: Request, method: str, ws: str) -> Any:
    try:
        r = await request.app.state.runtime.archive.rag.request(
            method, f"/workspaces/{quote(ws, safe='')}/reindex", missing_ok=True
        )
    except (RagUnavailable, RagRefused) as exc:
        raise rag_error(exc) from None
    if r is None:
        what = "no reindex of" if method == "GET" else "no knowledge in"
        raise not_found(f"{what} workspace {ws!r}", "reindex_not_found")
    return r
