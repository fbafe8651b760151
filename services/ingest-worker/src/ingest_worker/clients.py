"""The two services a job talks to, with retries for outages (not for bad input)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from sparkstack_common.auth import auth_headers

log = logging.getLogger("ingest_worker")
T = TypeVar("T")


class ServiceUnavailable(RuntimeError):
    """A service stayed unreachable (or answered 5xx) through every retry: the attempt fails
    and the message's redelivery retries the job later."""


async def with_retries(
    name: str, call: Callable[[], Awaitable[T]], attempts: int, backoff: float
) -> T:
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except ServiceUnavailable as exc:
            if attempt == attempts:
                raise
            delay = backoff * 2 ** (attempt - 1)
            log.warning("%s unavailable (%s); retry %d in %.1fs", name, exc, attempt, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class Preprocessor:
    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: str | None) -> None:
        self.client = client
        self.url = f"{base_url.rstrip('/')}/ingest"
        self.headers = auth_headers(api_key)

    async def ingest(self, workspace: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        """Per-file results of POST /ingest (chunks sent to rag-server with stable ids)."""
        multipart = [("files", (path, data)) for path, data in files]
        try:
            r = await self.client.post(
                self.url, files=multipart, headers={**self.headers, "X-Workspace": workspace}
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"code-preprocessor at {self.url}: {type(exc).__name__}"
            ) from exc
        if r.status_code == 502 or r.status_code >= 500:
            # 502: rag-server behind it is down; both are outages worth retrying
            raise ServiceUnavailable(f"code-preprocessor answered {r.status_code}: {r.text[:300]}")
        if r.status_code >= 400:
            raise RuntimeError(
                f"code-preprocessor refused the batch ({r.status_code}): {r.text[:300]}"
            )
        return r.json()


class RagServer:
    def __init__(self, client: httpx.AsyncClient, base_url: str, api_key: str | None) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.headers = auth_headers(api_key)

    async def delete(self, workspace: str, doc_ids: list[str]) -> None:
        if not doc_ids:
            return
        try:
            r = await self.client.request(
                "DELETE",
                f"{self.base_url}/documents/delete_document",
                params={"wait": "true"},
                json={"doc_ids": doc_ids},
                headers={**self.headers, "LIGHTRAG-WORKSPACE": workspace},
            )
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"rag-server at {self.base_url}: {type(exc).__name__}"
            ) from exc
        if r.status_code == 404:
            return  # the workspace is gone: nothing left to delete
        if r.status_code >= 500:
            raise ServiceUnavailable(f"rag-server answered {r.status_code}: {r.text[:300]}")
        if r.status_code >= 400:
            raise RuntimeError(f"rag-server refused the delete ({r.status_code}): {r.text[:300]}")
