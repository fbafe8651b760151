"""The one client of rag-server's HTTP API, for every caller: the orchestrator (archival memory,
workspace listing), code-preprocessor (documents in) and the ingest-worker (deletes, document
status, reprocessing). It sends rag-server's key and the workspace header, and tells an outage
(:class:`RagUnavailable`, worth retrying) from a refusal (:class:`RagRefused`, bad input)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from sparkstack_common.auth import auth_headers, redact_url
from sparkstack_common.http import HTTP, HTTPError, Response
from sparkstack_common.retry import Unavailable

WORKSPACE_HEADER = "LIGHTRAG-WORKSPACE"
STATUS_BATCH = 1000  # document ids per POST /documents/status (rag-server's own limit)


class RagUnavailable(Unavailable):
    """rag-server could not be reached, answered 5xx, or was busy: retry later."""


class RagBusy(RagUnavailable):
    """rag-server answered 409: the workspace cannot take this now (built with another
    embedding model, being reindexed, a pipeline running); ``detail`` says why, whole."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


class RagRefused(RuntimeError):
    """rag-server refused the request (4xx other than a missing workspace)."""


class RagClient:
    def __init__(
        self,
        http: HTTP,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)
        self.timeout = timeout
        self._auth = auth_headers(api_key)

    def _headers(self, workspace: str | None) -> dict[str, str]:
        return {**self._auth, WORKSPACE_HEADER: workspace} if workspace else dict(self._auth)

    async def request(
        self,
        method: str,
        path: str,
        workspace: str | None = None,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        wait_seconds: float | None = None,
        missing_ok: bool = False,
    ) -> Response | None:
        """The response, or None for a 404 when ``missing_ok`` (a workspace nobody wrote to).
        Raises RagUnavailable for an outage, RagRefused for any other error answer."""
        try:
            r = await self.http.request(
                method,
                f"{self.base_url}{path}",
                json=json,
                params=params,
                headers=self._headers(workspace),
                timeout=wait_seconds or self.timeout,
            )
        except HTTPError as exc:
            raise RagUnavailable(
                f"rag-server unreachable at {self.shown_url}: {type(exc).__name__}"
            ) from exc
        if r.status_code == 404 and missing_ok:
            return None
        if r.status_code == 409:
            detail = _detail(r)
            raise RagBusy(f"rag-server {method} {path} answered 409: {detail[:300]}", detail)
        if r.status_code >= 500:
            raise RagUnavailable(
                f"rag-server {method} {path} answered {r.status_code}: {r.text[:300]}"
            )
        if r.status_code >= 400:
            raise RagRefused(f"rag-server {method} {path} answered {r.status_code}: {r.text[:300]}")
        return r

    async def insert_texts(
        self, workspace: str, texts: Sequence[str], sources: Sequence[str], ids: Sequence[str]
    ) -> dict[str, Any]:
        body = {"texts": list(texts), "file_sources": list(sources), "ids": list(ids)}
        r = await self.request("POST", "/documents/texts", workspace, json=body)
        assert r is not None
        return r.json()

    async def insert_code(
        self, workspace: str, documents: Sequence[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Code documents (chunks, entities, relationships), written without an LLM call and
        flushed once; processed when this returns. One result per document, in order."""
        r = await self.request(
            "POST", "/documents/code", workspace, json={"documents": list(documents)}
        )
        assert r is not None
        return list(r.json()["documents"])

    async def delete_workspace(self, workspace: str) -> bool:
        """Drop everything the workspace holds; False when rag-server never had it."""
        r = await self.request(
            "DELETE", f"/workspaces/{quote(workspace, safe='')}", missing_ok=True
        )
        return r is not None

    async def delete_documents(self, workspace: str, doc_ids: Sequence[str]) -> None:
        """Delete and wait until done; a workspace that is gone has nothing left to delete."""
        if doc_ids:
            await self.request(
                "DELETE",
                "/documents/delete_document",
                workspace,
                json={"doc_ids": list(doc_ids)},
                params={"wait": "true"},
                missing_ok=True,
            )

    async def document_status(
        self, workspace: str, doc_ids: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        """``{doc_id: {"status": ..., "error": ...}}`` for the ids rag-server knows (an id it
        does not know is absent)."""
        found: dict[str, dict[str, Any]] = {}
        ids = list(doc_ids)
        for start in range(0, len(ids), STATUS_BATCH):
            r = await self.request(
                "POST",
                "/documents/status",
                workspace,
                json={"ids": ids[start : start + STATUS_BATCH]},
                missing_ok=True,
            )
            if r is not None:
                found.update(r.json().get("documents", {}))
        return found

    async def reprocess_failed(self, workspace: str) -> None:
        await self.request("POST", "/documents/reprocess_failed", workspace, missing_ok=True)

    async def query_data(self, workspace: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The retrieval result, or None when nobody wrote to the workspace."""
        r = await self.request("POST", "/query/data", workspace, json=body, missing_ok=True)
        if r is None:
            return None
        try:
            return r.json()
        except ValueError as exc:
            raise RagUnavailable("rag-server /query/data answered no JSON") from exc

    async def workspaces(self) -> list[str]:
        r = await self.request("GET", "/workspaces", wait_seconds=3.0)
        assert r is not None
        return [w["name"] for w in r.json().get("workspaces", [])]

    async def reachable(self) -> tuple[bool, str]:
        try:
            r = await self.http.get(f"{self.base_url}/health", timeout=2.0)
        except HTTPError as exc:
            return False, f"unreachable at {self.shown_url}: {type(exc).__name__}"
        return r.status_code == 200, f"{self.shown_url} answered {r.status_code}"


def _detail(r: Response) -> str:
    try:
        detail = r.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else r.text[:1000]
