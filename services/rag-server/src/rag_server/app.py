"""The rag-server HTTP API: LightRAG's paths and shapes, one isolated workspace per request."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from lightrag import LightRAG
from lightrag.base import DocStatus
from lightrag.constants import GRAPH_FIELD_SEP
from lightrag.utils import compute_mdhash_id
from sparkstack_common.auth import ServiceKeyAuth, secret_value
from sparkstack_common.body_limit import BodyLimit
from sparkstack_common.http import HTTP
from sparkstack_common.service import add_standard_routes
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace

from . import codegraph, deferred, reindex
from .backends import ChatBackend, EmbeddingBackend, RerankBackend
from .instances import (
    ConfigurationError,
    InstanceFactory,
    check_environment,
    clear_query_cache,
    export_storage_environment,
    initialize_limits,
)
from .metrics import Metrics
from .models import (
    DeleteDocRequest,
    DocumentsRequest,
    DocumentStatusRequest,
    InsertResponse,
    InsertTextRequest,
    InsertTextsRequest,
    QueryRequest,
    WorkspaceRequest,
    from_stored_sources,
    jsonable,
    to_stored_source,
)
from .registry import CachedRegistry, FileRegistry, PostgresRegistry, WorkspaceRegistry
from .runtime import RagRuntime
from .search import (
    WORKSPACE_HEADER,
    SearchPath,
    bad_request,
    check_known,
    check_searchable,
    named_workspace,
    observe,
    param_of,
    query_of,
    search_data,
)
from .settings import Settings

log = logging.getLogger("rag_server")
DELETE_WAIT_SECONDS = 300.0


async def runtime_of(request: Request) -> RagRuntime:
    return request.app.state.runtime


async def workspace_of(
    request: Request,
    lightrag_workspace: Annotated[str | None, Header(alias=WORKSPACE_HEADER)] = None,
) -> str:
    return named_workspace(request.app.state.settings, lightrag_workspace)


async def known_workspace(
    request: Request, workspace: Annotated[str, Depends(workspace_of)]
) -> str:
    """For reads that embed nothing (graph, documents): a workspace nobody wrote to is a
    404, and reading never creates one. One built with another embedding model is read as
    it is (before and during its reindex)."""
    await check_known(request.app.state.runtime, workspace)
    return workspace


async def existing_workspace(
    request: Request, workspace: Annotated[str, Depends(workspace_of)]
) -> str:
    """For searches and changes: also a 409, naming both models, when the workspace was
    built with another embedding model."""
    await check_searchable(request.app.state.runtime, workspace)
    return workspace


async def writable_workspace(
    request: Request, workspace: Annotated[str, Depends(workspace_of)]
) -> str:
    """For writes: created on first use; one built with another embedding model is a 409."""
    runtime: RagRuntime = request.app.state.runtime
    if workspace in await runtime.registry.names() and (
        refusal := await runtime.embedder_refusal(workspace)
    ):
        raise HTTPException(409, refusal)
    return workspace


async def query_body(request: Request) -> QueryRequest:
    return query_of(await request.body())


# what /docs shows for the route whose body query_body reads (/query declares the schema)
QUERY_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QueryRequest"}}},
    }
}

Runtime = Annotated[RagRuntime, Depends(runtime_of)]
Workspace = Annotated[str, Depends(writable_workspace)]
KnownWorkspace = Annotated[str, Depends(known_workspace)]
ExistingWorkspace = Annotated[str, Depends(existing_workspace)]


class ClosingStreamingResponse(StreamingResponse):
    """Closes its generator on every path (a disconnect cancels Starlette's send loop without
    closing it), so the generator's ``finally`` runs now, not whenever it is collected."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_environment(settings)
        logging.getLogger("lightrag").setLevel(settings.lightrag_log_level.upper())
        export_storage_environment(settings)
        initialize_limits(settings)
        async with HTTP() as client:
            llm = ChatBackend(
                client,
                settings.llm_base_url,
                settings.llm_model,
                settings.llm_api_key,
                settings.llm_timeout_seconds,
                settings.llm_think,
            )
            embed = EmbeddingBackend(
                client,
                settings.embed_base_url,
                settings.embed_model,
                settings.embed_dim,
                settings.embed_api_key,
                settings.embed_timeout_seconds,
            )
            rerank = (
                RerankBackend(
                    client, settings.rerank_base_url, settings.rerank_model, settings.rerank_api_key
                )
                if settings.rerank_base_url
                else None
            )
            registry: WorkspaceRegistry = CachedRegistry(
                FileRegistry(settings.data_dir / "workspaces.json")
                if settings.profile == "local"
                else PostgresRegistry(
                    settings.postgres_dsn or "", secret_value(settings.postgres_password)
                ),
                settings.registry_cache_seconds,
            )
            await registry.start()
            runtime = RagRuntime(
                settings, InstanceFactory(settings, llm, embed, rerank), registry, metrics
            )
            await reindex.recover(runtime)  # a switch under way when it stopped is finished
            app.state.runtime = runtime
            watcher = asyncio.create_task(
                deferred.watch(runtime, settings.extraction_retry_seconds), name="extraction"
            )
            app.state.backends = {
                "llm": llm,
                "embedding": embed,
                **({"rerank": rerank} if rerank else {}),
            }
            try:
                yield
            finally:
                watcher.cancel()
                await runtime.drain()
                await registry.close()

    api_key = secret_value(settings.api_key)
    if api_key is None:
        raise ConfigurationError("RAG_SERVER_API_KEY is not set: rag-server needs its key")
    app = FastAPI(title="rag-server", version="0.1.0", lifespan=lifespan)
    # innermost first: the searches' direct route runs after the key and the body limit
    app.add_middleware(SearchPath, settings=settings)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_request_bytes, setting="RAG_SERVER_MAX_REQUEST_BYTES"
    )
    app.add_middleware(ServiceKeyAuth, key=api_key)
    app.state.settings = settings

    @app.exception_handler(RequestValidationError)
    async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
        return bad_request(exc)

    def backend_check(name: str):
        async def check(request: Request) -> tuple[bool, str]:
            backend = request.app.state.backends.get(name)
            return await backend.reachable()

        return check

    async def storage_check(request: Request) -> tuple[bool, str]:
        names = await request.app.state.runtime.registry.names()
        return True, f"{settings.profile} profile, {len(names)} workspace(s)"

    checks = {
        "storage": storage_check,
        "llm": backend_check("llm"),
        "embedding": backend_check("embedding"),
    }
    if settings.rerank_base_url:
        checks["rerank"] = backend_check("rerank")
    # the model backends are reported, not required: graph reads, deletes and status work
    # without them, and a call that needs one fails on its own with the backend named
    add_standard_routes(app, "rag-server", metrics.registry, checks, required={"storage"})

    # -- workspaces ---------------------------------------------------------------------
    @app.get("/workspaces")
    async def list_workspaces(runtime: Runtime) -> dict[str, Any]:
        names = await runtime.registry.names()
        return {
            "workspaces": [{"name": n, "loaded": n in runtime.pool.workspaces()} for n in names]
        }

    @app.get("/workspaces/{name}/stats")
    async def workspace_stats(name: str, runtime: Runtime) -> dict[str, Any]:
        """Documents by status, entities and relations (counted by reading the graph's labels
        and edges: linear in the graph, meant for a dashboard, not a hot path)."""
        if name not in await runtime.registry.names():
            raise HTTPException(404, f"workspace {name!r} does not exist")
        async with runtime.pool.lease(name) as rag:
            documents = await rag.doc_status.get_all_status_counts()
            graph = rag.chunk_entity_relation_graph
            entities = len(await graph.get_all_labels())
            relations = len(await graph.get_all_edges())
        return {"documents": documents, "entities": entities, "relations": relations}

    @app.post("/workspaces", status_code=201)
    async def create_workspace(body: WorkspaceRequest, runtime: Runtime) -> JSONResponse:
        try:
            name = validate_workspace(body.name)
        except InvalidWorkspace as exc:
            raise HTTPException(400, str(exc)) from exc
        created = await runtime.registry.add(name, runtime.embedder)
        if not created and (refusal := await runtime.embedder_refusal(name)):
            raise HTTPException(409, refusal)
        async with runtime.pool.lease(name):  # builds its storages now: errors surface here
            pass
        runtime.observe_pool()
        return JSONResponse({"name": name, "created": created}, status_code=201 if created else 200)

    @app.delete("/workspaces/{name}")
    async def delete_workspace(name: str, runtime: Runtime) -> dict[str, Any]:
        try:
            name = validate_workspace(name)
        except InvalidWorkspace as exc:
            raise HTTPException(400, str(exc)) from exc
        if name not in await runtime.registry.names():
            raise HTTPException(404, f"workspace {name!r} does not exist")
        if running := runtime.reindexing(name):
            raise HTTPException(
                409, f"workspace {name!r} is being reindexed ({running}): delete it once that ends"
            )
        # the instance is built if it is not loaded (with the embedder the workspace was
        # built with), so its storages can drop their data
        async with runtime.pool.lease(name):
            pass
        await runtime.pool.remove(name, runtime.factory.destroy)
        await runtime.registry.remove(name)
        runtime.observe_pool()
        return {"status": "deleted", "name": name}

    @app.post("/workspaces/{name}/reindex", status_code=202)
    async def start_reindex(name: str, runtime: Runtime) -> JSONResponse:
        """Rebuild the workspace's vectors with today's embedding model, in the background
        (GET for progress); 200 with nothing to do when it is built with it already."""
        if name not in await runtime.registry.names():
            raise HTTPException(404, f"workspace {name!r} does not exist")
        try:
            progress = await runtime.start_reindex(name)
        except reindex.ReindexRefused as exc:
            return JSONResponse({"workspace": name, "state": "current", "message": str(exc)})
        return JSONResponse(progress.json(), status_code=202)

    @app.get("/workspaces/{name}/reindex")
    async def reindex_progress(name: str, runtime: Runtime) -> dict[str, Any]:
        progress = runtime.reindexes.get(name)
        if progress is None:
            raise HTTPException(404, f"no reindex of {name!r} since rag-server started")
        return progress.json()

    # -- documents ----------------------------------------------------------------------
    async def enqueue(
        runtime: RagRuntime,
        workspace: str,
        texts: list[str],
        sources: list[str],
        ids: list[str] | None,
    ) -> InsertResponse:
        if len(sources) != len(texts):
            raise HTTPException(400, "file_sources must have one entry per text")
        if ids is not None and (len(ids) != len(texts) or len(set(ids)) != len(ids)):
            raise HTTPException(400, "ids must be unique and have one entry per text")
        doc_ids = ids or [compute_mdhash_id(t, prefix="doc-") for t in texts]
        track_id = f"insert_{time.strftime('%Y%m%d_%H%M%S')}_{uuid.uuid4().hex[:8]}"
        async with runtime.pool.lease(workspace) as rag:
            new = await rag.doc_status.filter_keys(set(doc_ids))
            if not new:
                return InsertResponse(
                    status="duplicated",
                    message="every document is already indexed",
                    track_id=track_id,
                    ids=doc_ids,
                )
            keep = [i for i, d in enumerate(doc_ids) if d in new]
            ready, detail = await runtime.model_watch.ready()
            if not ready:
                # no extraction model: searchable as chunks now, extracted once it answers
                docs = [
                    (doc_ids[i], texts[i], sources[i], to_stored_source(sources[i])) for i in keep
                ]
                await deferred.write_chunks_only(
                    rag,
                    runtime.code_lock(workspace),
                    docs,
                    settings.chunk_token_size,
                    detail,
                    track_id,
                )
                await runtime.pending.add(workspace, [d[0] for d in docs])
                await clear_query_cache(rag)
                runtime.metrics.documents.inc(len(keep))
                return InsertResponse(
                    status="success" if len(keep) == len(texts) else "partial_success",
                    message=f"{len(keep)} document(s) searchable as chunks; extraction "
                    f"pending until the extraction model answers ({detail})",
                    track_id=track_id,
                    ids=doc_ids,
                )
            await rag.apipeline_enqueue_documents(
                input=[texts[i] for i in keep],
                ids=[doc_ids[i] for i in keep],
                file_paths=[to_stored_source(sources[i]) for i in keep],
                track_id=track_id,
            )
        runtime.metrics.documents.inc(len(keep))
        runtime.process_in_background(workspace)
        status = "success" if len(keep) == len(texts) else "partial_success"
        message = f"{len(keep)} document(s) enqueued" + (
            f", {len(texts) - len(keep)} already indexed" if len(keep) < len(texts) else ""
        )
        return InsertResponse(status=status, message=message, track_id=track_id, ids=doc_ids)

    @app.post("/documents/text")
    async def insert_text(
        body: InsertTextRequest, runtime: Runtime, workspace: Workspace
    ) -> InsertResponse:
        source = body.file_source or "unknown_source"
        return await enqueue(runtime, workspace, [body.text], [source], None)

    @app.post("/documents/texts")
    async def insert_texts(
        body: InsertTextsRequest, runtime: Runtime, workspace: Workspace
    ) -> InsertResponse:
        sources = body.file_sources or [f"text_{i}" for i in range(len(body.texts))]
        return await enqueue(runtime, workspace, body.texts, sources, body.ids)

    @app.get("/documents/track_status/{track_id}")
    async def track_status(
        track_id: str, runtime: Runtime, workspace: KnownWorkspace
    ) -> dict[str, Any]:
        async with runtime.pool.lease(workspace) as rag:
            docs = await rag.aget_docs_by_track_id(track_id)
        if not docs:
            raise HTTPException(
                404, f"no documents with track id {track_id!r} in workspace {workspace!r}"
            )
        documents = [doc_json(doc_id, status) for doc_id, status in docs.items()]
        summary: dict[str, int] = {}
        for d in documents:
            summary[d["status"]] = summary.get(d["status"], 0) + 1
        return {
            "track_id": track_id,
            "documents": documents,
            "total_count": len(documents),
            "status_summary": summary,
        }

    @app.post("/documents/code")
    async def insert_code(
        body: codegraph.CodeBatch, runtime: Runtime, workspace: Workspace
    ) -> dict[str, Any]:
        """Source files (or files' cross-file links) as chunks, entities and relationships,
        written at once without an LLM call; processed when this answers."""
        docs = [(d, to_stored_source(d.file_path)) for d in body.documents]
        async with runtime.pool.lease(workspace) as rag:
            results = await codegraph.insert_many(rag, docs, runtime.code_lock(workspace))
            if any(r["status"] == "success" for r in results):
                await clear_query_cache(rag)
        runtime.metrics.documents.inc(len(docs))
        runtime.observe_pool()
        return {"documents": results}

    @app.post("/documents/status")
    async def documents_status(
        body: DocumentStatusRequest, runtime: Runtime, workspace: KnownWorkspace
    ) -> dict[str, Any]:
        """Where each of up to 1,000 documents is (pending, processing, processed, failed
        with its error); ids the workspace does not hold are left out. One call, where
        ``track_status`` would take one per batch: what an ingestion job polls until its
        documents are searchable."""
        async with runtime.pool.lease(workspace) as rag:
            found = await rag.doc_status.get_by_ids(body.ids)
        documents: dict[str, Any] = {}
        for doc_id, status in zip(body.ids, found, strict=False):
            if status:
                state, error = codegraph.status_of(jsonable(status))
                documents[doc_id] = {"status": state, "error": error}
        return {"documents": documents}

    @app.post("/documents/paginated")
    async def paginated(
        body: DocumentsRequest, runtime: Runtime, workspace: KnownWorkspace
    ) -> dict[str, Any]:
        status = None
        if body.status_filter:
            try:
                status = DocStatus(body.status_filter)
            except ValueError as exc:
                raise HTTPException(400, f"unknown status {body.status_filter!r}") from exc
        async with runtime.pool.lease(workspace) as rag:
            rows, total = await rag.doc_status.get_docs_paginated(
                status_filter=status,
                page=body.page,
                page_size=body.page_size,
                sort_field=body.sort_field,
                sort_direction=body.sort_direction,
            )
            counts = await rag.doc_status.get_all_status_counts()
        pages = (total + body.page_size - 1) // body.page_size
        return {
            "documents": [doc_json(doc_id, s) for doc_id, s in rows],
            "pagination": {
                "page": body.page,
                "page_size": body.page_size,
                "total_count": total,
                "total_pages": pages,
                "has_next": body.page < pages,
                "has_prev": body.page > 1,
            },
            "status_counts": counts,
        }

    @app.delete("/documents/delete_document", response_model=None)
    async def delete_document(
        body: DeleteDocRequest,
        runtime: Runtime,
        workspace: ExistingWorkspace,
        wait: Annotated[bool, Query(description="answer when the deletion is done")] = False,
    ) -> JSONResponse | dict[str, Any]:
        async def run() -> list[dict[str, Any]]:
            results = []
            async with runtime.pool.lease(workspace) as rag:
                lock = runtime.code_lock(workspace)
                code = await codegraph.delete_many(rag, body.doc_ids, lock)
                for doc_id in body.doc_ids:
                    if doc_id in code:
                        results.append({"status": "success", "doc_id": doc_id})
                    else:
                        results.append(await delete_one(rag, doc_id, body.delete_llm_cache))
                await clear_query_cache(rag)
            return results

        if wait:
            results = await run()
            failed = [r for r in results if r.get("status") not in ("success", "not_found")]
            missing = [r.get("doc_id") for r in results if r.get("status") == "not_found"]
            body_out = {
                "status": "success" if not failed else "failure",
                "doc_id": ",".join(body.doc_ids),
                "results": results,
                "message": f"{len(results) - len(missing) - len(failed)} deleted"
                + (f", not found: {missing}" if missing else "")
                + (f", not deleted: {[r.get('doc_id') for r in failed]}" if failed else ""),
            }
            # 503: retryable (the workspace's pipeline stayed busy, or a storage failed)
            return JSONResponse(body_out, status_code=200 if not failed else 503)
        task = asyncio.create_task(run())
        runtime.tasks.add(task)
        task.add_done_callback(runtime.tasks.discard)
        return {
            "status": "deletion_started",
            "message": f"deleting {len(body.doc_ids)} document(s)",
            "doc_id": ",".join(body.doc_ids),
        }

    @app.post("/documents/reprocess_failed")
    async def reprocess_failed(runtime: Runtime, workspace: ExistingWorkspace) -> dict[str, str]:
        refusal = await runtime.retry_failed(workspace)
        if refusal is not None:
            raise HTTPException(409, refusal)
        return {
            "status": "reprocessing_started",
            "message": f"retrying the failed documents of {workspace}, once each",
        }

    # -- queries ------------------------------------------------------------------------
    @app.post("/query")
    async def query(
        body: QueryRequest, runtime: Runtime, workspace: ExistingWorkspace
    ) -> dict[str, Any]:
        started = time.perf_counter()
        async with runtime.pool.lease(workspace) as rag:
            result = await rag.aquery_llm(body.query, param=param_of(settings, body, False))
        observe(runtime, "query", body.mode, started)
        llm = result.get("llm_response", {}) if isinstance(result, dict) else {}
        out: dict[str, Any] = {
            "response": llm.get("content") or (result if isinstance(result, str) else "")
        }
        if body.include_references:
            out["references"] = from_stored_sources(
                (result.get("data") or {}).get("references", [])
            )
        return out

    @app.post("/query/data", openapi_extra=QUERY_BODY_DOC)
    async def query_data(
        request: Request,
        runtime: Runtime,
        workspace: ExistingWorkspace,
        body: Annotated[QueryRequest, Depends(query_body)],
    ) -> Response:
        # SearchPath answers before this route is reached; the same function either way
        embed: EmbeddingBackend = request.app.state.backends["embedding"]
        return await search_data(runtime, settings, embed, workspace, body)

    @app.post("/query/stream")
    async def query_stream(
        body: QueryRequest, request: Request, runtime: Runtime, workspace: ExistingWorkspace
    ) -> StreamingResponse:
        # the lease is taken when the stream starts and released when it ends, however it
        # ends: a client that leaves before the first line must not leave the workspace leased
        async def lines() -> AsyncIterator[str]:
            started = time.perf_counter()
            try:
                async with runtime.pool.lease(workspace) as rag:
                    result = await rag.aquery_llm(
                        body.query, param=param_of(settings, body, body.stream is not False)
                    )
                    llm = result.get("llm_response", {}) if isinstance(result, dict) else {}
                    if body.include_references:
                        data = result.get("data") or {}
                        refs = from_stored_sources(data.get("references", []))
                        yield json.dumps({"references": refs}) + "\n"
                    content = llm.get("response_iterator") if llm.get("is_streaming") else None
                    if content is not None:
                        async for piece in content:
                            if piece:
                                yield json.dumps({"response": piece}) + "\n"
                    else:
                        yield json.dumps({"response": llm.get("content") or ""}) + "\n"
            except Exception as exc:  # the status line is gone: report inside the stream
                log.exception("stream query failed")
                yield json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n"
            finally:
                observe(runtime, "query_stream", body.mode, started)

        return ClosingStreamingResponse(lines(), media_type="application/x-ndjson")

    # -- graph ------------------------------------------------------------------------
    @app.get("/graph/label/list")
    async def labels(runtime: Runtime, workspace: KnownWorkspace) -> list[str]:
        async with runtime.pool.lease(workspace) as rag:
            return await rag.get_graph_labels()

    @app.get("/graph/label/search")
    async def search_labels(
        runtime: Runtime,
        workspace: KnownWorkspace,
        q: Annotated[str, Query(min_length=1, max_length=200)],
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> list[str]:
        """Entity names matching ``q`` (fuzzy, best first)."""
        async with runtime.pool.lease(workspace) as rag:
            return await rag.chunk_entity_relation_graph.search_labels(q, limit)

    @app.get("/graph/entity")
    async def entity(
        runtime: Runtime,
        workspace: KnownWorkspace,
        name: Annotated[str, Query(min_length=1, max_length=1000)],
    ) -> dict[str, Any]:
        """One entity: its type, description, file, and the chunks it comes from (for a code
        symbol, the code that defines it)."""
        async with runtime.pool.lease(workspace) as rag:
            node = await rag.chunk_entity_relation_graph.get_node(name)
            if node is None:
                raise HTTPException(404, f"no entity {name!r} in workspace {workspace!r}")
            chunk_ids = [c for c in str(node.get("source_id") or "").split(GRAPH_FIELD_SEP) if c]
            chunks = await rag.text_chunks.get_by_ids(chunk_ids[:10]) if chunk_ids else []
            degree = await rag.chunk_entity_relation_graph.node_degree(name)
        return from_stored_sources(
            jsonable(
                {
                    "name": name,
                    "type": node.get("entity_type"),
                    "description": node.get("description"),
                    "file_path": node.get("file_path"),
                    "degree": degree,
                    "chunks": [
                        {"content": c.get("content"), "file_path": c.get("file_path")}
                        for c in chunks
                        if c
                    ],
                }
            )
        )

    @app.get("/graph/neighbors")
    async def neighbors(
        runtime: Runtime,
        workspace: KnownWorkspace,
        name: Annotated[str, Query(min_length=1, max_length=1000)],
        kind: Annotated[str | None, Query(max_length=40)] = None,
        direction: Annotated[str, Query(pattern="^(in|out|both)$")] = "both",
        limit: Annotated[int, Query(ge=1, le=2000)] = 200,
    ) -> dict[str, Any]:
        """The entity's edges, optionally of one kind (``calls``, ``imports``, ``contains``,
        ``extends``...) and one direction: ``in`` (callers), ``out`` (callees). Direction is
        known for code edges (their description says ``kinds: source -> target``)."""
        async with runtime.pool.lease(workspace) as rag:
            graph = rag.chunk_entity_relation_graph
            if await graph.get_node(name) is None:
                raise HTTPException(404, f"no entity {name!r} in workspace {workspace!r}")
            edges = await graph.get_node_edges(name) or []
            found: list[dict[str, Any]] = []
            for a, b in edges:
                other = b if a == name else a
                data = await graph.get_edge(a, b) or {}
                for edge_kinds, source, _ in codegraph.directed(data, a, b):
                    if kind and kind not in edge_kinds:
                        continue
                    outgoing = source == name
                    if (direction == "out" and not outgoing) or (direction == "in" and outgoing):
                        continue
                    found.append(
                        {
                            "entity": other,
                            "direction": "out" if outgoing else "in",
                            "kinds": edge_kinds,
                            "file_path": data.get("file_path"),
                        }
                    )
                if len(found) >= limit:
                    break
        found.sort(key=lambda e: (e["direction"], e["entity"]))
        return from_stored_sources(jsonable({"name": name, "neighbors": found[:limit]}))

    @app.get("/graphs")
    async def graphs(
        runtime: Runtime,
        workspace: KnownWorkspace,
        label: Annotated[str, Query(min_length=1)],
        max_depth: Annotated[int, Query(ge=1)] = 3,
        max_nodes: Annotated[int, Query(ge=1)] = 1000,
    ) -> dict[str, Any]:
        async with runtime.pool.lease(workspace) as rag:
            graph = await rag.get_knowledge_graph(
                node_label=label, max_depth=max_depth, max_nodes=max_nodes
            )
        return from_stored_sources(
            jsonable(graph.model_dump() if hasattr(graph, "model_dump") else graph)
        )

    return app


async def delete_one(rag: LightRAG, doc_id: str, delete_llm_cache: bool) -> dict[str, Any]:
    """LightRAG refuses a deletion ("not_allowed") while the workspace's pipeline is indexing:
    wait for it (bounded) rather than report a failure the caller can do nothing about."""
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    while True:
        outcome = jsonable(await rag.adelete_by_doc_id(doc_id, delete_llm_cache=delete_llm_cache))
        if outcome.get("status") != "not_allowed" or time.monotonic() > deadline:
            return outcome
        await asyncio.sleep(0.5)


def doc_json(doc_id: str, status: Any) -> dict[str, Any]:
    d = from_stored_sources(jsonable(status))
    return {
        "id": doc_id,
        "content_summary": d.get("content_summary"),
        "content_length": d.get("content_length"),
        "status": d.get("status"),
        "created_at": d.get("created_at"),
        "updated_at": d.get("updated_at"),
        "track_id": d.get("track_id"),
        "chunks_count": d.get("chunks_count"),
        "error_msg": d.get("error_msg"),
        "file_path": d.get("file_path"),
        "metadata": _metadata(d.get("metadata") or {}),
    }


def _metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """A code document's journal holds its whole payload, a pending extraction its text:
    list only what they are."""
    extraction = metadata.get("extraction")
    if extraction:
        extraction = {k: v for k, v in extraction.items() if k != "text"}
        metadata = {**metadata, "extraction": extraction}
    journal = metadata.get(codegraph.KIND)
    if not journal:
        return metadata
    payload = journal.get("payload") or {}
    return {
        **{k: v for k, v in metadata.items() if k != codegraph.KIND},
        codegraph.KIND: {
            "state": journal.get("state"),
            "entities": len(payload.get("entities") or []),
            "relations": len(payload.get("relations") or []),
        },
    }
