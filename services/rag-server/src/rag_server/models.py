"""Request and response bodies, in the LightRAG server's shapes for what clients use."""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict, is_dataclass
from typing import Any, Literal

import numpy as np
import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from pydantic import BaseModel, Field, field_validator, model_validator

QueryMode = Literal["local", "global", "hybrid", "naive", "mix", "bypass"]


class InsertTextRequest(BaseModel):
    text: str
    file_source: str | None = None

    @field_validator("text")
    @classmethod
    def not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be empty")
        return value


class InsertTextsRequest(BaseModel):
    texts: list[str] = Field(min_length=1)
    file_sources: list[str] | None = None
    # sparkstack extension: stable document ids (the preprocessor derives them from workspace,
    # path and content), so re-sending a document never duplicates it
    ids: list[str] | None = None

    @field_validator("texts")
    @classmethod
    def none_empty(cls, value: list[str]) -> list[str]:
        empty = [i for i, t in enumerate(value) if not t.strip()]
        if empty:
            raise ValueError(f"texts must not be empty (index {empty[0]})")
        return value


class InsertResponse(BaseModel):
    status: Literal["success", "duplicated", "partial_success", "failure"]
    message: str
    track_id: str
    ids: list[str] = []


class DocumentsRequest(BaseModel):
    status_filter: str | None = None
    page: int = Field(1, ge=1)
    page_size: int = Field(50, ge=1, le=200)
    sort_field: Literal["created_at", "updated_at", "id", "file_path"] = "updated_at"
    sort_direction: Literal["asc", "desc"] = "desc"


class DeleteDocRequest(BaseModel):
    doc_ids: list[str] = Field(min_length=1)
    delete_file: bool = False
    delete_llm_cache: bool = False


class DocumentStatusRequest(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=1000)


class QueryEmbedding(BaseModel):
    """sparkstack extension: the query's vector, already computed by the caller (the
    orchestrator embeds each question once for its recall tier). Used only when ``model`` is
    rag-server's own embedding model and the size fits; otherwise rag-server embeds itself."""

    model: str = Field(min_length=1, max_length=200)
    vector: list[float] | None = Field(None, min_length=1, max_length=8192)
    # the same as little-endian float32 in base64, OpenAI's ``encoding_format: "base64"``:
    # what the orchestrator sends (a thousand numbers as text cost both sides more CPU than
    # the search)
    vector_base64: str | None = Field(None, min_length=8, max_length=8192 * 4 * 4 // 3 + 4)

    @field_validator("vector_base64")
    @classmethod
    def float32s(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                raw = base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError("not base64") from exc
            if len(raw) % 4:
                raise ValueError("not a whole number of float32 values")
        return value

    @model_validator(mode="after")
    def one_vector(self) -> QueryEmbedding:
        if (self.vector is None) == (self.vector_base64 is None):
            raise ValueError("give the vector as vector or as vector_base64, one of them")
        return self

    def array(self) -> np.ndarray:
        """The vector as float32, as vectors are stored (a number beyond float32's range is
        infinite there)."""
        if self.vector_base64 is not None:
            return np.frombuffer(base64.b64decode(self.vector_base64), dtype="<f4")
        with np.errstate(over="ignore"):
            return np.asarray(self.vector, dtype=np.float32)


class QueryRequest(BaseModel):
    query: str = Field(min_length=3)
    mode: QueryMode = "mix"
    only_need_context: bool | None = None
    only_need_prompt: bool | None = None
    response_type: str | None = None
    top_k: int | None = Field(None, ge=1)
    chunk_top_k: int | None = Field(None, ge=1)
    max_entity_tokens: int | None = Field(None, ge=1)
    max_relation_tokens: int | None = Field(None, ge=1)
    max_total_tokens: int | None = Field(None, ge=1)
    hl_keywords: list[str] | None = None
    ll_keywords: list[str] | None = None
    conversation_history: list[dict[str, Any]] | None = None
    user_prompt: str | None = None
    enable_rerank: bool | None = None
    include_references: bool | None = None
    stream: bool | None = None
    query_embedding: QueryEmbedding | None = None

    @field_validator("query")
    @classmethod
    def strip(cls, value: str) -> str:
        if len(value.strip()) < 3:
            raise ValueError("query must have at least 3 characters")
        return value.strip()

    def param_fields(self) -> dict[str, Any]:
        fields = self.model_dump(exclude={"query", "stream", "query_embedding"})
        return {k: v for k, v in fields.items() if v is not None}


class WorkspaceRequest(BaseModel):
    name: str


def jsonable(value: Any) -> Any:
    """LightRAG returns dataclasses and enums; make them JSON."""
    if is_dataclass(value) and not isinstance(value, type):
        return jsonable(asdict(value))
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "value") and type(value).__module__.startswith("lightrag"):
        return value.value
    return value


def json_response(value: Any) -> Response:
    """``value`` as a JSON answer in one pass of orjson: search results are read on every
    chat turn, and FastAPI's generic encoder would walk them twice (what orjson cannot encode
    goes through that encoder)."""
    body = orjson.dumps(
        value,
        option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS,
        default=jsonable_encoder,
    )
    return Response(body, media_type="application/json")


# LightRAG 1.5 treats two documents whose file paths share a basename as duplicates and drops
# the second: "a/util.py" would shadow "b/util.py". Paths are therefore stored with a look-alike
# of "/" (U+2215) that is no path separator, and given back as written.
_STORED_SLASH = "\u2215"


def to_stored_source(path: str) -> str:
    return path.replace("\\", "/").replace("/", _STORED_SLASH)


def from_stored_sources(value: Any) -> Any:
    """Restore every ``file_path`` in a LightRAG result."""
    if isinstance(value, dict):
        return {
            k: (
                v.replace(_STORED_SLASH, "/")
                if k == "file_path" and isinstance(v, str)
                else from_stored_sources(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [from_stored_sources(v) for v in value]
    return value
