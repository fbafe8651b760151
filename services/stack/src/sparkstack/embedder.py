"""The embedded embedding model: what `sparkstack up` serves when no embedding backend is
configured or answers, so ingesting, retrieving and the recall tier work without a model
server.

It is wordllama's l2_supercat model at 256 dimensions, whose weights (16 MB) and tokenizer
ship inside the wordllama wheel: loaded from the installed package with downloads disabled
(wordllama's default lookup misses the bundled tokenizer and would try the network). It
serves the OpenAI protocol (`POST /v1/embeddings`, `GET /v1/models`) behind its own key, like
every service of the stack, so rag-server and the orchestrator use it as they would Ollama.
"""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter
from sparkstack_common import ports
from sparkstack_common.auth import ServiceKeyAuth
from sparkstack_common.body_limit import BodyLimit
from sparkstack_common.service import add_standard_routes, serve_cli
from sparkstack_common.tokens import count_tokens

MODEL = "wordllama-l2-supercat-256"
DIMENSIONS = 256
MAX_INPUTS = 2048  # texts per request
MAX_INPUT_CHARS = 64_000  # per text (the model reads its first 512 tokens)
MAX_REQUEST_BYTES = 32 << 20


class EmbedderError(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def load_model() -> Any:
    import wordllama

    package = Path(wordllama.__file__).parent
    return wordllama.WordLlama.load(
        config="l2_supercat", dim=DIMENSIONS, cache_dir=package, disable_download=True
    )


def parse_request(body: Any) -> tuple[list[str], str]:
    """The texts and the encoding of an OpenAI embeddings request, or why it is refused."""
    if not isinstance(body, dict):
        raise EmbedderError(400, "the body must be a JSON object", "invalid_request")
    if body.get("model") not in (MODEL, None):
        raise EmbedderError(
            404,
            f"model {body.get('model')!r} is not served here: the embedded embedder serves "
            f"{MODEL!r} only",
            "model_not_found",
        )
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise EmbedderError(
            400, "input must be a string or a non-empty list of strings", "invalid_input"
        )
    if len(texts) > MAX_INPUTS:
        raise EmbedderError(
            400, f"{len(texts)} inputs in one request: at most {MAX_INPUTS}", "too_many_inputs"
        )
    if longest := max((len(t) for t in texts if len(t) > MAX_INPUT_CHARS), default=0):
        raise EmbedderError(
            400, f"an input of {longest} characters: at most {MAX_INPUT_CHARS}", "input_too_long"
        )
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise EmbedderError(400, "encoding_format must be float or base64", "invalid_request")
    if body.get("dimensions") not in (None, DIMENSIONS):
        raise EmbedderError(
            400, f"this model has {DIMENSIONS} dimensions, not {body['dimensions']}", "dimensions"
        )
    return texts, encoding


def encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":  # OpenAI's: little-endian float32 bytes
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.astype(float).tolist()


def create_app(api_key: str | None = None, model: Any = None) -> FastAPI:
    key = api_key or os.environ.get("SPARKSTACK_EMBEDDER_API_KEY")
    if not key:
        raise SystemExit("SPARKSTACK_EMBEDDER_API_KEY is not set: the embedder needs its key")
    embedder = model if model is not None else load_model()
    registry = CollectorRegistry()
    texts_total = Counter("embedder_texts", "Texts embedded", registry=registry)
    app = FastAPI(title="sparkstack embedder", version="0.1.0")
    app.add_middleware(BodyLimit, max_bytes=MAX_REQUEST_BYTES, setting="the embedder's limit")
    app.add_middleware(ServiceKeyAuth, key=key)

    @app.exception_handler(EmbedderError)
    async def refused(_: Request, exc: EmbedderError) -> JSONResponse:
        error = {"message": exc.message, "type": "invalid_request_error", "code": exc.code}
        return JSONResponse({"error": error}, status_code=exc.status)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL, "object": "model", "owned_by": "sparkstack (embedded)"}],
        }

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise EmbedderError(400, "the body is not JSON", "invalid_request") from None
        texts, encoding = parse_request(body)
        vectors = await asyncio.to_thread(embedder.embed, texts)
        texts_total.inc(len(texts))
        tokens = sum(count_tokens(t) for t in texts)
        return {
            "object": "list",
            "model": MODEL,
            "data": [
                {"object": "embedding", "index": i, "embedding": encode(v, encoding)}
                for i, v in enumerate(vectors)
            ],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    add_standard_routes(app, "embedder", registry)
    return app


def main() -> None:
    serve_cli(
        "sparkstack-embedder",
        "sparkstack.embedder:create_app",
        ports.EMBEDDER,
        access_log=False,  # its callers are our services; the orchestrator logs the door
        required={"SPARKSTACK_EMBEDDER_API_KEY": os.environ.get("SPARKSTACK_EMBEDDER_API_KEY")},
    )
