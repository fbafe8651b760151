"""The data search (``POST /query/data``) and the checks every workspace route makes.

The orchestrator's archival tier calls ``/query/data`` on every chat turn. FastAPI's route
machinery around it (exception and exit-stack middleware, matching against every route,
dependency solving, the request wrappers) took about a seventh of rag-server's CPU per
search in the orchestrator's burst benchmark, so :class:`SearchPath` answers it right after
the key and body-limit middlewares. The checks and the search are the same functions the
FastAPI routes use (``app.py``'s dependencies call the ones here); the FastAPI route stays
for the OpenAPI document and the apps without this middleware.
"""

from __future__ import annotations

import contextlib
import time
from contextlib import nullcontext
from typing import Any

import numpy as np
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from lightrag import QueryParam
from pydantic import ValidationError
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .backends import EmbeddingBackend
from .models import QueryRequest, from_stored_sources, json_response, jsonable
from .runtime import RagRuntime
from .scores import score_chunks
from .settings import Settings

WORKSPACE_HEADER = "LIGHTRAG-WORKSPACE"


def named_workspace(settings: Settings, raw: str | None) -> str:
    """The workspace a request names (the default when it names none); 400 when invalid."""
    try:
        return validate_workspace(raw, default=settings.default_workspace)
    except InvalidWorkspace as exc:
        raise HTTPException(400, str(exc)) from exc


async def check_known(runtime: RagRuntime, workspace: str) -> None:
    """404 for a workspace nobody wrote to: reading never creates one."""
    if workspace not in await runtime.registry.names():
        raise HTTPException(404, f"workspace {workspace!r} does not exist")


async def check_searchable(runtime: RagRuntime, workspace: str) -> None:
    """404 as above; 409, naming both models, when the workspace was built with another
    embedding model."""
    await check_known(runtime, workspace)
    if refusal := await runtime.embedder_refusal(workspace):
        raise HTTPException(409, refusal)


def query_of(raw: bytes) -> QueryRequest:
    """A search's body, parsed and checked in one pass of pydantic's JSON parser (the
    orchestrator's searches carry the question's vector); errors as FastAPI's, naming the
    field."""
    try:
        return QueryRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def bad_request(exc: RequestValidationError) -> JSONResponse:
    """A 400 naming each field and what is wrong with it."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
    )
    return JSONResponse({"detail": problems}, status_code=400)


def param_of(settings: Settings, body: QueryRequest, stream: bool) -> QueryParam:
    fields = body.param_fields()
    # rerank only where a reranker is configured (LightRAG would warn on every query)
    fields.setdefault("enable_rerank", bool(settings.rerank_base_url))
    return QueryParam(**fields, stream=stream)


async def search_data(
    runtime: RagRuntime,
    settings: Settings,
    embed: EmbeddingBackend,
    workspace: str,
    body: QueryRequest,
) -> Response:
    """Entities, relations, chunks (each with its cosine ``score``) and references."""
    started = time.perf_counter()
    given = body.query_embedding
    vector: np.ndarray | None = None
    if given is not None:
        # float32, as stored: converted once for LightRAG's search and the scores
        # (float32's range too: a number beyond it is infinite, and refused)
        sent = given.array()
        vector = sent if embed.accepts(given.model, sent) else None
        runtime.metrics.given_embeddings.labels("ignored" if vector is None else "used").inc()
    if vector is None:
        # embedded once here and handed to LightRAG below: the chunks' scores need it
        with contextlib.suppress(Exception):  # LightRAG then embeds, and says why not
            vector = (await embed([body.query]))[0]
    taken = vector is not None
    with embed.given(body.query, embed.embedder.model, vector) if taken else nullcontext():
        async with runtime.pool.lease(workspace) as rag:
            result = await rag.aquery_data(body.query, param=param_of(settings, body, False))
            if taken:
                model = str(runtime.embedder)
                await score_chunks(runtime.chunk_vectors, rag, workspace, model, result, vector)
    observe(runtime, "query_data", body.mode, started)
    return json_response(from_stored_sources(jsonable(result)))


def observe(runtime: RagRuntime, endpoint: str, mode: str, started: float) -> None:
    runtime.metrics.queries.labels(endpoint, mode).inc()
    runtime.metrics.query_seconds.labels(endpoint, mode).observe(time.perf_counter() - started)
    runtime.observe_pool()


class SearchPath:
    """``POST /query/data`` answered here; every other request passes on to ``app``."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: Any = scope["app"].state if scope["type"] == "http" else None
        if (
            state is None
            or scope["path"] != "/query/data"
            or scope["method"] != "POST"
            or getattr(state, "runtime", None) is None
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        runtime: RagRuntime = state.runtime
        try:
            workspace = named_workspace(self.settings, request.headers.get(WORKSPACE_HEADER))
            await check_searchable(runtime, workspace)
            body = query_of(await request.body())
            embed: EmbeddingBackend = state.backends["embedding"]
            response = await search_data(runtime, self.settings, embed, workspace, body)
        except HTTPException as exc:
            response = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
        except RequestValidationError as exc:
            response = bad_request(exc)
        await response(scope, receive, send)
