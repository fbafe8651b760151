"""What every sparkstack HTTP service has: /health, /ready, /metrics and uvicorn start-up."""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from sparkstack_common.auth import caller_is_trusted, secret_value
from sparkstack_common.heap import settle

# A readiness check returns (ok, detail).
ReadyCheck = Callable[[Request], Awaitable[tuple[bool, str]]]

# All checks run at once and each gets this long: well under a Kubernetes probe's timeout
# (5 s in our manifests), so a slow dependency is a failed check, never a timed-out probe.
READY_BUDGET_SECONDS = 2.0


def add_standard_routes(
    app: FastAPI,
    service: str,
    registry: CollectorRegistry,
    checks: Mapping[str, ReadyCheck] | None = None,
    required: Collection[str] | None = None,
    budget_seconds: float = READY_BUDGET_SECONDS,
) -> None:
    """``/health`` answers while the process serves (``liveness``, when given, can say it
    cannot); ``/ready`` runs the checks concurrently and is 503 only when a ``required`` one
    fails (all are required when ``required`` is None): readiness means "this process can
    serve", and a dependency it degrades without is reported in the body and in the
    ``sparkstack_check_ok`` gauge, never taking the service out of its Service.
    ``/metrics`` exposes ``registry`` in Prometheus format.

    Probes carry no key, so ``/ready`` says only which checks are ok; a caller the service's
    auth middleware trusted (see :mod:`sparkstack_common.auth`) also gets each check's detail.
    """
    checks = dict(checks or {})
    needed = frozenset(checks if required is None else required)
    unknown = needed - checks.keys()
    if unknown:
        raise ValueError(f"required checks without a check: {sorted(unknown)}")
    gauge = Gauge(
        "sparkstack_check_ok",
        "1 when the readiness check passed on the last /ready, 0 when it failed",
        ["check", "required"],
        registry=registry,
    )

    @app.get("/health", include_in_schema=False)
    async def health(request: Request) -> JSONResponse:
        liveness: Liveness | None = getattr(request.app.state, "liveness", None)
        if liveness is not None:
            alive, detail = liveness()
            if not alive:
                return JSONResponse(
                    {"status": "failing", "service": service, "detail": detail}, status_code=503
                )
        return JSONResponse({"status": "ok", "service": service})

    async def run(name: str, check: ReadyCheck, request: Request) -> tuple[bool, str]:
        try:
            return await asyncio.wait_for(check(request), budget_seconds)
        except TimeoutError:
            return False, f"no answer within {budget_seconds:g} s"
        except Exception as exc:  # a broken check is a failed check, not a 500
            return False, f"{type(exc).__name__}: {exc}"

    @app.get("/ready", include_in_schema=False)
    async def ready(request: Request) -> JSONResponse:
        trusted = caller_is_trusted(request)
        names = list(checks)
        outcomes = await asyncio.gather(*(run(n, checks[n], request) for n in names))
        results: dict[str, Any] = {}
        ok = True
        for name, (passed, detail) in zip(names, outcomes, strict=True):
            is_required = name in needed
            gauge.labels(name, "yes" if is_required else "no").set(1 if passed else 0)
            results[name] = {"ok": passed, "detail": detail} if trusted else {"ok": passed}
            ok = ok and (passed or not is_required)
        body = {
            "status": "ready" if ok else "not ready",
            "service": service,
            "checks": results,
            "required": sorted(needed),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


# Set as ``app.state.liveness``: (alive, detail) without awaiting anything, so /health stays
# instant; False makes /health 503 and Kubernetes restarts the pod.
Liveness = Callable[[], tuple[bool, str]]


def serve_cli(
    prog: str,
    app_factory: str,
    default_port: int,
    default_host: str = "127.0.0.1",
    argv: Sequence[str] | None = None,
    required: Mapping[str, object] | None = None,
    access_log: bool = True,
) -> None:
    """``--host``/``--port`` (and ``--log-level``, ``--access-log``) for a service's console
    script. ``access_log``: whether every request is logged unless the flag says otherwise;
    the orchestrator (the door) logs them, the services only it calls do not by default
    (one line per memory lookup and probe, paid on every chat turn).

    ``required`` maps environment variable names to their settings' values: a service that
    would run without a credential it needs stops here with one clear line instead."""
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
    parser.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=access_log)
    args = parser.parse_args(argv)
    config = uvicorn.Config(
        app_factory,
        factory=True,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=args.access_log,
        loop="uvloop",
        http="httptools",
    )
    server = SettlingServer(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    if not server.started:
        raise SystemExit(3)  # uvicorn's own exit code for a failed start-up


class SettlingServer(uvicorn.Server):
    """uvicorn's server, settling the heap once the app has started (see
    :func:`sparkstack_common.heap.settle`): what start-up built lives as long as the process,
    and the collector need not walk it again on every full collection under load."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            settle()
