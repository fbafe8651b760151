"""Archival memory: the workspace's knowledge base in rag-server.

Reads use ``POST /query/data`` (``naive`` mode costs no LLM call, only an embedding); a
workspace nobody wrote to answers 404, which here means "no archival memory", not an error.
Session summaries are written with ``POST /documents/texts`` under a stable document id, so a
retried write is a no-op (rag-server answers ``duplicated``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

WORKSPACE_HEADER = "LIGHTRAG-WORKSPACE"
MIN_QUERY_CHARS = 3  # rag-server refuses shorter queries


class ArchiveError(RuntimeError):
    """rag-server failed or could not be reached."""


@dataclass(frozen=True)
class ArchivalHit:
    text: str
    source: str | None


def summary_doc_id(session_id: str, upto_turn: int) -> str:
    return f"session-{session_id}-{upto_turn}"


def summary_source(session_id: str, upto_turn: int) -> str:
    # one source per document: LightRAG may treat documents sharing a file path as one
    return f"sessions/{session_id}/turns-1-{upto_turn}"


def _clip(text: str, max_chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


class ArchiveClient:
    def __init__(
        self,
        client: httpx.AsyncClient,
        rag_server_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_chars: int = 1200,
    ) -> None:
        self.client = client
        self.base_url = rag_server_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.max_chars = max_chars

    def _headers(self, workspace: str) -> dict[str, str]:
        headers = {WORKSPACE_HEADER: workspace}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    async def _post(self, path: str, workspace: str, body: dict[str, Any]) -> httpx.Response:
        url = f"{self.base_url}{path}"
        try:
            return await self.client.post(
                url, json=body, headers=self._headers(workspace), timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise ArchiveError(
                f"rag-server {self.base_url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    async def search(
        self, workspace: str, query: str, mode: str = "naive", top_k: int = 4
    ) -> list[ArchivalHit]:
        """Snippets of what the workspace knows about ``query``: chunks first, then entities
        and relations, at most ``top_k`` of each, each clipped to ``max_chars``."""
        if top_k <= 0 or len(query.strip()) < MIN_QUERY_CHARS:
            return []
        body = {"query": query, "mode": mode, "top_k": top_k, "chunk_top_k": top_k}
        r = await self._post("/query/data", workspace, body)
        if r.status_code == 404:
            return []  # nobody wrote to this workspace: no archival memory
        if r.status_code >= 400:
            raise ArchiveError(f"rag-server /query/data answered {r.status_code}: {r.text[:300]}")
        try:
            data = r.json().get("data") or {}
        except ValueError as exc:
            raise ArchiveError("rag-server /query/data answered no JSON") from exc
        return self._hits(data, top_k)

    def _hits(self, data: dict[str, Any], top_k: int) -> list[ArchivalHit]:
        hits: list[ArchivalHit] = []
        seen: set[str] = set()

        def add(text: str, source: Any) -> None:
            text = _clip(text, self.max_chars)
            if text and text not in seen:
                seen.add(text)
                hits.append(ArchivalHit(text, str(source) if source else None))

        for c in (data.get("chunks") or [])[:top_k]:
            add(str(c.get("content") or ""), c.get("file_path"))
        for e in (data.get("entities") or [])[:top_k]:
            name, desc = e.get("entity_name") or "", e.get("description") or ""
            add(f"{name}: {desc}" if desc else str(name), e.get("file_path"))
        for rel in (data.get("relationships") or [])[:top_k]:
            src, tgt = rel.get("src_id") or "", rel.get("tgt_id") or ""
            desc = rel.get("description") or ""
            add(f"{src} -> {tgt}: {desc}" if desc else f"{src} -> {tgt}", rel.get("file_path"))
        return hits

    async def store_summary(
        self, workspace: str, session_id: str, upto_turn: int, text: str
    ) -> None:
        """Enqueue the session summary into the workspace (indexing runs in rag-server's
        background). Idempotent: the id is ``session-<id>-<upto_turn>``."""
        if not text.strip():
            raise ValueError("summary text must not be empty")
        body = {
            "texts": [text],
            "file_sources": [summary_source(session_id, upto_turn)],
            "ids": [summary_doc_id(session_id, upto_turn)],
        }
        r = await self._post("/documents/texts", workspace, body)
        if r.status_code >= 400:
            raise ArchiveError(
                f"rag-server /documents/texts answered {r.status_code}: {r.text[:300]}"
            )
        status = (r.json() or {}).get("status")
        if status not in ("success", "duplicated", "partial_success"):
            raise ArchiveError(f"rag-server refused the summary: {r.text[:300]}")

    async def ping(self) -> bool:
        try:
            r = await self.client.get(f"{self.base_url}/health", timeout=self.timeout)
        except httpx.HTTPError:
            return False
        return r.status_code == 200
