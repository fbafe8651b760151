"""Archival memory: the workspace's knowledge base in rag-server.

Reads use ``POST /query/data`` (``naive`` mode costs no LLM call, only an embedding); a
workspace nobody wrote to answers 404, which here means "no archival memory", not an error.
Session summaries are written with ``POST /documents/texts`` under a stable document id, so a
retried write is a no-op (rag-server answers ``duplicated``).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sparkstack_common.http import HTTP
from sparkstack_common.rag_client import RagClient, RagRefused, RagUnavailable

MIN_QUERY_CHARS = 3  # rag-server refuses shorter queries


class ArchivalError(RuntimeError):
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


class ArchivalClient:
    def __init__(
        self,
        client: HTTP,
        rag_server_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        max_chars: int = 1200,
    ) -> None:
        self.rag = RagClient(client, rag_server_url, api_key, timeout)
        self.max_chars = max_chars

    async def search(
        self,
        workspace: str,
        query: str,
        mode: str = "naive",
        top_k: int = 4,
        embedding: tuple[str, Sequence[float]] | None = None,
    ) -> list[ArchivalHit]:
        """Snippets of what the workspace knows about ``query``: chunks first, then entities
        and relations, at most ``top_k`` of each, each clipped to ``max_chars``.
        ``embedding`` (model, vector) is the query's, when the caller has it already;
        rag-server uses it if that model is its own."""
        if top_k <= 0 or len(query.strip()) < MIN_QUERY_CHARS:
            return []
        body: dict[str, Any] = {"query": query, "mode": mode, "top_k": top_k, "chunk_top_k": top_k}
        if embedding is not None and query == query.strip():  # rag-server strips the query
            # little-endian float32 in base64: 5 KiB to copy instead of 1024 numbers to print
            # here and parse there
            packed = np.asarray(embedding[1], dtype="<f4").tobytes()
            body["query_embedding"] = {
                "model": embedding[0],
                "vector_base64": base64.b64encode(packed).decode(),
            }
        try:
            answer = await self.rag.query_data(workspace, body)
        except (RagUnavailable, RagRefused) as exc:
            raise ArchivalError(str(exc)) from exc
        if answer is None:
            return []  # nobody wrote to this workspace: no archival memory
        return self._hits(answer.get("data") or {}, top_k)

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
        try:
            answer = await self.rag.insert_texts(
                workspace, body["texts"], body["file_sources"], body["ids"]
            )
        except (RagUnavailable, RagRefused) as exc:
            raise ArchivalError(str(exc)) from exc
        if answer.get("status") not in ("success", "duplicated", "partial_success"):
            raise ArchivalError(f"rag-server refused the summary: {answer}")

    async def ping(self) -> bool:
        ok, _ = await self.rag.reachable()
        return ok
