"""A deterministic fake model server speaking the OpenAI HTTP protocol, as the services do.

Test-only: part of ``sparkstack-testing``, a dev dependency of the workspace that nothing in
the product may depend on or default to. Build one with :func:`create_fake_llm`, serve
``fake.app`` with :func:`sparkstack_testing.serve.serve_asgi` (or use :func:`serve_fake_llm`)
and point OpenAI clients at ``f"{url}/v1"``::

    fake = create_fake_llm()
    with serve_asgi(fake.app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        ...
    assert fake.chat_requests[-1]["body"]["messages"][-1]["content"] == "hi"

Endpoints (what the services call on a model backend)
    ``POST /v1/chat/completions`` (plain and SSE streaming, tools, usage),
    ``GET /v1/models``, ``POST /v1/embeddings`` (float; base64 when asked, as the ``openai``
    client does by default), ``POST /v1/rerank`` (``query``, ``documents``, ``top_n``),
    ``GET /health``.

Chat behaviour (first rule that applies):
    1. a reply queued with :meth:`FakeLLM.queue_reply`;
    2. ``fake.responder(messages, body)`` when set and it returns something;
    3. ``tools`` present and the last message is from the user: tool calls;
    4. last message is a tool result: a text answer quoting the tool results;
    5. LightRAG prompts (1.5.x): entity extraction (text or JSON mode), gleaning,
       description summary, keyword extraction, RAG answer with context;
    6. otherwise ``"echo: <first 200 chars of the last user message> [<8 hex sha256>]"``.

Token counts are whitespace-separated words: ``prompt_tokens`` counts the words of every message
content (and tool-call arguments) the backend received, ``completion_tokens`` the words of the
answer (plus tool-call arguments).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import re
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.requests import ClientDisconnect

from sparkstack_testing.serve import serve_asgi

__all__ = [
    "FakeLLM",
    "Reply",
    "ToolCall",
    "cosine",
    "create_fake_llm",
    "fake_embedding",
    "prompt_text",
    "serve_fake_llm",
]

CREATED = 1_700_000_000
KINDS = ("chat", "embed", "rerank")

# LightRAG (1.5.x) prompt fingerprints; see lightrag/prompt.py.
LR_TUPLE = "<|#|>"
LR_COMPLETE = "<|COMPLETE|>"
_LR_EXTRACT_SYSTEM = "Knowledge Graph Specialist responsible for extracting entities"
_LR_EXTRACT_USER = "Extract entities and relationships from the `---Input Text---`"
_LR_GLEAN_USER = "Based on the last extraction task"
_LR_SUMMARY = "synthesize a list of descriptions"
_LR_KEYWORDS = "high_level_keywords"

_STOPWORDS = frozenset(
    """a an the and or but if then else of to in on at by for with from as is are was were be
    been being this that these those it its it's into over under about after before between
    through during without within not no nor so than too very can could should would will
    shall may might must do does did done has have had having i you he she we they them their
    our your his her my me us what which who whom whose when where why how all any both each
    few more most other some such only own same just also there here out up down off again
    further once each every per via use used using one two three get set let make""".split()
)
# Capitalised words that start sentences but never name anything worth a graph node.
_NOT_NAMES = _STOPWORDS | frozenset(
    """however therefore thus hence also note notes see example examples returns return args
    arguments raises yields parameters param params todo fixme true false none null self cls
    def class import from async await lambda pass print len str int float bool dict list tuple
    range super type object isinstance while for if elif else try except finally with yield
    global nonlocal assert del break continue raise const var function public private static
    void delete typeof instanceof package func struct interface impl fn mut pub use mod
    string number boolean undefined nil main init test tests todo first second last next
    section chapter table figure page step steps input output""".split()
)
_QUERY_ARG_NAMES = frozenset(
    {"query", "q", "question", "prompt", "text", "input", "search", "search_query", "message"}
)


# --------------------------------------------------------------------------------------------
# Pure helpers (usable without a server)
# --------------------------------------------------------------------------------------------


def content_text(content: Any) -> str:
    """Flatten an OpenAI message ``content`` (str, list of parts, None) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return str(content)


def prompt_text(messages: Iterable[dict[str, Any]]) -> str:
    """Everything the model 'sees' in ``messages``: contents and tool-call arguments, joined."""
    out = []
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        text = content_text(msg.get("content"))
        if text:
            out.append(text)
        for call in msg.get("tool_calls") or []:
            fn = (call or {}).get("function") or {}
            args = fn.get("arguments")
            if args is not None:
                out.append(args if isinstance(args, str) else json.dumps(args))
    return "\n".join(out)


def count_words(text: str) -> int:
    return len(text.split())


