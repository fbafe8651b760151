"""The orchestrator's door: which requests get in, and as whom.

One pure ASGI middleware (BaseHTTPMiddleware would hide client disconnects from the streaming
path), in this order:

1. **Host**: a request whose ``Host`` is not one of ``allowed_hosts`` is a 421. On a laptop
   this stops DNS rebinding (a web page whose domain resolves to 127.0.0.1); in the cluster the
   manifests allow any host, since the key is what protects the API there.
2. **Content type**: a body sent to a JSON route must say ``application/json`` (415 otherwise),
   and the upload routes take only ``multipart/form-data``. Browsers send ``text/plain`` and
   form bodies cross-origin without asking; JSON they do not.
3. **Key**: every route but the probes needs ``Authorization: Bearer <key>``; the principal
   it belongs to goes into ``scope["state"]["principal"]`` for the routes' scope checks. A
   probe with a valid admin key shows details; without one it says only what is ok.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, Request
from sparkstack_common.auth import PROBE_PATHS, bearer_token
from sparkstack_common.workspaces import InvalidWorkspace, validate_workspace
from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import header, send_response
from .errors import APIError, bad_request
from .keys import Keyring, KeyStoreUnavailable, Principal

CONSOLE = "/ui"
MULTIPART_PATHS = frozenset({"/v1/documents/ingest", "/v1/codebase/ingest"})
ADMIN_PATHS = ("/metrics", "/v1/keys")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def parse_hosts(value: str | Iterable[str]) -> frozenset[str]:
    items = value.split(",") if isinstance(value, str) else value
    return frozenset(h.strip().lower() for h in items if h.strip())


def _host_name(raw: str) -> str:
    raw = raw.strip().lower()
    if raw.startswith("["):  # [::1]:8100
        return raw.split("]", 1)[0] + "]"
    return raw.rsplit(":", 1)[0] if raw.count(":") == 1 else raw


def _media_type(raw: str | None) -> str:
    return (raw or "").split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _unauthorized() -> APIError:
    return APIError(
        401,
        "Incorrect API key provided. Send 'Authorization: Bearer <key>'.",
        "invalid_request_error",
        "invalid_api_key",
    )


class Gate:
    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            try:
                refusal = await self._authenticate(scope)
            except KeyStoreUnavailable:
                refusal = APIError(
                    503,
                    "the key store (PostgreSQL) is unavailable, try again shortly",
                    "server_error",
                    "key_store_unavailable",
                )
        if refusal is not None:
            extra = [(b"www-authenticate", b"Bearer")] if refusal.status == 401 else []
            await send_response(send, refusal.status, refusal.body(), extra)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> APIError | None:
        if not self.any_host:
            host = _host_name(header(scope, b"host") or "")
            if host not in self.allowed_hosts:
                return APIError(
                    421,
                    f"this server does not answer for host {host!r}; allowed hosts are set "
                    "by ORCHESTRATOR_ALLOWED_HOSTS",
                    "invalid_request_error",
                    "misdirected_request",
                )
        if scope["method"] in _BODY_METHODS:
            media = _media_type(header(scope, b"content-type"))
            length = header(scope, b"content-length")
            empty = (
                not media and length in ("0", None) and header(scope, b"transfer-encoding") is None
            )
            if scope["path"] in MULTIPART_PATHS:
                if media != "multipart/form-data":
                    return _unsupported("multipart/form-data (field `file`)")
            elif not empty and not _is_json(media):
                return _unsupported("application/json")
        return None

    async def _authenticate(self, scope: Scope) -> APIError | None:
        keyring: Keyring | None = getattr(scope["app"].state, "keyring", None)
        token = bearer_token(scope)
        principal = await keyring.verify(token) if keyring is not None and token else None
        state = scope.setdefault("state", {})
        if principal is not None:
            state["principal"] = principal
            state["trusted"] = principal.admin
        path = scope["path"]
        if path in PROBE_PATHS or _is_console_asset(scope):
            return None
        if principal is None:
            return _unauthorized()
        if not principal.admin and path.startswith(ADMIN_PATHS):
            return APIError(403, "this route needs an admin key", "permission_error", "admin_only")
        return None


def _is_console_asset(scope: Scope) -> bool:
    """The console's pages and script hold no data (every call they make carries the key),
    so they load without one."""
    path = scope["path"]
    inside = path == CONSOLE or path.startswith(CONSOLE + "/")
    return inside and scope["method"] in ("GET", "HEAD")


def _unsupported(expected: str) -> APIError:
    return APIError(
        415,
        f"unsupported content type: send the body as {expected}",
        "invalid_request_error",
        "unsupported_media_type",
    )


def principal_of(scope: Scope) -> Principal:
    principal = (scope.get("state") or {}).get("principal")
    if principal is None:  # the Gate lets no unauthenticated request through to a route
        raise _unauthorized()
    return principal


async def caller(request: Request) -> Principal:
    return principal_of(request.scope)


Caller = Annotated[Principal, Depends(caller)]


def invalid_workspace(exc: InvalidWorkspace, param: str) -> APIError:
    return APIError(400, str(exc), "invalid_request_error", "invalid_workspace", param)


def workspace_not_found(name: str, param: str = "workspace") -> APIError:
    return APIError(
        404,
        f"workspace {name!r} does not exist",
        "invalid_request_error",
        "workspace_not_found",
        param,
    )


def scoped_workspace(principal: Principal, name: str | None, param: str = "workspace") -> str:
    """The workspace a request acts on: the one it names (validated, and within the key's
    scope, else 404 as if it did not exist), or the key's only workspace, or ``default``."""
    if not name:
        if principal.only_workspace is not None:
            return principal.only_workspace
        if not principal.admin and "default" not in principal.workspaces:
            raise bad_request(
                "name a workspace (field `workspace` or header X-Workspace): this key may use "
                + ", ".join(sorted(principal.workspaces)),
                param,
            )
    try:
        workspace = validate_workspace(name or None)
    except InvalidWorkspace as exc:
        raise invalid_workspace(exc, param) from None
    if not principal.allows(workspace):
        raise workspace_not_found(workspace, param)
    return workspace


def filter_workspace(principal: Principal, name: str | None) -> tuple[str | None, list[str] | None]:
    """For listings: (the one workspace asked for, the key's scope). A name outside the scope
    selects nothing, exactly like a workspace that does not exist."""
    if name:
        try:
            name = validate_workspace(name)
        except InvalidWorkspace as exc:
            raise invalid_workspace(exc, "workspace") from None
    return name or None, principal.scope
