"""Embeddings over the OpenAI protocol (``POST {base_url}/embeddings``).

``base_url`` is an OpenAI base URL including its ``/v1``. Shared by the orchestrator (query
and summary embeddings) and rag-server (LightRAG's embedding function).
"""

from __future__ import annotations

import math

from sparkstack_common.http import HTTP, HTTPError


class EmbeddingError(RuntimeError):
    """The embedding backend failed, could not be reached, or answered the wrong shape."""


class Embedder:
    def __init__(
        self,
        client: HTTP,
        base_url: str,
        model: str,
        dim: int,
        api_key: str | None = None,
        timeout: float = 60.0,
        dim_setting: str = "the embedding dimension setting",
    ) -> None:
        if dim < 1:
            raise ValueError("dim must be positive")
        self.client = client
        self.url = f"{base_url.rstrip('/')}/embeddings"
        self.model = model
        self.dim = dim
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.dim_setting = dim_setting

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector of ``dim`` floats per text, in order."""
        if not texts:
            return []
        try:
            r = await self.client.post(
                self.url,
                json={"model": self.model, "input": texts, "encoding_format": "float"},
                headers=self.headers,
                timeout=self.timeout,
            )
        except HTTPError as exc:
            raise EmbeddingError(
                f"embedding backend {self.url} unreachable: {type(exc).__name__}: {exc}"
            ) from exc
        if r.status_code >= 400:
            raise EmbeddingError(
                f"embedding backend {self.url} answered {r.status_code}: {r.text[:300]}"
            )
        try:
            data = sorted(r.json()["data"], key=lambda d: d["index"])
            vectors = [d["embedding"] for d in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"embedding backend {self.url} answered no embeddings") from exc
        if len(vectors) != len(texts):
            raise EmbeddingError(
                f"embedding backend {self.url} returned {len(vectors)} vectors "
                f"for {len(texts)} texts"
            )
        for vector in vectors:
            if len(vector) != self.dim:
                raise EmbeddingError(
                    f"model {self.model!r} returned {len(vector)} dimensions, expected "
                    f"{self.dim}: check {self.dim_setting} and the embedding model"
                )
            try:  # one pass in C: a NaN or an infinity anywhere makes the sum non-finite
                finite = math.isfinite(math.fsum(vector))
            except TypeError:
                finite = False
            if not finite:
                raise EmbeddingError(f"model {self.model!r} returned a non-finite embedding")
        return vectors

    async def embed_one(self, text: str) -> list[float]:
        return (await self.embed([text]))[0]
