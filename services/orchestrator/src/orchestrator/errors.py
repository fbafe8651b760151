"""OpenAI-style error bodies: what every OpenAI client knows how to show."""

from __future__ import annotations

import orjson
from sparkstack_common.rag_client import RagBusy, RagRefused, RagUnavailable
from starlette.responses import Response


class APIError(Exception):
    """An error answered to the client in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    def response(self) -> Response:
        return Response(
            self.body(), self.status, headers=self.headers, media_type="application/json"
        )


def error_dict(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> dict[str, dict[str, str | None]]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_body(
    message: str, type_: str, code: str | None = None, param: str | None = None
) -> bytes:
    return orjson.dumps(error_dict(message, type_, code, param))


def bad_request(message: str, param: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", "invalid_request", param)


def not_found(message: str, code: str = "not_found", param: str | None = None) -> APIError:
    return APIError(404, message, "invalid_request_error", code, param)


def request_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> APIError:
    """An APIError typed by its status: ``server_error`` from 500, else a request error."""
    type_ = "server_error" if status >= 500 else "invalid_request_error"
    return APIError(status, message, type_, code, param, headers)


def rag_error(exc: RagUnavailable | RagRefused) -> APIError:
    """What a rag-server failure means to the caller: the workspace cannot take this now
    (409, rag-server's reason whole: another embedding model, a reindex running), a bad
    request (400), or rag-server is down (502)."""
    if isinstance(exc, RagBusy):
        return APIError(409, exc.detail, "invalid_request_error", "workspace_busy")
    if isinstance(exc, RagRefused):
        return APIError(400, str(exc), "invalid_request_error", "invalid_request")
    return APIError(502, f"rag-server is unavailable: {exc}", "server_error", "rag_unavailable")
