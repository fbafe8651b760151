"""The knowledge graph through the one door, within the caller's scope: browse it, search its
entities, follow a symbol's callers and callees, read a definition, retrieve context."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sparkstack_common.rag_client import RagClient, RagRefused, RagUnavailable

from .errors import not_found, rag_error
from .gate import Caller, scoped_workspace

router = APIRouter(tags=["graph"])
Mode = Literal["naive", "local", "global", "hybrid", "mix"]


def _rag(request: Request) -> RagClient:
    return request.app.state.runtime.archive.rag


async def rag_get(
    rag: RagClient, path: str, workspace: str, params: dict[str, Any], missing: str
) -> Any:
    """rag-server's answer, as an OpenAI-shaped error when it cannot give one; a workspace
    (or entity) rag-server does not hold is a 404 like anything else not there."""
    try:
        r = await rag.request("GET", path, workspace, params=params, missing_ok=True)
    except (RagUnavailable, RagRefused) as exc:
        raise rag_error(exc) from None
    if r is None:
        raise not_found(missing, "not_found")
    return r.json()


@router.get("/v1/workspaces/{workspace}/graph")
async def graph(
    request: Request,
    workspace: str,
    principal: Caller,
    label: Annotated[str, Query(min_length=1, max_length=1000)] = "*",
    max_depth: Annotated[int, Query(ge=1, le=10)] = 2,
    max_nodes: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Nodes and edges around ``label`` (``*``: the best connected), in LightRAG's ``/graphs``
    shape, with ``is_truncated`` when ``max_nodes`` cut it."""
    ws = scoped_workspace(principal, workspace)
    params = {"label": label, "max_depth": max_depth, "max_nodes": max_nodes}
    return await rag_get(_rag(request), "/graphs", ws, params, f"workspace {ws!r} has no graph")


@router.get("/v1/workspaces/{workspace}/graph/labels")
async def labels(
    request: Request,
    workspace: str,
    principal: Caller,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Entity names matching ``q``, best first."""
    ws = scoped_workspace(principal, workspace)
    found = await rag_get(
        _rag(request),
        "/graph/label/search",
        ws,
        {"q": q, "limit": limit},
        f"workspace {ws!r} has no graph",
    )
    return {"object": "list", "data": found}


@router.get("/v1/workspaces/{workspace}/symbols/{entity:path}/callers")
async def callers(request: Request, workspace: str, entity: str, principal: Caller) -> Any:
    return await _neighbors(request, workspace, entity, principal, "in")


@router.get("/v1/workspaces/{workspace}/symbols/{entity:path}/callees")
async def callees(request: Request, workspace: str, entity: str, principal: Caller) -> Any:
    return await _neighbors(request, workspace, entity, principal, "out")


async def _neighbors(
    request: Request, workspace: str, entity: str, principal: Any, direction: str
) -> dict[str, Any]:
    ws = scoped_workspace(principal, workspace)
    answer = await rag_get(
        _rag(request),
        "/graph/neighbors",
        ws,
        {"name": entity, "kind": "calls", "direction": direction},
        f"no symbol {entity!r} in workspace {ws!r}",
    )
    return {"object": "list", "entity": entity, "data": answer["neighbors"]}


@router.get("/v1/workspaces/{workspace}/symbols/{entity:path}")
async def symbol(request: Request, workspace: str, entity: str, principal: Caller) -> Any:
    """A symbol (or file): its kind, description (signature, docstring), file, and the code
    that defines it."""
    ws = scoped_workspace(principal, workspace)
    return await rag_get(
        _rag(request),
        "/graph/entity",
        ws,
        {"name": entity},
        f"no symbol {entity!r} in workspace {ws!r}",
    )


class RetrieveRequest(BaseModel):
    query: str = Field(min_length=3, max_length=4000)
    mode: Mode = "mix"
    top_k: int = Field(10, ge=1, le=100)


@router.post("/v1/workspaces/{workspace}/retrieve")
async def retrieve(
    request: Request, workspace: str, body: RetrieveRequest, principal: Caller
) -> dict[str, Any]:
    """What the workspace knows about ``query``: chunks with their sources, entities and
    relationships (the retrieval the archival memory tier and the MCP tool use)."""
    ws = scoped_workspace(principal, workspace)
    rag = _rag(request)
    try:
        answer = await rag.query_data(
            ws,
            {
                "query": body.query,
                "mode": body.mode,
                "top_k": body.top_k,
                "chunk_top_k": body.top_k,
            },
        )
    except (RagUnavailable, RagRefused) as exc:
        raise rag_error(exc) from None
    data = (answer or {}).get("data") or {}
    return {
        "object": "retrieval",
        "workspace": ws,
        "mode": body.mode,
        "chunks": [
            {
                "content": c.get("content"),
                "source": c.get("file_path"),
                "chunk_id": c.get("chunk_id"),
                # cosine similarity to the query (rag-server's), whichever mode found it
                "score": c.get("score"),
            }
            for c in data.get("chunks") or []
        ],
        "entities": [
            {
                "name": e.get("entity_name"),
                "type": e.get("entity_type"),
                "description": e.get("description"),
                "source": e.get("file_path"),
            }
            for e in data.get("entities") or []
        ],
        "relationships": [
            {
                "source": r.get("src_id"),
                "target": r.get("tgt_id"),
                "keywords": r.get("keywords"),
                "description": r.get("description"),
                "source_file": r.get("file_path"),
            }
            for r in data.get("relationships") or []
        ],
    }
