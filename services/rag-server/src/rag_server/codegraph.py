"""Code as a graph, written directly: no LLM guesses what a parser already knows.

One *code document* per source file (or per file's cross-file links) carries its chunks (the
code itself), its entities (the file, each symbol: ``<path>`` and ``<path>:<qualname>``) and
its relationships (``contains``, ``calls``, ``imports``, ``extends``, ``implements``). They go
in through LightRAG's ``ainsert_custom_kg``, which makes no LLM call but keeps no journal of
its own; so this module journals each document itself:

1. the whole payload goes into the document's doc-status record first (status ``processed``,
   ``metadata.code_graph.state = "writing"``), which LightRAG's own pipeline never picks up;
2. the graph, vector and chunk stores are written (every write is an upsert: running it again
   changes nothing);
3. the state becomes ``"done"``.

A crash between 1 and 3 leaves a ``writing`` record, which :func:`recover` replays when the
workspace's instance is built; until then the document's status reads ``pending``, so an
ingestion job never calls it searchable early. :func:`delete` removes exactly what the
journal lists (chunks, entities, relationships, the record), so a file's contributions go
with it. Relationships between entities that do not exist (a target deleted meanwhile) are
dropped, never turned into placeholder entities.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from lightrag import LightRAG
from lightrag.base import DocStatus
from lightrag.utils import compute_mdhash_id, make_relation_vdb_ids, normalize_entity_name
from pydantic import BaseModel, Field

KIND = "code_graph"
RELATION_KINDS = ("contains", "calls", "imports", "extends", "implements")


class CodeEntity(BaseModel):
    name: str = Field(min_length=1, max_length=1000)
    type: str = Field(min_length=1, max_length=40)
    description: str = Field(default="", max_length=20000)
    chunk: int | None = None  # index into the document's chunks where it is defined


class CodeRelation(BaseModel):
    source: str = Field(min_length=1, max_length=1000)
    target: str = Field(min_length=1, max_length=1000)
    kinds: list[str] = Field(min_length=1)  # source -> target
    reverse: list[str] = Field(default_factory=list)  # target -> source, the same pair
    description: str = Field(default="", max_length=20000)
    chunk: int | None = None


class CodeDocument(BaseModel):
    doc_id: str = Field(min_length=1, max_length=200)
    file_path: str = Field(min_length=1, max_length=4096)
    chunks: list[str] = Field(default_factory=list, max_length=5000)
    entities: list[CodeEntity] = Field(default_factory=list, max_length=20000)
    relations: list[CodeRelation] = Field(default_factory=list, max_length=50000)


def _chunk_alias(i: int) -> str:
    return f"chunk{i}"


def chunk_ids(doc: CodeDocument) -> list[str]:
    """What LightRAG names each chunk (it hashes the content)."""
    return [compute_mdhash_id(c, prefix="chunk-") for c in doc.chunks]


def track_of(stored_path: str) -> str:
    """Every version of one file's document shares a track id, so a delete can find the
    versions that still claim what it would remove."""
    return "code_" + hashlib.sha256(stored_path.encode()).hexdigest()[:32]


def direction(relation: CodeRelation) -> str:
    """LightRAG's graph is undirected (one edge per pair): each direction is a line of the
    description, ``kinds: source -> target``."""
    line = f"{','.join(relation.kinds)}: {relation.source} -> {relation.target}"
    if relation.reverse:
        line += f"\n{','.join(relation.reverse)}: {relation.target} -> {relation.source}"
    return line


class CodeBatch(BaseModel):
    """Documents written together: one journal write, one flush of every store, so a
    codebase costs one flush per batch rather than one per file (NetworkX rewrites its whole
    graph file on each)."""

    documents: list[CodeDocument] = Field(min_length=1, max_length=500)


@asynccontextmanager
async def one_flush(rag: LightRAG) -> AsyncIterator[None]:
    """Inside: ``ainsert_custom_kg`` leaves its writes in memory; on the way out every store
    is flushed once. (LightRAG 1.5.7 flushes after each call; the journal makes the deferral
    safe: nothing is marked done before this flush.)"""
    flush = rag._insert_done_with_cleanup

    async def deferred() -> None:
        return None

    rag._insert_done_with_cleanup = deferred  # type: ignore[method-assign]
    try:
        yield
    finally:
        del rag._insert_done_with_cleanup  # the class's own again
    await flush()


async def insert_many(
    rag: LightRAG, docs: list[tuple[CodeDocument, str]], lock: asyncio.Lock
) -> list[dict[str, Any]]:
    """Journal, write, flush, mark done, for each ``(document, stored path)`` (rag-server
    stores paths apart that LightRAG would merge by basename). Returns per-document counts.
    ``lock`` keeps the workspace's code writes one batch at a time, so no other batch's
    documents are marked done before this flush."""
    async with lock:
        found = await records(rag, [d.doc_id for d, _ in docs])
        results: dict[str, dict[str, Any]] = {}
        todo: list[tuple[CodeDocument, str, list[CodeRelation], dict[str, Any]]] = []
        own = {normalize_entity_name(e.name) for d, _ in docs for e in d.entities}
        for (doc, stored), existing in zip(docs, found, strict=True):
            if doc.doc_id in results or (journal_of(existing) or {}).get("state") == "done":
                results.setdefault(
                    doc.doc_id, {"status": "duplicated", "entities": 0, "relations": 0}
                )
                continue
            relations = await _existing_endpoints(rag, doc, own)
            todo.append((doc, stored, relations, _record(doc, stored, relations)))
            results[doc.doc_id] = {
                "status": "success",
                "entities": len(doc.entities),
                "relations": len(relations),
                "dropped_relations": len(doc.relations) - len(relations),
            }
        if todo:
            await rag.doc_status.upsert({doc.doc_id: record for doc, _, _, record in todo})
            await rag.doc_status.index_done_callback()
            async with one_flush(rag):
                for doc, stored, relations, _ in todo:
                    await _write(rag, doc, relations, stored)
            for *_, record in todo:
                record["metadata"][KIND]["state"] = "done"
            await rag.doc_status.upsert({doc.doc_id: record for doc, _, _, record in todo})
            await rag.doc_status.index_done_callback()
    return [{"doc_id": d.doc_id, "track_id": track_of(p), **results[d.doc_id]} for d, p in docs]


async def records(rag: LightRAG, ids: list[str]) -> list[dict[str, Any] | None]:
    """Doc-status records in the order asked, None where missing (PostgreSQL's storage
    answers an empty list when it finds none)."""
    found = await rag.doc_status.get_by_ids(ids) if ids else []
    return list(found) if len(found) == len(ids) else [None] * len(ids)


def _record(doc: CodeDocument, stored: str, relations: list[CodeRelation]) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    return {
        "status": DocStatus.PROCESSED,
        "content_summary": f"code graph of {doc.file_path}"[:100],
        "content_length": sum(len(c) for c in doc.chunks),
        "file_path": stored,
        "chunks_count": len(doc.chunks),
        "chunks_list": chunk_ids(doc),
        "created_at": now,
        "updated_at": now,
        "track_id": track_of(stored),
        "metadata": {
            KIND: {
                "state": "writing",
                "payload": doc.model_copy(update={"relations": relations}).model_dump(),
            }
        },
    }


async def _existing_endpoints(
    rag: LightRAG, doc: CodeDocument, own: set[str]
) -> list[CodeRelation]:
    """Relationships whose endpoints exist (or are entities of the batch)."""
    wanted = {normalize_entity_name(n) for r in doc.relations for n in (r.source, r.target)}
    missing = sorted(wanted - own)
    present = await rag.chunk_entity_relation_graph.has_nodes_batch(missing) if missing else set()
    known = own | set(present)
    return [
        r
        for r in doc.relations
        if normalize_entity_name(r.source) in known and normalize_entity_name(r.target) in known
    ]


async def _write(
    rag: LightRAG, doc: CodeDocument, relations: list[CodeRelation], stored_path: str
) -> None:
    custom_kg: dict[str, Any] = {
        "chunks": [
            {
                "content": text,
                "source_id": _chunk_alias(i),
                "file_path": stored_path,
                "chunk_order_index": i,
            }
            for i, text in enumerate(doc.chunks)
        ],
        "entities": [
            {
                "entity_name": e.name,
                "entity_type": e.type,
                "description": e.description or e.name,
                "source_id": _chunk_alias(e.chunk) if e.chunk is not None else "",
                "file_path": stored_path,
            }
            for e in doc.entities
        ],
        "relationships": [
            {
                "src_id": r.source,
                "tgt_id": r.target,
                "description": direction(r) + (f"\n{r.description}" if r.description else ""),
                "keywords": ",".join(sorted({*r.kinds, *r.reverse})),
                "weight": 1.0,
                "source_id": _chunk_alias(r.chunk) if r.chunk is not None else "",
                "file_path": stored_path,
            }
            for r in relations
        ],
    }
    await rag.ainsert_custom_kg(custom_kg, full_doc_id=doc.doc_id)


def directed(edge: dict[str, Any], a: str, b: str) -> list[tuple[list[str], str, str]]:
    """(kinds, source, target) of each direction a stored edge records; for an edge that did
    not come from code (an LLM's), its keywords and the order the graph gave."""
    out: list[tuple[list[str], str, str]] = []
    for line in str(edge.get("description") or "").split("\n"):
        head, sep, rest = line.partition(": ")
        source, arrow, target = rest.partition(" -> ")
        if sep and arrow and {source, target} == {a, b}:
            out.append((head.split(","), source, target))
    if not out:
        keywords = [k.strip() for k in str(edge.get("keywords") or "").split(",") if k.strip()]
        out.append((keywords, a, b))
    return out


def journal_of(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if not record:
        return None
    return (record.get("metadata") or {}).get(KIND)


async def delete_many(rag: LightRAG, doc_ids: list[str], lock: asyncio.Lock) -> set[str]:
    """Delete the code documents among ``doc_ids``, flushing every store once; the ids it
    deleted (the others are not code documents: LightRAG's own deletion takes them)."""
    deleted: set[str] = set()
    async with lock:
        for doc_id in dict.fromkeys(doc_ids):
            if await _delete(rag, doc_id):
                deleted.add(doc_id)
        if deleted:
            await rag._insert_done()  # deletions are not regenerable: flush without discarding
    return deleted


async def _delete(rag: LightRAG, doc_id: str) -> bool:
    """Remove what the document wrote and no other version of the same file still claims
    (a changed file's new version is written before its old one is deleted, and shares
    entity names, often chunks too); False when it is not a code document."""
    record = await rag.doc_status.get_by_id(doc_id)
    journal = journal_of(record)
    if journal is None or record is None:
        return False
    doc = CodeDocument.model_validate(journal["payload"])
    kept_names, kept_pairs, kept_chunks = await _claimed_elsewhere(
        rag, doc_id, str(record.get("file_path") or "")
    )
    names = [
        n
        for n in dict.fromkeys(normalize_entity_name(e.name) for e in doc.entities)
        if n not in kept_names
    ]
    pairs = [
        (s, t)
        for s, t in dict.fromkeys(_pair(r) for r in doc.relations)
        if frozenset((s, t)) not in kept_pairs
    ]
    graph = rag.chunk_entity_relation_graph
    if pairs:
        await graph.remove_edges(pairs)
        rel_ids = sorted({i for s, t in pairs for i in make_relation_vdb_ids(s, t)})
        await rag.relationships_vdb.delete(rel_ids)
    if names:
        await graph.remove_nodes(names)  # their remaining edges go with them
        await rag.entities_vdb.delete([compute_mdhash_id(n, prefix="ent-") for n in names])
    ids = [i for i in dict.fromkeys(chunk_ids(doc)) if i not in kept_chunks]
    if ids:
        await rag.chunks_vdb.delete(ids)
        await rag.text_chunks.delete(ids)
    await rag.doc_status.delete([doc_id])
    return True


def _pair(relation: CodeRelation) -> tuple[str, str]:
    return normalize_entity_name(relation.source), normalize_entity_name(relation.target)


async def _claimed_elsewhere(
    rag: LightRAG, doc_id: str, stored_path: str
) -> tuple[set[str], set[frozenset[str]], set[str]]:
    """Entity names, edge pairs and chunk ids that another version of the same file's
    document (written or being written) also wrote."""
    names: set[str] = set()
    pairs: set[frozenset[str]] = set()
    chunks: set[str] = set()
    if not stored_path:
        return names, pairs, chunks
    siblings = await rag.doc_status.get_docs_by_track_id(track_of(stored_path))
    for other_id, status in siblings.items():
        journal = (getattr(status, "metadata", None) or {}).get(KIND)
        if other_id == doc_id or not journal:
            continue
        other = CodeDocument.model_validate(journal["payload"])
        names.update(normalize_entity_name(e.name) for e in other.entities)
        pairs.update(frozenset(_pair(r)) for r in other.relations)
        chunks.update(chunk_ids(other))
    return names, pairs, chunks


async def recover(rag: LightRAG) -> int:
    """Replay code documents a crash left half written (every write is an upsert); how
    many."""
    docs = await rag.doc_status.get_docs_by_statuses([DocStatus.PROCESSED])
    pending = []
    for doc_id, status in docs.items():
        journal = (getattr(status, "metadata", None) or {}).get(KIND)
        if journal and journal.get("state") == "writing":
            pending.append((doc_id, CodeDocument.model_validate(journal["payload"]), status))
    if not pending:
        return 0
    async with one_flush(rag):
        for _, doc, status in pending:
            await _write(rag, doc, doc.relations, status.file_path)
    found = await records(rag, [doc_id for doc_id, _, _ in pending])
    done = {}
    for (doc_id, _, _), record in zip(pending, found, strict=True):
        if record:
            record["metadata"][KIND]["state"] = "done"
            done[doc_id] = record
    await rag.doc_status.upsert(done)
    await rag.doc_status.index_done_callback()
    return len(pending)


def status_of(record: dict[str, Any]) -> tuple[str, str | None]:
    """(status, error) as an ingestion job should read it: a half-written code document is
    not searchable yet."""
    journal = journal_of(record)
    if journal is not None and journal.get("state") != "done":
        return "pending", None
    return str(record.get("status")), record.get("error_msg")
