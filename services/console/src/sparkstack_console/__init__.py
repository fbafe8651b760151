"""The sparkstack console: static pages and one script, served by the orchestrator under
``/ui``. The pages hold no data; every call they make goes to the orchestrator's public API
with the key the user logged in with, so the console can do exactly what that key can."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"

# Nothing but the console's own files runs or loads: no inline script, no third party, no
# framing (clickjacking); the API is same-origin.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class _SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def console_routes(prefix: str = PREFIX) -> list[BaseRoute]:
    """The routes to add to an app: ``prefix`` serves the console."""
    files = StaticFiles(directory=STATIC, html=True)
    return [Mount(prefix, app=_SecurityHeaders(files), name="console")]
