"""The code-preprocessor HTTP API."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from sparkstack_common.auth import ServiceKeyAuth, secret_value
from sparkstack_common.body_limit import BodyLimit
from sparkstack_common.http import HTTP
from sparkstack_common.rag_client import RagClient, RagRefused, RagUnavailable
from sparkstack_common.service import add_standard_routes
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace

from .ingest import FileIngest, prepare, send
from .metrics import Metrics
from .pool import ParserPool
from .preprocess import kind_of
from .settings import Settings


class TooLarge(Exception):
    pass


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, or TooLarge as soon as it passes ``limit``."""
    parts: list[bytes] = []
    size = 0
    while block := await upload.read(1 << 16):
        size += len(block)
        if size > limit:
            raise TooLarge(f"{upload.filename}: larger than the limit of {limit} bytes")
        parts.append(block)
    return b"".join(parts)


def upload_path(upload: UploadFile, override: str | None = None) -> str:
    return (override or upload.filename or "unnamed").replace("\\", "/").lstrip("/")


async def pool_of(request: Request) -> ParserPool:
    return request.app.state.pool


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = ParserPool(settings.workers, settings.parser_limits())
        await pool.start()
        app.state.liveness = pool.liveness
        metrics.workers_replaced.set_function(lambda: pool.replaced)
        async with HTTP(timeout=settings.rag_timeout_seconds) as client:
            app.state.pool = pool
            app.state.rag = RagClient(
                client,
                settings.rag_server_url,
                secret_value(settings.rag_server_api_key),
                timeout=settings.rag_timeout_seconds,
            )
            try:
                yield
            finally:
                await pool.close()

    api_key = secret_value(settings.api_key)
    if api_key is None:
        raise RuntimeError("CODE_PREPROCESSOR_API_KEY is not set: the preprocessor needs its key")
    app = FastAPI(title="code-preprocessor", version="0.1.0", lifespan=lifespan)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        setting="CODE_PREPROCESSOR_MAX_REQUEST_BYTES",
    )
    app.add_middleware(ServiceKeyAuth, key=api_key)
    app.state.settings = settings
    app.state.metrics = metrics

    async def pool_ready(request: Request) -> tuple[bool, str]:
        return request.app.state.pool.describe()

    async def rag_reachable(request: Request) -> tuple[bool, str]:
        ok, detail = await request.app.state.rag.reachable()
        return ok, ("reachable: " if ok else "not reachable (only /ingest needs it): ") + detail

    checks = {"parser": pool_ready, "rag-server": rag_reachable}
    # parsing works without rag-server, and /ingest answers a clear 502 when it is down
    add_standard_routes(app, "code-preprocessor", metrics.registry, checks, required={"parser"})

    async def read_batch(files: list[UploadFile]) -> tuple[list[tuple[str, bytes]], list[dict]]:
        if len(files) > settings.max_files_per_request:
            raise HTTPException(
                413, f"{len(files)} files: at most {settings.max_files_per_request} per request"
            )
        accepted: list[tuple[str, bytes]] = []
        refused: list[dict[str, Any]] = []
        for upload in files:
            path = upload_path(upload)
            try:
                accepted.append((path, await read_limited(upload, settings.max_file_bytes)))
            except TooLarge:
                refused.append(
                    {
                        "path": path,
                        "status": "skipped",
                        "reason": f"too large (limit {settings.max_file_bytes} bytes)",
                        "language": kind_of(path),
                    }
                )
        return accepted, refused

    @app.post("/parse")
    async def parse(
        file: Annotated[UploadFile, File(description="the file to parse")],
        pool: Annotated[ParserPool, Depends(pool_of)],
        path: Annotated[str | None, Form(description="path to report, not the filename")] = None,
    ) -> JSONResponse:
        started = time.perf_counter()
        name = upload_path(file, path)
        if kind_of(name) is None:
            raise HTTPException(400, f"unsupported file type: {name}")
        try:
            data = await read_limited(file, settings.max_file_bytes)
        except TooLarge as exc:
            raise HTTPException(413, str(exc)) from exc
        result = await pool.process(name, data)
        metrics.record([result])
        metrics.seconds.labels("parse").observe(time.perf_counter() - started)
        if result.status == "error":
            raise HTTPException(422, f"{name}: {result.reason}")
        return JSONResponse(result.to_dict())

    @app.post("/parse/batch")
    async def parse_batch(
        files: Annotated[list[UploadFile], File(description="files to parse")],
        pool: Annotated[ParserPool, Depends(pool_of)],
    ) -> JSONResponse:
        started = time.perf_counter()
        accepted, refused = await read_batch(files)
        results = await pool.process_many(accepted)
        metrics.record(results)
        metrics.seconds.labels("parse_batch").observe(time.perf_counter() - started)
        out = [r.to_dict() for r in results] + refused
        return JSONResponse({"files": out, "summary": summarize(out)})

    @app.post("/ingest")
    async def ingest(
        request: Request,
        files: Annotated[list[UploadFile], File(description="files to parse and index")],
        pool: Annotated[ParserPool, Depends(pool_of)],
        x_workspace: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        started = time.perf_counter()
        try:
            workspace = validate_workspace(x_workspace)
        except InvalidWorkspace as exc:
            raise HTTPException(400, str(exc)) from exc
        accepted, refused = await read_batch(files)
        results = await pool.process_many(accepted)
        metrics.record(results)
        hashes = {p: hashlib.sha256(d).hexdigest() for p, d in accepted}
        work = [FileIngest(r) for r in results]
        for f in work:
            if f.result.status == "ok":
                prepare(f, workspace, hashes[f.result.path])
        try:
            await send(work, workspace, request.app.state.rag, settings.ingest_batch_size)
        except (RagUnavailable, RagRefused) as exc:
            metrics.rag_errors.inc()
            out = [f.to_dict() for f in work] + refused
            return JSONResponse(
                {"detail": str(exc), "workspace": workspace, "files": out}, status_code=502
            )
        finally:
            metrics.documents_sent.inc(sum(f.sent for f in work))
            metrics.seconds.labels("ingest").observe(time.perf_counter() - started)
        out = [f.to_dict() for f in work] + refused
        return JSONResponse({"workspace": workspace, "files": out, "summary": summarize(out)})

    return app


def summarize(files: list[dict[str, Any]]) -> dict[str, int]:
    summary = {"files": len(files), "ok": 0, "skipped": 0, "error": 0}
    for f in files:
        summary[f["status"]] = summary.get(f["status"], 0) + 1
    summary["chunks"] = sum(
        f["chunks"] if isinstance(f.get("chunks"), int) else len(f.get("chunks") or [])
        for f in files
    )
    return summary
