"""Parsed files to rag-server documents: one document per chunk, labelled and stably named."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from sparkstack_common.rag_client import RagClient

from .graph import code_document, link_info
from .model import Chunk, FileResult
from .preprocess import DOCUMENT_EXTENSIONS

DOCUMENT_KINDS = frozenset(DOCUMENT_EXTENSIONS.values())


@dataclass
class Document:
    id: str
    text: str
    source: str


@dataclass
class FileIngest:
    """What happened to one file on /ingest."""

    result: FileResult
    documents: list[Document] = field(default_factory=list)
    # a code file goes in as one code document (its graph), not as texts to extract from
    code: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None  # what the worker needs to link it to other files
    sent: int = 0
    track_ids: list[str] = field(default_factory=list)

    @property
    def doc_ids(self) -> list[str]:
        return [self.code["doc_id"]] if self.code else [d.id for d in self.documents]

    def to_dict(self) -> dict[str, Any]:
        r = self.result
        expected = 1 if self.code else len(self.documents)
        out = {
            "path": r.path,
            "status": r.status if r.status != "ok" or self.sent == expected else "error",
            "reason": r.reason,
            "language": r.language,
            "flags": r.flags,
            "symbols": len(r.symbols),
            "chunks": len(r.chunks),
            "documents": expected,
            "sent": self.sent,
            "doc_ids": self.doc_ids,
            "track_ids": self.track_ids,
        }
        if self.graph is not None:
            out["graph"] = self.graph
        return out


def document_id(workspace: str, path: str, content_sha256: str, index: int) -> str:
    """Stable across re-ingests of the same content, distinct across workspaces and paths."""
    key = f"{workspace}\0{path}\0{content_sha256}\0{index}".encode()
    return "doc-" + hashlib.sha256(key).hexdigest()[:32]


def label(path: str, chunk: Chunk) -> str:
    """The line that tells the graph where a chunk comes from."""
    where = f"page {chunk.page}, " if chunk.page else ""
    if chunk.kind == "overview":
        return f"[overview of {path} ({chunk.language})]"
    scope = f", in {chunk.scope}" if chunk.scope else ""
    return f"[{path} ({chunk.language}), {where}lines {chunk.start_line}-{chunk.end_line}{scope}]"


def documents_of(result: FileResult, workspace: str, content_sha256: str) -> list[Document]:
    chunks = list(result.chunks)
    if result.overview is not None and result.symbols:
        chunks.insert(0, result.overview)
    docs = []
    for i, c in enumerate(chunks):
        if not c.text.strip():
            continue
        source = (
            f"{result.path}#overview"
            if c.kind == "overview"
            else f"{result.path}#L{c.start_line}-L{c.end_line}"
            + (f"@{i}" if c.partial_line else "")
        )
        docs.append(
            Document(
                id=document_id(workspace, result.path, content_sha256, i),
                text=f"{label(result.path, c)}\n{c.text}",
                source=source,
            )
        )
    return docs


CODE_BATCH = 200  # code documents per call (rag-server flushes its stores once per call)


async def send(files: list[FileIngest], workspace: str, rag: RagClient, batch_size: int) -> None:
    """Send every file's documents in batches; updates ``sent`` and ``track_ids`` as batches
    land, so a failure part-way still reports what rag-server already has."""
    batch: list[tuple[FileIngest, Document]] = []

    async def flush() -> None:
        if not batch:
            return
        answer = await rag.insert_texts(
            workspace,
            [d.text for _, d in batch],
            [d.source for _, d in batch],
            [d.id for _, d in batch],
        )
        track = answer.get("track_id")
        for f, _ in batch:
            f.sent += 1
            if track and track not in f.track_ids:
                f.track_ids.append(track)
        batch.clear()

    code = [f for f in files if f.code is not None]
    for start in range(0, len(code), CODE_BATCH):
        part = code[start : start + CODE_BATCH]
        answers = await rag.insert_code(workspace, [f.code for f in part if f.code is not None])
        for f, answer in zip(part, answers, strict=True):
            f.sent = 1
            # processed already; the track lists every version of the file's document
            f.track_ids = [str(answer["track_id"])] if answer.get("track_id") else []
    for f in files:
        for d in f.documents:
            batch.append((f, d))
            if len(batch) >= batch_size:
                await flush()
    await flush()


def prepare(f: FileIngest, workspace: str, content_sha256: str) -> None:
    """Code goes in as a graph; prose (Markdown, text, PDF...) as texts LightRAG extracts."""
    r = f.result
    if r.language in DOCUMENT_KINDS:
        f.documents = documents_of(r, workspace, content_sha256)
    else:
        f.code = code_document(r, workspace, content_sha256)
        f.graph = link_info(r)
