"""The OpenAI routes straight from the door to the proxy.

Every chat turn of a coding agent passes here. Past the Gate (host, content type, key) these
requests need nothing of FastAPI's stack: the proxy reads and limits its body itself
(``read_body``), renders its own errors, and is a raw ASGI app already. Going through the
body-limit wrapper, the exception middleware, the exit-stack middleware and the router cost
about a tenth of the orchestrator's CPU per request in a burst, so they are skipped here;
every other route goes through them as before.
"""

from __future__ import annotations

from sparkstack_common.body_limit import too_large_message
from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import MAX_REQUEST_SETTING, header, send_api_error
from .proxy import Proxy

# (method, path) -> the Proxy method that answers it
ROUTES = {
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/embeddings"): "embeddings",
    ("GET", "/v1/models"): "models",
}


class HotPath:
    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = ROUTES.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        proxy: Proxy | None = getattr(scope["app"].state, "proxy", None) if method else None
        if method is None or proxy is None:
            await self.app(scope, receive, send)
            return
        length = header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            # refused on the header, before a byte of the body is read
            await send_api_error(send, 413, too_large_message(self.max_body, MAX_REQUEST_SETTING))
            return
        await getattr(proxy, method)(scope, receive, send)
