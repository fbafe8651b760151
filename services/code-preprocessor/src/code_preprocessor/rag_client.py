"""The part of rag-server's HTTP API the preprocessor uses."""

from __future__ import annotations

from typing import Any

import httpx


class RagServerError(Exception):
    """rag-server could not take the documents; the API answers 502 naming it."""


class RagClient:
    def __init__(self, base_url: str, client: httpx.AsyncClient, api_key: str | None = None):
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def insert_texts(
        self, workspace: str, texts: list[str], file_sources: list[str], ids: list[str]
    ) -> dict[str, Any]:
        url = f"{self.base_url}/documents/texts"
        headers = {**self._headers, "LIGHTRAG-WORKSPACE": workspace}
        body = {"texts": texts, "file_sources": file_sources, "ids": ids}
        try:
            response = await self._client.post(url, json=body, headers=headers)
        except httpx.TransportError as exc:
            raise RagServerError(
                f"rag-server unreachable at {self.base_url}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            raise RagServerError(
                f"rag-server at {self.base_url} answered {response.status_code}: "
                f"{response.text[:500]}"
            )
        return response.json()

    async def reachable(self) -> tuple[bool, str]:
        try:
            response = await self._client.get(f"{self.base_url}/health", timeout=2.0)
        except httpx.TransportError as exc:
            return False, f"unreachable at {self.base_url}: {type(exc).__name__}"
        return response.status_code == 200, f"{self.base_url} answered {response.status_code}"
