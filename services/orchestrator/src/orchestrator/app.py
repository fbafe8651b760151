"""The orchestrator app: OpenAI API, memory, sessions, ingestion, service routes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from sparkstack_common.auth import secret_value
from sparkstack_common.body_limit import BodyLimit
from sparkstack_common.catalog import Catalog
from sparkstack_common.http import HTTP
from sparkstack_common.service import add_standard_routes
from sparkstack_console import console_routes
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from . import mcp_tools
from .asgi import MAX_REQUEST_SETTING, send_api_error
from .documents_api import router as documents_router
from .errors import APIError, error_dict
from .gate import CONSOLE, MULTIPART_PATHS, Gate, parse_hosts
from .graph_api import router as graph_router
from .hot_path import ROUTES as HOT_ROUTES
from .hot_path import HotPath
from .ingest.routes import router as ingestion_router
from .ingest.service import IngestionService
from .keys_api import router as keys_router
from .metrics import Metrics
from .proxy import Proxy
from .routing import Router
from .runtime import Runtime
from .sessions_api import router as sessions_router
from .settings import Settings
from .workspaces_api import router as workspaces_router


class _ProxyEndpoint:
    """A raw ASGI endpoint calling one of the app's Proxy methods (built in the lifespan)."""

    def __init__(self, method: str) -> None:
        self.method = method

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        proxy: Proxy = scope["app"].state.proxy
        handler: Callable[[Scope, Receive, Send], Awaitable[None]] = getattr(proxy, self.method)
        await handler(scope, receive, send)


class ConfigError(RuntimeError):
    """The settings cannot make a safe orchestrator (the message names the variable)."""


def create_app(settings: Settings | None = None, catalog: Catalog | None = None) -> FastAPI:
    settings = settings or Settings()
    if secret_value(settings.admin_key) is None:
        raise ConfigError(
            "ORCHESTRATOR_ADMIN_KEY is not set: the orchestrator needs its bootstrap admin key "
            "(the cluster's Secret provides it; `sparkstack up` generates one)"
        )
    catalog = catalog or Catalog.load()
    metrics = Metrics()
    router = Router(catalog, settings)
    mcp_server = mcp_tools.build()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with HTTP(
            timeout=settings.backend_timeout, connect_timeout=settings.backend_connect_timeout
        ) as client:
            runtime = Runtime(settings, catalog, metrics, client)
            await runtime.start()
            assert runtime.pool is not None
            runtime.ingestion = await IngestionService.start(
                settings, pool=runtime.pool, registry=metrics.registry
            )
            app.state.keyring = runtime.keyring
            app.state.ingestion = runtime.ingestion
            app.state.runtime = runtime
            app.state.http = client
            app.state.proxy = Proxy(
                router,
                client,
                metrics,
                runtime.memory,
                settings.backend_api_key,
                max_body=settings.max_request_bytes,
            )
            try:
                async with mcp_server.session_manager.run():
                    yield
            finally:
                await runtime.close()

    app = FastAPI(title="orchestrator", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.router = router
    # HotPath answers these; the routes are what the router knows of them (another method on
    # their paths is a 405, not a 404)
    app.router.routes.extend(
        Route(path, _ProxyEndpoint(name), methods=[method])
        for (method, path), name in HOT_ROUTES.items()
    )
    mcp_tools.mount(mcp_server, app.router.routes)
    app.router.routes.extend(console_routes(CONSOLE))

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(
            content=error_dict(str(exc.detail), kind, kind), status_code=exc.status_code
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(
            content=error_dict(problems, "invalid_request_error", "invalid_request"),
            status_code=400,
        )

    app.include_router(sessions_router)
    app.include_router(ingestion_router)
    app.include_router(keys_router)
    app.include_router(graph_router)
    app.include_router(workspaces_router)
    app.include_router(documents_router)

    def check(name: str, *args: str):
        async def run(request: Request) -> tuple[bool, str]:
            return await getattr(request.app.state.runtime, name)(*args)

        return run

    def ingestion_check(name: str):
        async def run(request: Request) -> tuple[bool, str]:
            return await getattr(request.app.state.ingestion, name)()

        return run

    checks = {
        "redis": check("check_redis"),
        "postgres": check("check_postgres"),
        "nats": ingestion_check("check_nats"),
        "rag-server": check("check_rag_server"),
        **{f"backend:{role}": check("check_backend", url) for role, url in router.urls.items()},
    }
    # ready means "can serve": without PostgreSQL no key can be checked; every other
    # dependency has a degraded answer (a memory tier reads "error", a model's chat is a 502,
    # uploads wait in the outbox for NATS), so it is reported, not required
    add_standard_routes(app, "orchestrator", metrics.registry, checks, required={"postgres"})
    # the upload routes stream their bodies under SPARKSTACK_INGEST_MAX_UPLOAD_BYTES
    # themselves (ingest/multipart.py), with an error naming the file
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_bytes,
        setting=MAX_REQUEST_SETTING,
        per_path=dict.fromkeys(MULTIPART_PATHS),
        refuse=send_api_error,
    )
    # the OpenAI routes skip the stack below once the Gate let them in (hot_path.py)
    app.add_middleware(HotPath, max_body=settings.max_request_bytes)
    # added last, so outermost: the Gate sees every request, CORS (when configured) answers
    # a browser's preflight before it
    app.add_middleware(Gate, allowed_hosts=parse_hosts(settings.allowed_hosts))
    if origins := sorted(parse_hosts(settings.cors_origins)):
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-workspace", "x-session-id"],
        )
    return app
