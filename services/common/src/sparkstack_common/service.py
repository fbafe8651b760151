"""What every sparkstack HTTP service has: /health, /ready, /metrics and uvicorn start-up."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sparkstack_common.auth import caller_is_trusted, secret_value

# A readiness check returns (ok, detail); every check runs on each /ready call.
ReadyCheck = Callable[[Request], Awaitable[tuple[bool, str]]]


def add_standard_routes(
    app: FastAPI,
    service: str,
    registry: CollectorRegistry,
    checks: Mapping[str, ReadyCheck] | None = None,
) -> None:
    """``/health`` answers while the process serves; ``/ready`` runs the checks and is 503
    when one fails, naming it; ``/metrics`` exposes ``registry`` in Prometheus format.

    Probes carry no key, so ``/ready`` says only which checks are ok; a caller the service's
    auth middleware trusted (see :mod:`sparkstack_common.auth`) also gets each check's detail.
    """

    @app.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        results: dict[str, Any] = {}
        trusted = caller_is_trusted(request)
        ok = True
        for name, check in (checks or {}).items():
            try:
                passed, detail = await check(request)
            except Exception as exc:  # a broken check is a failed check, not a 500
                passed, detail = False, f"{type(exc).__name__}: {exc}"
            results[name] = {"ok": passed, "detail": detail} if trusted else {"ok": passed}
            ok = ok and passed
        body = {"status": "ready" if ok else "not ready", "service": service, "checks": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def serve_cli(
    prog: str,
    app_factory: str,
    default_port: int,
    default_host: str = "127.0.0.1",
    argv: Sequence[str] | None = None,
    required: Mapping[str, object] | None = None,
) -> None:
    """``--host``/``--port`` (and ``--log-level``) for a service's console script.

    ``required`` maps environment variable names to their settings' values: a service that
    would run without a credential it needs stops here with one clear line instead."""
    import uvicorn

    missing = [name for name, value in (required or {}).items() if secret_value(value) is None]
    if missing:
        raise SystemExit(
            f"{prog}: {', '.join(missing)} not set: every sparkstack service authenticates its "
            "callers (the cluster's Secret provides the keys; `sparkstack up` generates them)"
        )

    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--host", default=default_host)
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    uvicorn.run(app_factory, factory=True, host=args.host, port=args.port, log_level=args.log_level)