def _h64(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


_WORD_RE = re.compile(r"\w+", re.UNICODE)
_CAMEL_SPLIT_RE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def _stem(word: str) -> str:
    """Crude suffix stripping so "stores"/"store" and "queries"/"query" meet."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2] if not word.endswith("eed") else word
    if len(word) > 3 and word.endswith("es") and word[-3] in "sxz":
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _word_features(text: str) -> list[tuple[str, float]]:
    """(word feature, weight) pairs; the feature is the stemmed, lower-cased word."""
    feats: list[tuple[str, float]] = []
    for raw in _WORD_RE.findall(text):
        word = raw.lower()
        weight = 0.15 if word in _STOPWORDS else 1.0
        feats.append((word, weight))
        # Sub-words of identifiers (snake_case, CamelCase) so code names meet prose words.
        subs = [s.lower() for piece in raw.split("_") for s in _CAMEL_SPLIT_RE.findall(piece)]
        if len(subs) > 1:
            feats.extend((s, 0.5 * weight) for s in subs if s and s != word)
    return feats


@lru_cache(maxsize=65536)
def _feature_slots(feature: str, dim: int) -> tuple[tuple[int, float], ...]:
    slots = []
    for salt in ("a", "b"):
        h = _h64(salt + feature)
        slots.append((h % dim, 1.0 if (h >> 63) & 1 else -1.0))
    return tuple(slots)


@lru_cache(maxsize=8192)
def _embedding_cached(text: str, dim: int) -> tuple[float, ...]:
    vec = [0.0] * dim
    for word, weight in _word_features(text):
        for idx, sign in _feature_slots("w:" + _stem(word), dim):
            vec[idx] += sign * weight
        padded = f"#{word}#"
        trigrams = [padded[i : i + 3] for i in range(len(padded) - 2)]
        tri_w = 0.6 * weight / math.sqrt(max(1, len(trigrams)))
        for tri in trigrams:
            idx, sign = _feature_slots("t:" + tri, dim)[0]
            vec[idx] += sign * tri_w
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        # Empty/blank text: a fixed unit vector, so the result is still a valid embedding.
        idx, sign = _feature_slots("<empty>", dim)[0]
        vec[idx] = sign
        return tuple(vec)
    return tuple(v / norm for v in vec)


def fake_embedding(text: str, dim: int = 1024) -> list[float]:
    """Deterministic L2-normalised hashed bag-of-words + character-trigram embedding.

    Identical texts give identical vectors, texts sharing words score a high cosine, unrelated
    texts score near zero. Identifier sub-words (``parse_config`` -> ``parse``, ``config``) and
    trigrams add some fuzziness; English stop words are down-weighted.
    """
    if dim <= 0:
        raise ValueError("dim must be positive")
    return list(_embedding_cached(text, dim))


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def rerank_score(query: str, document: str, dim: int = 1024) -> float:
    """Cosine of the fake embeddings, clipped to [0, 1] and rounded (stable across runs)."""
    return round(max(0.0, cosine(fake_embedding(query, dim), fake_embedding(document, dim))), 6)


# --------------------------------------------------------------------------------------------
# Tool-call arguments from a JSON schema
# --------------------------------------------------------------------------------------------


def schema_value(name: str, schema: Any, user_text: str = "", depth: int = 0) -> Any:
    """A deterministic value satisfying (the common parts of) a JSON schema."""
    if not isinstance(schema, dict) or depth > 6:
        return f"{name}-value"
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if isinstance(o, dict)]
        options = [o for o in options if o.get("type") != "null"] or options
        if options:
            return schema_value(name, options[0], user_text, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ is None:
        typ = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if typ == "string":
        if name.lower() in _QUERY_ARG_NAMES and user_text.strip():
            return " ".join(user_text.split())[:120]
        value = f"{name}-1"
        min_len = schema.get("minLength")
        if isinstance(min_len, int) and len(value) < min_len:
            value = value.ljust(min_len, "x")
        return value
    if typ == "integer":
        minimum = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 1
        if isinstance(minimum, int | float):
            value = max(value, math.ceil(minimum) + (1 if "exclusiveMinimum" in schema else 0))
        return value
    if typ == "number":
        minimum = schema.get("minimum")
        return float(max(1.5, minimum)) if isinstance(minimum, int | float) else 1.5
    if typ == "boolean":
        return True
    if typ == "null":
        return None
    if typ == "array":
        count = max(1, int(schema.get("minItems") or 1))
        return [schema_value(name, schema.get("items") or {}, user_text, depth + 1)] * count
    if typ == "object":
        props = schema.get("properties") or {}
        required = [r for r in schema.get("required") or [] if isinstance(r, str)]
        return {
            key: schema_value(key, props.get(key, {}), user_text, depth + 1) for key in required
        }
    return f"{name}-value"


def tool_arguments(tool: dict[str, Any], user_text: str = "") -> dict[str, Any]:
    params = (tool.get("function") or tool).get("parameters") or {}
    value = schema_value("arguments", {"type": "object", **params}, user_text)
    return value if isinstance(value, dict) else {}


def _tool_name(tool: dict[str, Any]) -> str:
    return str((tool.get("function") or tool).get("name") or "tool")


# --------------------------------------------------------------------------------------------
# LightRAG prompt handling
# --------------------------------------------------------------------------------------------


@dataclass
class _Candidate:
    name: str
    pos: int
    category: str  # function | class | identifier | acronym | proper | sentence_start
    rank: int


_IDENT_RE = re.compile(r"(?<![\w.])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ENTITY_TYPE_PREFS = {
    "function": ("function", "method", "artifact", "concept"),
    "class": ("class", "artifact", "concept"),
    "identifier": ("artifact", "function", "concept"),
    "acronym": ("organization", "artifact", "concept"),
    "proper": ("concept",),
    "sentence_start": ("concept",),
}
_CATEGORY_RANK = {
    "function": 0,
    "class": 0,
    "identifier": 1,
    "acronym": 1,
    "proper": 1,
    "sentence_start": 2,
}


def _is_camel(tok: str) -> bool:
    """CamelCase / camelCase / Unit0Alpha / LightRAG-style identifiers."""
    has_lower = re.search(r"[a-z]", tok) is not None
    return has_lower and (
        re.search(r"[a-z0-9][A-Z]", tok) is not None or re.match(r"[A-Z]{2,}[a-z]", tok) is not None
    )


def _at_sentence_start(text: str, pos: int) -> bool:
    i = pos - 1
    while i >= 0 and text[i] in " \t\"'([*#->`":
        i -= 1
    return i < 0 or text[i] in ".!?:\n"


def entity_candidates(text: str, limit: int = 8) -> list[str]:
    """Distinctive names in ``text``: code identifiers, CamelCase, acronyms, proper nouns."""
    found: list[_Candidate] = []
    matches = list(_IDENT_RE.finditer(text))
    skip_until = -1
    for i, m in enumerate(matches):
        if m.start() < skip_until:
            continue
        tok = m.group(0)
        parts = tok.split(".")
        if any(len(p) < 2 for p in parts) or tok.strip("_") == "":
            continue
        follows_paren = text[m.end() : m.end() + 1] == "("
        core = tok.strip("_")
        if "." in tok:
            category = "identifier"
        elif follows_paren and len(core) >= 3:
            category = "function"
        elif "_" in core and any(c.isalpha() for c in core):
            category = "identifier"
        elif _is_camel(core):
            category = "class"
        elif re.fullmatch(r"[A-Z][A-Z0-9]+", core) and sum(c.isalpha() for c in core) >= 2:
            category = "acronym"
        elif re.fullmatch(r"[A-Z][a-z0-9]{2,}", core):
            if core.lower() in _NOT_NAMES:
                continue  # "The", "However": never a name, nor the start of one
            category = "sentence_start" if _at_sentence_start(text, m.start()) else "proper"
            # Merge following capitalised words ("Alice Smith", "New York City").
            name_end = m.end()
            words = [tok]
            for nxt in matches[i + 1 : i + 3]:
                gap = text[name_end : nxt.start()]
                if gap == " " and re.fullmatch(r"[A-Z][a-z0-9]+", nxt.group(0)):
                    if nxt.group(0).lower() in _NOT_NAMES:
                        break
                    words.append(nxt.group(0))
                    name_end = nxt.end()
                else:
                    break
            if len(words) > 1:
                tok, category, skip_until = " ".join(words), "proper", name_end
        else:
            continue
        if tok.lower() in _NOT_NAMES or core.lower() in _NOT_NAMES:
            continue
        found.append(_Candidate(tok, m.start(), category, _CATEGORY_RANK[category]))
    seen: dict[str, _Candidate] = {}
    for cand in found:
        key = cand.name.lower()
        if key not in seen:
            seen[key] = cand
        elif cand.rank < seen[key].rank:
            seen[key] = _Candidate(cand.name, seen[key].pos, cand.category, cand.rank)
    chosen = sorted(seen.values(), key=lambda c: (c.rank, c.pos))[: max(0, limit)]
    return [c.name for c in sorted(chosen, key=lambda c: c.pos)]


def _entity_category(text: str, name: str) -> str:
    if re.search(re.escape(name) + r"\(", text):
        return "function"
    if " " in name:
        return "proper"
    if "." in name or "_" in name.strip("_"):
        return "identifier"
    if _is_camel(name):
        return "class"
    if re.fullmatch(r"[A-Z][A-Z0-9]+", name):
        return "acronym"
    return "proper"


def parse_entity_types(prompt: str) -> list[str]:
    """Entity types offered in a LightRAG extraction prompt's ``---Entity Types---`` section."""
    m = re.search(r"---Entity Types---\s*\n(.*?)(?:\n---[^\n]*---|\Z)", prompt, re.S)
    if not m:
        return []
    section = m.group(1)
    types = re.findall(r"^\s*[-*]\s*`?([A-Za-z][A-Za-z0-9_ ]{0,40}?)`?\s*:", section, re.M)
    if not types:
        bracket = re.search(r"\[([^\]]+)\]", section)
        if bracket:
            types = [t.strip(" '\"`") for t in bracket.group(1).split(",")]
    if "other" not in {t.lower() for t in types} and re.search(r"`Other`", section):
        types.append("Other")
    return [t.strip() for t in types if t.strip()]


def _pick_type(category: str, allowed: list[str]) -> str:
    by_lower = {t.lower().replace(" ", ""): t for t in allowed}
    for pref in _ENTITY_TYPE_PREFS.get(category, ()):
        if pref in by_lower:
            return by_lower[pref]
    if not allowed:
        return "Concept"
    return by_lower.get("other", allowed[0])


def _clean_field(text: str, limit: int = 220) -> str:
    text = text.replace("<|", "").replace("|>", "").replace(LR_COMPLETE, "")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def _sentence_with(text: str, name: str) -> str:
    for line in text.splitlines():
        if name in line:
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                if name in sentence:
                    return sentence.strip()
            return line.strip()
    return ""


@dataclass
class ExtractionResult:
    entities: list[dict[str, str]] = field(default_factory=list)
    relations: list[dict[str, str]] = field(default_factory=list)


def extract_graph(
    text: str,
    entity_types: list[str],
    max_entities: int = 8,
    max_total: int | None = None,
) -> ExtractionResult:
    """Entities and relations a (very literal) model would extract from ``text``."""
    names = entity_candidates(text, limit=max_entities)
    if max_total is not None:
        names = names[:max_total]
    result = ExtractionResult()
    sentences: dict[str, str] = {}
    for name in names:
        sentence = _sentence_with(text, name)
        sentences[name] = sentence
        etype = _pick_type(_entity_category(text, name), entity_types)
        desc = f"{name} is mentioned in the input text: {_clean_field(sentence, 200)}"
        result.entities.append({"name": name, "type": etype, "description": _clean_field(desc)})
    budget = len(names) if max_total is None else max(0, max_total - len(names))
    for a, b in itertools.pairwise(names):
        if len(result.relations) >= budget:
            break
        if sentences[a] and sentences[a] == sentences[b]:
            keywords = "co-occurrence, same context"
            desc = f"{a} and {b} appear together: {_clean_field(sentences[a], 180)}"
        else:
            keywords = "co-occurrence, nearby"
            desc = f"{a} is mentioned near {b} in the input text."
        result.relations.append(
            {"source": a, "target": b, "keywords": keywords, "description": _clean_field(desc)}
        )
    return result


def render_extraction_text(result: ExtractionResult) -> str:
    rows = [
        LR_TUPLE.join(["entity", e["name"], e["type"], e["description"]]) for e in result.entities
    ]
    rows += [
        LR_TUPLE.join(["relation", r["source"], r["target"], r["keywords"], r["description"]])
        for r in result.relations
    ]
    rows.append(LR_COMPLETE)
    return "\n".join(rows)


def render_extraction_json(result: ExtractionResult) -> str:
    return json.dumps(
        {"entities": result.entities, "relationships": result.relations}, ensure_ascii=False
    )


def _input_text(user: str) -> str | None:
    m = re.search(r"---Input Text---\s*\n```[^\n]*\n(.*)\n```\s*\n+---Output---", user, re.S)
    if m:
        return m.group(1)
    m = re.search(r"---Input Text---\s*\n(.*?)(?:\n---Output---|\Z)", user, re.S)
    return m.group(1).strip("`\n ") if m else None


def keywords_for_query(query: str) -> dict[str, list[str]]:
    words = [w for w in re.findall(r"[\w][\w\-.]*[\w]|\w", query) if w.lower() not in _STOPWORDS]
    content = [w for w in words if len(w) >= 3 or w.isupper()]
    low: list[str] = []
    for w in [*entity_candidates(query, limit=10), *content]:
        if w.lower() not in {x.lower() for x in low}:
            low.append(w)
    high = [" ".join(w.lower() for w in content[:6])] if content else []
    return {"high_level_keywords": high, "low_level_keywords": low[:10]}


def _json_strings(text: str, key: str) -> list[str]:
    out = []
    for m in re.finditer(rf'"{key}":\s*"((?:[^"\\]|\\.)*)"', text):
        try:
            out.append(json.loads(f'"{m.group(1)}"'))
        except json.JSONDecodeError:
            out.append(m.group(1))
    return out


def rag_answer(query: str, context: str) -> str:
    chunks = _json_strings(context, "content")
    entities = _json_strings(context, "entity")
    source = chunks[0] if chunks else context
    excerpt = " ".join(source.split()[:30])
    lines = [f"Answer to: {' '.join(query.split())[:200]}", "", f"From the context: {excerpt}"]
    if entities:
        lines += ["", "Entities: " + ", ".join(entities[:5])]
    refs = re.findall(r"^\[(\d+)\]\s*(.+)$", context, re.M)
    if refs:
        lines += ["", "### References", ""]
        lines += [f"- [{num}] {title.strip()}" for num, title in refs[:5]]
    return "\n".join(lines)


def summarize_descriptions(prompt: str) -> str:
    name_m = re.search(r"^(\w[\w ]*?) Name: (.+)$", prompt, re.M)
    name = name_m.group(2).strip() if name_m else "Item"
    limit_m = re.search(r"must not exceed (\d+) tokens", prompt)
    limit = int(limit_m.group(1)) if limit_m else 200
    block = re.search(r"Description List:\s*\n```[^\n]*\n(.*?)\n```", prompt, re.S)
    descs: list[str] = []
    for line in (block.group(1) if block else "").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
            desc = value.get("Description", "") if isinstance(value, dict) else str(value)
        except json.JSONDecodeError:
            desc = line
        desc = " ".join(str(desc).split())
        if desc and desc not in descs:
            descs.append(desc)
    words = f"{name}: {' '.join(descs)}".split()
    return " ".join(words[: max(8, limit)])


# --------------------------------------------------------------------------------------------
# The fake
# --------------------------------------------------------------------------------------------


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text


@dataclass
class Reply:
    kind: str
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: until cleared
    message: str
    retry_after: float | None = None


@dataclass
class _StreamBreak:
    after_chunks: int
    remaining: int
    mode: str  # "abort" | "truncate"


class _StreamAbort(Exception):
    pass


def _exc_matches(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    if isinstance(exc, types):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_exc_matches(e, types) for e in exc.exceptions)
    return False


class _TrackedStream(StreamingResponse):
    """StreamingResponse that always runs ``on_finish`` and swallows client disconnects."""

    def __init__(self, content: AsyncIterator[bytes], *, media_type: str, on_finish: Callable):
        super().__init__(content, media_type=media_type, headers={"Cache-Control": "no-cache"})
        self._on_finish = on_finish

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Exception as exc:
            # An abort leaves the response incomplete: uvicorn then drops the connection.
            if not _exc_matches(exc, (_StreamAbort, OSError, ClientDisconnect)):
                raise
        finally:
            self._on_finish()


def _sse(obj: Any) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _split_pieces(text: str, words_per_piece: int) -> list[str]:
    if not text:
        return []
    pieces = [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]
    n = max(1, words_per_piece)
    return ["".join(pieces[i : i + n]) for i in range(0, len(pieces), n)]


def _split_fragments(text: str, parts: int) -> list[str]:
    if len(text) <= 1 or parts <= 1:
        return [text]
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


class FakeLLM:
    """State, recording and fault injection around the fake backend's FastAPI ``app``.

    Thread-safe: the app runs on the server thread's event loop, tests poke the object from
    their own thread.
    """

    def __init__(
        self,
        *,
        chat_models: Iterable[str] = ("fake-chat",),
        embedding_models: Iterable[str] = ("fake-embed",),
        rerank_models: Iterable[str] = ("fake-rerank",),
        embedding_dim: int = 1024,
        # a model's own size, as real models have one (others: embedding_dim)
        embedding_dims: dict[str, int] | None = None,
        strict_models: bool = False,
        echo_chars: int = 200,
        max_tool_calls: int = 1,
        parallel_tool_calls: int = 2,
        parallel_trigger: str = "call tools in parallel",
        tool_calls_enabled: bool = True,
        stream_words_per_chunk: int = 1,
        tool_arg_fragments: int = 3,
        interleave_tool_calls: bool = True,
        extraction_max_entities: int = 8,
        responder: Callable[[list[dict[str, Any]], dict[str, Any]], Any] | None = None,
        disconnect_poll_interval: float = 0.01,
    ) -> None:
        self.chat_models = list(chat_models)
        self.embedding_models = list(embedding_models)
        self.rerank_models = list(rerank_models)
        self.embedding_dim = embedding_dim
        self.embedding_dims = dict(embedding_dims or {})
        self.strict_models = strict_models
        self.echo_chars = echo_chars
        self.max_tool_calls = max_tool_calls
        self.parallel_tool_calls = parallel_tool_calls
        self.parallel_trigger = parallel_trigger
        self.tool_calls_enabled = tool_calls_enabled
        self.stream_words_per_chunk = stream_words_per_chunk
        self.tool_arg_fragments = tool_arg_fragments
        self.interleave_tool_calls = interleave_tool_calls
        self.extraction_max_entities = extraction_max_entities
        self.responder = responder
        self.disconnect_poll_interval = disconnect_poll_interval
        self.stream_chunk_delay = 0.0
        self.url: str | None = None  # set by serve_fake_llm

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._delays: dict[str, float] = dict.fromkeys(KINDS, 0.0)
        self._faults: dict[str, deque[_Fault]] = {k: deque() for k in KINDS}
        self._stream_breaks: deque[_StreamBreak] = deque()
        self._queued: deque[Reply] = deque()
        self._tool_seq = 0
        self._resp_seq = 0
        self.reset()
        self.app = self._build_app()

    # ---- recording --------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget recorded requests, counters, disconnects and the concurrency peak. Chats
        still in flight (an earlier test's, ending) stay counted until they end: the peak
        starts from them (``wait_idle`` first for a clean start)."""
        with self._lock:
            self._requests: list[dict[str, Any]] = []
            self._markers: dict[str, set[str]] = {}
            self.counts: Counter[str] = Counter()
            self.reply_kinds: Counter[str] = Counter()
            self.disconnects: list[dict[str, Any]] = []
            self.aborted_streams: list[dict[str, Any]] = []
            self.in_flight_chat = getattr(self, "in_flight_chat", 0)
            self.max_concurrent_chat = self.in_flight_chat
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no chat is in flight (an abandoned request may still be sleeping out
        its delay); True when none is."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.in_flight_chat > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, oldest first.

        Each is a dict with ``seq``, ``method``, ``path``, ``kind`` (chat/embed/rerank/meta),
        ``headers`` (all of them, lower-case names), ``query``, ``body`` (parsed JSON, None if
        unparseable), ``t`` (time.monotonic() on arrival) and ``status``; chat records add
        ``messages`` (the body's message dicts), ``reply_kind``,
        ``reply`` (answer text), ``tool_calls`` and ``usage``; ``disconnected`` (phase) is
        set when the client went away.
        """
        with self._lock:
            return list(self._requests)

    def requests_for(self, kind_or_path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if kind_or_path in (r["kind"], r["path"])]

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        return self.requests_for("chat")

    @property
    def last_chat(self) -> dict[str, Any] | None:
        chats = self.chat_requests
        return chats[-1] if chats else None

    def prompts(self) -> list[str]:
        """The full prompt text of every chat request (see :func:`prompt_text`)."""
        return [prompt_text(r["messages"]) for r in self.chat_requests]

    def count(self, kind_or_path: str) -> int:
        with self._lock:
            if kind_or_path in (*KINDS, "meta"):
                return sum(1 for r in self._requests if r["kind"] == kind_or_path)
            return self.counts[kind_or_path]

    def _record(self, request: Request, body: Any, kind: str) -> dict[str, Any]:
        rec = {
            "method": request.method,
            "path": request.url.path,
            "kind": kind,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "query": dict(request.query_params),
            "body": body,
            "t": time.monotonic(),
            "status": 200,
        }
        with self._lock:
            rec["seq"] = len(self._requests) + 1
            self._requests.append(rec)
            self.counts[rec["path"]] += 1
            self._cond.notify_all()
        return rec

    def _record_disconnect(self, rec: dict[str, Any], phase: str, chunks: int = 0) -> None:
        with self._lock:
            self.disconnects.append(
                {
                    "seq": rec["seq"],
                    "path": rec["path"],
                    "phase": phase,
                    "chunks_sent": chunks,
                    "t": time.monotonic(),
                }
            )
            rec["disconnected"] = phase
            self._cond.notify_all()

    # ---- waiting (for tests) ----------------------------------------------------------------

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Block (sync) until ``predicate()`` holds or ``timeout`` elapses; returns the outcome."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
            return True

    async def wait_until_async(self, predicate: Callable[[], bool], within: float = 5.0) -> bool:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    def wait_for_disconnects(self, n: int = 1, timeout: float = 5.0) -> bool:
        return self.wait_until(lambda: len(self.disconnects) >= n, timeout)

    def wait_for_requests(self, n: int, kind: str = "chat", timeout: float = 5.0) -> bool:
        return self.wait_until(lambda: self.count(kind) >= n, timeout)

    # ---- fault injection / behaviour knobs ----------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        kind: str = "chat",
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """The next ``n`` requests of ``kind`` (chat/embed/rerank) answer HTTP ``status``."""
        self._check_kind(kind)
        with self._lock:
            self._faults[kind].append(
                _Fault(status, n, message or f"fake LLM injected error {status}", retry_after)
            )

    def fail_always(
        self, status: int = 503, *, kind: str = "chat", message: str | None = None
    ) -> None:
        """Every request of ``kind`` fails with ``status`` until :meth:`recover` ("LLM down")."""
        self._check_kind(kind)
        with self._lock:
            self._faults[kind].append(
                _Fault(status, None, message or f"fake LLM is down ({status})")
            )

    def fail_when(self, marker: str, *, kind: str = "chat") -> None:
        """Every request of ``kind`` whose body mentions ``marker`` fails with a 500 until
        :meth:`recover` (one poisoned document among healthy ones)."""
        self._check_kind(kind)
        with self._lock:
            self._markers.setdefault(kind, set()).add(marker)

    def _content_fault(self, kind: str, body: Any) -> str | None:
        with self._lock:
            markers = set(self._markers.get(kind, ()))
        if not markers:
            return None
        text = json.dumps(body)
        return next((m for m in markers if m in text), None)

    def recover(self, kind: str | None = None) -> None:
        """Drop pending/persistent faults (and stream breaks) for ``kind`` or all kinds."""
        with self._lock:
            for k in [kind] if kind else KINDS:
                self._faults[k].clear()
                self._markers.pop(k, None)
            if kind in (None, "chat"):
                self._stream_breaks.clear()

    def set_delay(self, seconds: float, kind: str = "chat") -> None:
        """Delay before the first byte of every ``kind`` response (``kind="all"`` for all)."""
        with self._lock:
            for k in KINDS if kind == "all" else [self._check_kind(kind)]:
                self._delays[k] = max(0.0, float(seconds))

    def set_stream_chunk_delay(self, seconds: float) -> None:
        """Pause between streamed SSE chunks."""
        self.stream_chunk_delay = max(0.0, float(seconds))

    def break_next_stream(self, after_chunks: int = 2, n: int = 1, mode: str = "abort") -> None:
        """The next ``n`` streamed chat responses stop after ``after_chunks`` chunks.

        ``mode="abort"`` drops the connection mid-body (upstream crash); ``"truncate"`` ends
        the body cleanly but without a finish chunk, usage or ``[DONE]``.
        """
        if mode not in ("abort", "truncate"):
            raise ValueError("mode must be 'abort' or 'truncate'")
        with self._lock:
            self._stream_breaks.append(_StreamBreak(after_chunks, n, mode))

    def queue_reply(
        self,
        content: str | None = None,
        *,
        tool_calls: list[dict[str, Any]] | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """Script the next chat answer.

        ``tool_calls``: ``[{"name": ..., "arguments": dict | str, "id"?: ...}]``.
        """
        calls = []
        for call in tool_calls or []:
            args = call.get("arguments", {})
            calls.append(
                ToolCall(
                    id=str(call.get("id") or ""),
                    name=str(call["name"]),
                    arguments=args if isinstance(args, str) else json.dumps(args),
                )
            )
        reply = Reply(
            kind="queued",
            content=content if content is not None or calls else "",
            tool_calls=calls,
            finish_reason=finish_reason or ("tool_calls" if calls else "stop"),
        )
        with self._lock:
            self._queued.append(reply)

    def embed(self, text: str, dim: int | None = None) -> list[float]:
        return fake_embedding(text, dim or self.embedding_dim)

    @staticmethod
    def _check_kind(kind: str) -> str:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        return kind

    def _take_fault(self, kind: str) -> _Fault | None:
        with self._lock:
            queue = self._faults[kind]
            while queue:
                fault = queue[0]
                if fault.remaining is None:
                    return fault
                if fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        queue.popleft()
                    return fault
                queue.popleft()
            return None

    def _take_stream_break(self) -> _StreamBreak | None:
        with self._lock:
            if not self._stream_breaks:
                return None
            brk = self._stream_breaks[0]
            brk.remaining -= 1
            if brk.remaining <= 0:
                self._stream_breaks.popleft()
            return brk

    def _next_tool_id(self) -> str:
        with self._lock:
            self._tool_seq += 1
            return f"call_{self._tool_seq}"

    def _next_resp_id(self) -> int:
        with self._lock:
            self._resp_seq += 1
            return self._resp_seq

    def _enter_chat(self) -> None:
        with self._lock:
            self.in_flight_chat += 1
            self.max_concurrent_chat = max(self.max_concurrent_chat, self.in_flight_chat)
            self._cond.notify_all()

    def _exit_chat(self) -> None:
        with self._lock:
            self.in_flight_chat -= 1
            self._cond.notify_all()

    async def _wait_or_disconnect(self, request: Request, seconds: float, rec: dict) -> bool:
        """Sleep ``seconds`` polling for the client going away; True if it did."""
        if seconds <= 0:
            return False
        deadline = time.monotonic() + seconds
        while True:
            if await request.is_disconnected():
                self._record_disconnect(rec, "delay")
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(self.disconnect_poll_interval, remaining))

    # ---- answer planning --------------------------------------------------------------------

    def plan_reply(
        self, messages: list[dict[str, Any]], body: dict[str, Any], json_mode: bool = False
    ) -> Reply:
        """The answer to ``messages`` (exposed so tests can predict it without HTTP)."""
        with self._lock:
            queued = self._queued.popleft() if self._queued else None
        if queued is not None:
            for call in queued.tool_calls:
                call.id = call.id or self._next_tool_id()
            return queued
        if self.responder is not None:
            custom = self.responder(messages, body)
            if isinstance(custom, Reply):
                return custom
            if custom is not None:
                return Reply(kind="responder", content=str(custom))

        last = messages[-1] if messages else {}
        role = last.get("role")
        user_text = content_text(last.get("content")) if role == "user" else ""
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
        if tools and role == "user":
            calls = self._plan_tool_calls(tools, user_text, body)
            if calls:
                return Reply(
                    kind="tool_calls", content=None, tool_calls=calls, finish_reason="tool_calls"
                )
        if role == "tool":
            return Reply(kind="tool_result", content=self._tool_result_answer(messages, json_mode))

        lightrag = self._lightrag_reply(messages, json_mode)
        if lightrag is not None:
            return lightrag

        last_user = next(
            (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        text = f"echo: {last_user[: self.echo_chars]} [{short_hash(last_user)}]"
        if json_mode:
            text = json.dumps({"answer": text}, ensure_ascii=False)
        return Reply(kind="echo", content=text)

    def _plan_tool_calls(
        self, tools: list[dict[str, Any]], user_text: str, body: dict[str, Any]
    ) -> list[ToolCall]:
        choice = body.get("tool_choice")
        if not self.tool_calls_enabled or choice == "none":
            return []
        if isinstance(choice, dict):
            forced = (choice.get("function") or {}).get("name") or choice.get("name")
            tools = [t for t in tools if _tool_name(t) == forced] or tools[:1]
            count = 1
        elif self.parallel_trigger and self.parallel_trigger.lower() in user_text.lower():
            count = self.parallel_tool_calls
        else:
            count = self.max_tool_calls
        if body.get("parallel_tool_calls") is False:
            count = min(count, 1)
        lowered = user_text.lower()
        mentioned = [t for t in tools if _tool_name(t).lower() in lowered]
        ordered = mentioned + [t for t in tools if t not in mentioned]
        return [
            ToolCall(
                id=self._next_tool_id(),
                name=_tool_name(tool),
                arguments=json.dumps(tool_arguments(tool, user_text), ensure_ascii=False),
            )
            for tool in ordered[: max(0, count)]
        ]

    @staticmethod
    def _tool_result_answer(messages: list[dict[str, Any]], json_mode: bool) -> str:
        results = []
        names: dict[str, str] = {}
        for msg in messages:
            for call in msg.get("tool_calls") or []:
                fn = call.get("function") or {}
                if call.get("id"):
                    names[call["id"]] = fn.get("name", "tool")
        for msg in reversed(messages):
            if msg.get("role") != "tool":
                break
            name = (
                msg.get("name")
                or msg.get("tool_name")
                or names.get(msg.get("tool_call_id", ""), "tool")
            )
            results.append(f"{name} -> {_clean_field(content_text(msg.get('content')), 200)}")
        results.reverse()
        text = "Tool results: " + "; ".join(results)
        return json.dumps({"answer": text}, ensure_ascii=False) if json_mode else text

    def _lightrag_reply(self, messages: list[dict[str, Any]], json_mode: bool) -> Reply | None:
        system = "\n".join(
            content_text(m.get("content")) for m in messages if m.get("role") == "system"
        )
        last_user = next(
            (content_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"),
            "",
        )
        both = system + "\n" + last_user
        is_extraction_ctx = _LR_EXTRACT_SYSTEM in system or _LR_EXTRACT_USER in last_user
        json_extract = "`entities` and `relationships` arrays" in both or (
            json_mode and is_extraction_ctx
        )
        if is_extraction_ctx and _LR_GLEAN_USER in last_user:
            content = (
                json.dumps({"entities": [], "relationships": []}) if json_extract else (LR_COMPLETE)
            )
            return Reply(kind="lightrag_glean", content=content)
        if is_extraction_ctx and "---Input Text---" in last_user:
            text = _input_text(last_user) or ""
            types = parse_entity_types(system) or parse_entity_types(last_user)
            max_ent = self.extraction_max_entities
            max_total = None
            m = re.search(r"at most (\d+) entity (?:rows|objects)", both)
            if m:
                max_ent = min(max_ent, int(m.group(1)))
            m = re.search(r"at most (\d+) total (?:rows|records)", both)
            if m:
                max_total = int(m.group(1))
            result = extract_graph(text, types, max_entities=max_ent, max_total=max_total)
            render = render_extraction_json if json_extract else render_extraction_text
            return Reply(kind="lightrag_extract", content=render(result))
        if _LR_SUMMARY in both and "Description List:" in both:
            return Reply(kind="lightrag_summary", content=summarize_descriptions(both))
        if _LR_KEYWORDS in last_user and "low_level_keywords" in last_user:
            m = re.search(r"User Query:\s*(.*?)\s*\n+---Output---", last_user, re.S)
            query = m.group(1) if m else last_user
            return Reply(
                kind="lightrag_keywords",
                content=json.dumps(keywords_for_query(query), ensure_ascii=False),
            )
        if "---Context---" in system and (
            "Document Chunks" in system or "Knowledge Graph Data" in system
        ):
            context = system.split("---Context---", 1)[1]
            return Reply(kind="lightrag_answer", content=rag_answer(last_user, context))
        return None

    def _finalize(self, reply: Reply, body: dict[str, Any]) -> Reply:
        """Apply ``stop`` and ``max_tokens`` to a plain-text reply."""
        if reply.content and not reply.tool_calls:
            stops = body.get("stop")
            for stop in [stops] if isinstance(stops, str) else stops or []:
                if stop and stop in reply.content:
                    reply.content = reply.content[: reply.content.index(stop)]
            limit = body.get("max_completion_tokens") or body.get("max_tokens")
            if isinstance(limit, int) and limit > 0 and count_words(reply.content) > limit:
                pieces = _split_pieces(reply.content, 1)[:limit]
                reply.content = "".join(pieces).rstrip()
                reply.finish_reason = "length"
        return reply

    # ---- app --------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI(title="fake-llm (tests only)")
        fake = self

        async def read_json(request: Request) -> Any:
            raw = await request.body()
            if not raw:
                return {}
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                return None

        @app.get("/health")
        async def health(request: Request) -> dict[str, Any]:
            fake._record(request, None, "meta")
            return {"status": "ok"}

        @app.get("/v1/models")
        async def openai_models(request: Request) -> dict[str, Any]:
            fake._record(request, None, "meta")
            return {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": CREATED, "owned_by": "fake-llm"}
                    for m in fake._all_models()
                ],
            }

        @app.post("/v1/chat/completions")
        async def openai_chat(request: Request) -> Response:
            return await fake._chat(request, await read_json(request))

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            return await fake._embeddings(request, await read_json(request))

        @app.post("/v1/rerank")
        async def rerank(request: Request) -> Response:
            return await fake._rerank(request, await read_json(request))

        return app

    def _all_models(self) -> list[str]:
        return list(dict.fromkeys(self.chat_models + self.embedding_models + self.rerank_models))

    @staticmethod
    def _error(status: int, message: str, headers: dict | None = None) -> Response:
        err_type = {
            400: "invalid_request_error",
            404: "not_found_error",
            429: "rate_limit_error",
        }.get(status, "server_error")
        code = "model_not_found" if status == 404 else None
        return JSONResponse(
            {"error": {"message": message, "type": err_type, "param": None, "code": code}},
            status_code=status,
            headers=headers,
        )

    def _precheck(self, rec: dict, body: Any, kind: str, models: list[str]) -> Response | None:
        if not isinstance(body, dict):
            rec["status"] = 400
            return self._error(400, "request body must be a JSON object")
        marker = self._content_fault(kind, body)
        if marker is not None:
            rec["status"] = 500
            return self._error(500, f"fake LLM refuses requests mentioning {marker!r}")
        fault = self._take_fault(kind)
        if fault is not None:
            rec["status"] = fault.status
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
            return self._error(fault.status, fault.message, headers)
        model = body.get("model")
        if self.strict_models and model not in models:
            rec["status"] = 404
            msg = f"model '{model}' not found"
            return self._error(404, msg)
        return None

    # ---- chat -------------------------------------------------------------------------------

    async def _chat(self, request: Request, body: Any) -> Response:
        rec = self._record(request, body, "chat")
        messages: list[dict[str, Any]] = []
        if isinstance(body, dict):
            messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        rec["messages"] = messages
        error = self._precheck(rec, body, "chat", self.chat_models)
        if error is not None:
            return error
        fmt = body.get("response_format") or {}
        json_mode = isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema")
        stream = bool(body.get("stream"))

        self._enter_chat()
        handed_off = False
        try:
            with self._lock:
                delay = self._delays["chat"]
            if await self._wait_or_disconnect(request, delay, rec):
                rec["status"] = 499
                return Response(status_code=499)
            reply = self._finalize(self.plan_reply(messages, body, json_mode), body)
            rec["reply_kind"] = reply.kind
            rec["reply"] = reply.content
            rec["tool_calls"] = [c.__dict__.copy() for c in reply.tool_calls]
            with self._lock:
                self.reply_kinds[reply.kind] += 1
            model = str(body.get("model") or self.chat_models[0])
            prompt_tokens = count_words(prompt_text(messages))
            completion_tokens = count_words(reply.content or "") + sum(
                count_words(c.arguments) + 1 for c in reply.tool_calls
            )
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            rec["usage"] = usage
            if not stream:
                return JSONResponse(self._openai_completion(reply, model, usage))
            gen, state = self._stream_gen(reply, model, usage, body)

            def on_finish() -> None:
                if not state["completed"]:
                    if state["aborted"]:
                        with self._lock:
                            self.aborted_streams.append(
                                {
                                    "seq": rec["seq"],
                                    "mode": state["break_mode"],
                                    "chunks_sent": state["chunks"],
                                }
                            )
                            self._cond.notify_all()
                    else:
                        self._record_disconnect(rec, "stream", state["chunks"])
                self._exit_chat()

            handed_off = True
            return _TrackedStream(gen, media_type="text/event-stream", on_finish=on_finish)
        finally:
            if not handed_off:
                self._exit_chat()

    def _openai_completion(self, reply: Reply, model: str, usage: dict) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in reply.tool_calls
            ]
        return {
            "id": f"chatcmpl-fake-{self._next_resp_id()}",
            "object": "chat.completion",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": usage,
        }

    def _stream_gen(
        self, reply: Reply, model: str, usage: dict, body: dict[str, Any]
    ) -> tuple[AsyncIterator[bytes], dict[str, Any]]:
        state: dict[str, Any] = {"completed": False, "aborted": False, "chunks": 0}
        opts = body.get("stream_options") or {}
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        frames = self._openai_frames(reply, model, usage, include_usage)
        brk = self._take_stream_break()
        state["break_mode"] = brk.mode if brk else None

        async def gen() -> AsyncIterator[bytes]:
            for i, frame in enumerate(frames):
                if brk is not None and i >= brk.after_chunks:
                    state["aborted"] = True
                    if brk.mode == "abort":
                        raise _StreamAbort()
                    return
                if i and self.stream_chunk_delay:
                    await asyncio.sleep(self.stream_chunk_delay)
                yield frame
                state["chunks"] += 1
            state["completed"] = True

        return gen(), state

    def _openai_frames(
        self, reply: Reply, model: str, usage: dict, include_usage: bool
    ) -> list[bytes]:
        base = {
            "id": f"chatcmpl-fake-{self._next_resp_id()}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        frames: list[bytes] = []
        if reply.tool_calls:
            headers = [
                {
                    "index": i,
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": ""},
                }
                for i, c in enumerate(reply.tool_calls)
            ]
            frags = [
                _split_fragments(c.arguments, self.tool_arg_fragments) for c in reply.tool_calls
            ]
            deltas: list[dict[str, Any]] = []
            if self.interleave_tool_calls:
                # All headers first, then argument fragments round-robin across the calls.
                deltas += [{"tool_calls": [h]} for h in headers]
                for round_ in range(max(len(f) for f in frags)):
                    for i, f in enumerate(frags):
                        if round_ < len(f):
                            deltas.append(
                                {"tool_calls": [{"index": i, "function": {"arguments": f[round_]}}]}
                            )
            else:
                for i, h in enumerate(headers):
                    deltas.append({"tool_calls": [h]})
                    deltas += [
                        {"tool_calls": [{"index": i, "function": {"arguments": f}}]}
                        for f in frags[i]
                    ]
            deltas[0] = {"role": "assistant", "content": None, **deltas[0]}
            frames += [chunk(d) for d in deltas]
        else:
            frames.append(chunk({"role": "assistant", "content": ""}))
            for piece in _split_pieces(reply.content or "", self.stream_words_per_chunk):
                frames.append(chunk({"content": piece}))
        frames.append(chunk({}, reply.finish_reason))
        if include_usage:
            frames.append(_sse({**base, "choices": [], "usage": usage}))
        frames.append(b"data: [DONE]\n\n")
        return frames

    # ---- embeddings -------------------------------------------------------------------------

    async def _embeddings(self, request: Request, body: Any) -> Response:
        rec = self._record(request, body, "embed")
        error = self._precheck(rec, body, "embed", self.embedding_models)
        if error is not None:
            return error
        with self._lock:
            delay = self._delays["embed"]
        if await self._wait_or_disconnect(request, delay, rec):
            rec["status"] = 499
            return Response(status_code=499)
        model = str(body.get("model") or self.embedding_models[0])
        dim = body.get("dimensions") or self.embedding_dims.get(model, self.embedding_dim)
        if not isinstance(dim, int) or dim <= 0:
            rec["status"] = 400
            return self._error(400, "dimensions must be a positive integer")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            rec["status"] = 400
            return self._error(400, "input must be a string or a list of strings")
        if any(t == "" for t in texts):
            rec["status"] = 400
            return self._error(400, "input must not contain empty strings")
        vectors = [fake_embedding(t, dim) for t in texts]
        tokens = sum(count_words(t) for t in texts)
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, vec in enumerate(vectors):
            emb: Any = vec
            if b64:
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": emb})
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    # ---- rerank -----------------------------------------------------------------------------

    async def _rerank(self, request: Request, body: Any) -> Response:
        rec = self._record(request, body, "rerank")
        error = self._precheck(rec, body, "rerank", self.rerank_models)
        if error is not None:
            return error
        with self._lock:
            delay = self._delays["rerank"]
        if await self._wait_or_disconnect(request, delay, rec):
            rec["status"] = 499
            return Response(status_code=499)
        model = str(body.get("model") or self.rerank_models[0])
        query = body.get("query")
        docs = body.get("documents")
        if (
            not isinstance(query, str)
            or not isinstance(docs, list)
            or not all(isinstance(d, str) for d in docs)
        ):
            rec["status"] = 400
            return self._error(400, "query (str) and documents (list of str) are required")
        scored = sorted(
            ((i, rerank_score(query, d, self.embedding_dim)) for i, d in enumerate(docs)),
            key=lambda x: (-x[1], x[0]),
        )
        top_n = body.get("top_n")
        if isinstance(top_n, int) and top_n >= 0:
            scored = scored[:top_n]
        tokens = count_words(query) + sum(count_words(d) for d in docs)
        return JSONResponse(
            {
                "id": f"rerank-fake-{self._next_resp_id()}",
                "model": model,
                "results": [{"index": i, "relevance_score": score} for i, score in scored],
                "usage": {"total_tokens": tokens, "prompt_tokens": tokens},
            }
        )


def create_fake_llm(**options: Any) -> FakeLLM:
    """Build a :class:`FakeLLM`; keyword options are those of ``FakeLLM.__init__``."""
    return FakeLLM(**options)


@contextmanager
def serve_fake_llm(port: int | None = None, **options: Any) -> Iterator[FakeLLM]:
    """Create and serve a fake on loopback; yields it with ``.url`` (base URL) set.

    OpenAI clients want ``f"{fake.url}/v1"``.
    """
    fake = create_fake_llm(**options)
    with serve_asgi(fake.app, port=port) as url:
        fake.url = url
        try:
            yield fake
        finally:
            fake.url = None
