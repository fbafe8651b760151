"""The LLM, embedding and rerank callables LightRAG gets, all over the OpenAI protocol.

Ollama, vLLM and KServe all serve ``/v1/chat/completions``, ``/v1/embeddings`` and (vLLM)
``/v1/rerank``, so any of them can be swapped in by URL. One ``HTTP`` client serves
every workspace's instance.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from sparkstack_common.embeddings import Embedder
from sparkstack_common.http import HTTP, HTTPError, Response


class BackendError(RuntimeError):
    """A backend answered with an error or could not be reached."""


class _Shared:
    """LightRAG deep-copies its configuration (``dataclasses.asdict``, which would also walk
    into a dataclass): a backend holds a live HTTP client and is safe to share, so it is a
    plain class whose copy is itself."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self


def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _error(name: str, url: str, exc: Exception | Response) -> BackendError:
    if isinstance(exc, Response):
        return BackendError(f"{name} at {url} answered {exc.status_code}: {exc.text[:300]}")
    return BackendError(f"{name} at {url} unreachable: {type(exc).__name__}: {exc}")


class ChatBackend(_Shared):
    def __init__(
        self,
        client: HTTP,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 600.0,
        think: bool = False,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.think = think

    async def __call__(
        self,
        prompt: str,
        system_prompt: str | None = None,
        history_messages: list[dict[str, Any]] | None = None,
        stream: bool = False,
        **kwargs: Any,
    ) -> str | AsyncIterator[str]:
        """LightRAG's ``llm_model_func`` contract: the completion text, or an async iterator
        of text pieces when ``stream`` is true."""
        messages: list[dict[str, Any]] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        messages.extend(history_messages or [])
        messages.append({"role": "user", "content": prompt})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream}
        if not self.think:
            # Ollama's OpenAI layer takes reasoning_effort "none"; "think" for its native API
            body["reasoning_effort"] = "none"
            body["think"] = False
        if kwargs.get("keyword_extraction"):
            body["response_format"] = {"type": "json_object"}
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        if stream:
            return self._stream(url, body)
        r = await _post(self.client, url, body, self.api_key, self.timeout, "LLM", self.base_url)
        return r.json()["choices"][0]["message"].get("content") or ""

    async def _stream(self, url: str, body: dict[str, Any]) -> AsyncIterator[str]:
        try:
            async with self.client.stream(
                "POST", url, json=body, headers=_headers(self.api_key), timeout=self.timeout
            ) as r:
                if r.status_code >= 400:
                    raw = await r.read()
                    raise _error("LLM", self.base_url, Response(r.status_code, r.headers, raw, url))
                async for line in _lines(r.iter_chunks()):
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    for choice in json.loads(data).get("choices", []):
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            yield piece
        except HTTPError as exc:
            raise _error("LLM", self.base_url, exc) from exc

    async def reachable(self) -> tuple[bool, str]:
        return await _probe(self.client, self.base_url, self.api_key)


class EmbeddingBackend(_Shared):
    """LightRAG's embedding function: the shared OpenAI embeddings client, as an array."""

    def __init__(
        self,
        client: HTTP,
        base_url: str,
        model: str,
        dim: int,
        api_key: str | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.api_key = api_key
        self.embedder = Embedder(
            client, base_url, model, dim, api_key, timeout, dim_setting="RAG_SERVER_EMBED_DIM"
        )

        # query vectors callers sent along (text -> vector, queries in flight using it)
        self._given: dict[str, tuple[np.ndarray, int]] = {}
        # LightRAG reads the embedding function's signature on every call (does it take
        # max_token_size?); inspect finds this one at once instead of rebuilding it
        self.__signature__ = inspect.signature(self.__call__)

    def accepts(self, model: str, vector: np.ndarray) -> bool:
        """Whether a caller's vector is one of ours: our model, our size, finite."""
        return (
            model == self.embedder.model
            and vector.shape == (self.embedder.dim,)
            and bool(np.isfinite(vector).all())
        )

    @contextmanager
    def given(self, text: str, model: str, vector: np.ndarray) -> Iterator[bool]:
        """While the block runs, ``text`` embeds to ``vector`` without a backend call, if the
        caller's model is ours and the vector fits; yields whether it was taken. Keyed by
        text, not by request: LightRAG calls the embedding function from its own worker
        tasks, where a request's context is not visible."""
        if not self.accepts(model, vector):
            yield False
            return
        held = self._given.get(text)
        self._given[text] = (held[0] if held else vector, (held[1] if held else 0) + 1)
        try:
            yield True
        finally:
            vec, users = self._given[text]
            if users > 1:
                self._given[text] = (vec, users - 1)
            else:
                del self._given[text]

    async def __call__(self, texts: list[str], **_: Any) -> np.ndarray:
        given = {t: self._given[t][0] for t in texts if t in self._given}
        missing = [t for t in dict.fromkeys(texts) if t not in given]
        fetched = dict(zip(missing, await self.embedder.embed(missing), strict=True))
        return np.array([given[t] if t in given else fetched[t] for t in texts], np.float32)

    async def reachable(self) -> tuple[bool, str]:
        return await _probe(self.client, self.base_url, self.api_key)


class RerankBackend(_Shared):
    def __init__(
        self,
        client: HTTP,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.client = client
        self.base_url = base_url
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    async def __call__(
        self, query: str, documents: list[str], top_n: int | None = None, **_: Any
    ) -> list[dict[str, Any]]:
        """LightRAG's ``rerank_model_func`` contract: ``[{"index", "relevance_score"}]``."""
        body: dict[str, Any] = {"model": self.model, "query": query, "documents": documents}
        if top_n:
            body["top_n"] = top_n
        url = f"{self.base_url.rstrip('/')}/v1/rerank"
        r = await _post(
            self.client, url, body, self.api_key, self.timeout, "reranker", self.base_url
        )
        return [
            {"index": x["index"], "relevance_score": x["relevance_score"]}
            for x in r.json()["results"]
        ]

    async def reachable(self) -> tuple[bool, str]:
        return await _probe(self.client, f"{self.base_url.rstrip('/')}/v1", self.api_key)


async def _post(
    client: HTTP,
    url: str,
    body: dict[str, Any],
    api_key: str | None,
    seconds: float,
    name: str,
    base_url: str,
) -> Response:
    """POST JSON; a transport failure or an error status becomes a BackendError naming it."""
    try:
        r = await client.post(url, json=body, headers=_headers(api_key), timeout=seconds)
    except HTTPError as exc:
        raise _error(name, base_url, exc) from exc
    if r.status_code >= 400:
        raise _error(name, base_url, r)
    return r


async def _probe(client: HTTP, base_url: str, api_key: str | None) -> tuple[bool, str]:
    url = f"{base_url.rstrip('/')}/models"
    try:
        r = await client.get(url, headers=_headers(api_key), timeout=3.0)
    except HTTPError as exc:
        return False, f"{base_url} unreachable: {type(exc).__name__}"
    return r.status_code < 400, f"{base_url} answered {r.status_code}"


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Whole lines of a streamed body (a read may end in the middle of one)."""
    carry = b""
    async for chunk in chunks:
        carry += chunk
        *lines, carry = carry.split(b"\n")
        for line in lines:
            yield line.decode("utf-8", "replace").rstrip("\r")
    if carry:
        yield carry.decode("utf-8", "replace").rstrip("\r")
