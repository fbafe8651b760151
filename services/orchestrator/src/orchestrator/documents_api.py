"""A workspace's documents as rag-server holds them: list (with status and error), delete one,
and index the failed ones again. Within the key's scope, like every route.

Deleting a document of a codebase also forgets the file in the codebase's ingestion state,
so the next ingest of that codebase indexes the file again instead of calling it unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from sparkstack_common.rag_client import RagRefused, RagUnavailable

from .errors import not_found, rag_error
from .gate import Caller, scoped_workspace
from .ingest.service import DB_ERRORS, StoreDep, db_unavailable

router = APIRouter()
Status = Literal["pending", "processing", "processed", "failed"]


@router.get("/v1/workspaces/{workspace}/documents")
async def list_documents(
    request: Request,
    workspace: str,
    principal: Caller,
    status: Status | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=10, le=200)] = 50,
) -> dict[str, Any]:
    """Newest first: id, status, file, chunks, error; with the counts by status."""
    ws = scoped_workspace(principal, workspace)
    body = {
        "page": page,
        "page_size": page_size,
        "status_filter": status,
        "sort_field": "updated_at",
        "sort_direction": "desc",
    }
    try:
        r = await request.app.state.runtime.archive.rag.request(
            "POST", "/documents/paginated", ws, json=body, missing_ok=True
        )
    except (RagUnavailable, RagRefused) as exc:
        raise rag_error(exc) from None
    if r is None:
        return {"object": "list", "data": [], "total": 0, "status_counts": {}}
    answer = r.json()
    return {
        "object": "list",
        "data": answer["documents"],
        "total": answer["pagination"]["total_count"],
        "page": page,
        "has_more": answer["pagination"]["has_next"],
        "status_counts": answer.get("status_counts", {}),
    }


@router.delete("/v1/workspaces/{workspace}/documents/{doc_id}")
async def delete_document(
    request: Request, workspace: str, doc_id: str, principal: Caller, store: StoreDep
) -> dict[str, Any]:
    ws = scoped_workspace(principal, workspace)
    rag = request.app.state.runtime.archive.rag
    try:
        found = await rag.request(
            "POST", "/documents/status", ws, json={"ids": [doc_id]}, missing_ok=True
        )
        known = found is not None and doc_id in (found.json().get("documents") or {})
        if not known:
            raise not_found(f"no document {doc_id!r} in workspace {ws!r}", "document_not_found")
        await rag.delete_documents(ws, [doc_id])
    except (RagUnavailable, RagRefused) as exc:
        raise rag_error(exc) from None
    try:
        forgotten = await store.forget_document(ws, doc_id)
    except DB_ERRORS as exc:
        raise db_unavailable(exc) from None
    return {"object": "document.deleted", "id": doc_id, "deleted": True, "files": forgotten}


@router.post("/v1/workspaces/{workspace}/documents/reindex", status_code=202)
async def reindex_failed(request: Request, workspace: str, principal: Caller) -> dict[str, Any]:
    """Index the workspace's failed documents again (each once); 409 while it is busy."""
    ws = scoped_workspace(principal, workspace)
    try:
        r = await request.app.state.runtime.archive.rag.request(
            "POST", "/documents/reprocess_failed", ws, missing_ok=True
        )
    except (RagUnavailable, RagRefused) as exc:
        raise rag_error(exc) from None
    if r is None:
        raise not_found(f"workspace {ws!r} has no documents", "workspace_not_found")
    return {"object": "documents.reindex", "workspace": ws, **r.json()}
