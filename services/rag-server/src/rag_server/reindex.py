"""Rebuilding a workspace's vectors with the embedding model rag-server uses now.

Nothing is extracted again and no document is read again: every vector record (chunks,
entities, relations) keeps its text, so the new vectors are the same records embedded by
the new model. They are written beside the old ones, and the workspace switches to them in
one step once all are written:

- local profile (NanoVectorDB files): the new files are built under
  ``<data dir>/.reindex/<workspace>/``; the switch writes a journal, moves the three files
  over the old ones and records the new embedder in the registry. A rag-server that stops
  during the switch finishes it when it starts (``recover``); one that stops before it
  throws the partial files away, and the workspace is as it was.
- PostgreSQL profiles: each embedding model has its own tables (LightRAG names them after
  the model and dimension), so the new rows go to the new model's tables; the switch is the
  registry's one-row update, and the old rows are dropped after it.

Until the switch the workspace keeps its old embedder, and what it answers does not change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightrag import LightRAG
from lightrag.base import BaseVectorStorage
from lightrag.constants import GRAPH_FIELD_SEP
from lightrag.kg.nano_vector_db_impl import NanoVectorDBStorage

from .instances import clear_query_cache
from .registry import EmbedderId

if TYPE_CHECKING:
    from .runtime import RagRuntime

log = logging.getLogger("rag_server.reindex")

VECTOR_STORES = ("chunks_vdb", "entities_vdb", "relationships_vdb")
SHADOW = ".reindex"  # not a valid workspace name, so never one's directory
RUNNING, DONE, FAILED = "running", "done", "failed"
# fields of a stored record that are not given back to an upsert
_STORED_ONLY = {"id", "workspace", "created_at", "create_time", "update_time", "content_vector"}


class ReindexRefused(Exception):
    """A reindex that cannot start (the message says why)."""


@dataclass
class Progress:
    workspace: str
    source: EmbedderId
    target: EmbedderId
    state: str = RUNNING
    total: int = 0
    done: int = 0
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "from": asdict(self.source),
            "to": asdict(self.target),
            "state": self.state,
            "vectors": {"total": self.total, "done": self.done},
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
        }

    def __str__(self) -> str:
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        return (
            f"reindexing with {self.target}: {self.done} of {self.total} vectors{share}"
            if self.state == RUNNING
            else f"reindex with {self.target} {self.state}"
        )


def shadow_root(data_dir: Path) -> Path:
    return data_dir / SHADOW


def _journal(data_dir: Path, workspace: str) -> Path:
    return shadow_root(data_dir) / f"{workspace}.switch.json"


def _file_of(storage: BaseVectorStorage) -> str:
    return f"vdb_{storage.namespace}.json"


async def _ids(storage: BaseVectorStorage) -> list[str]:
    """Every record id of one vector store of the workspace."""
    if isinstance(storage, NanoVectorDBStorage):
        return [row["__id__"] for row in (await storage.client_storage)["data"]]
    table = getattr(storage, "table_name", None)
    db = getattr(storage, "db", None)
    if table is None or db is None:
        raise ReindexRefused(f"reindexing {type(storage).__name__} is not supported")
    rows = await db.query(
        f"SELECT id FROM {table} WHERE workspace=$1", [storage.workspace], multirows=True
    )
    return [row["id"] for row in rows or []]


def _upsertable(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record in the shape ``upsert`` takes."""
    fields = {k: v for k, v in record.items() if k not in _STORED_ONLY}
    if "chunk_ids" in fields:  # a PostgreSQL row: its columns are named apart from upsert's
        if "target_id" in fields:  # a relation: source_id/target_id are its two ends
            fields["src_id"], fields["tgt_id"] = fields.pop("source_id"), fields.pop("target_id")
        fields["source_id"] = GRAPH_FIELD_SEP.join(fields.pop("chunk_ids") or [])
    return fields


def _local(rag: LightRAG) -> bool:
    return isinstance(rag.chunks_vdb, NanoVectorDBStorage)


def _target_store(
    source: BaseVectorStorage, embedding_func: Any, working_dir: Path | None
) -> BaseVectorStorage:
    """A store like ``source`` for the new model: in ``working_dir`` (files), or in the new
    model's own table (PostgreSQL)."""
    config = dict(source.global_config)
    if working_dir is not None:
        config["working_dir"] = str(working_dir)
    return type(source)(
        namespace=source.namespace,
        workspace=source.workspace,
        global_config=config,
        embedding_func=embedding_func,
        meta_fields=source.meta_fields,
    )


async def rebuild(
    rag: LightRAG,
    embedding_func: Any,
    data_dir: Path,
    batch: int,
    progress: Progress,
) -> list[str]:
    """Embed every vector record of ``rag`` again into new stores (closed when done);
    returns the files written, for a local workspace (none for PostgreSQL tables)."""
    shadow = shadow_root(data_dir) if _local(rag) else None
    if shadow is not None:
        shutil.rmtree(shadow / rag.workspace, ignore_errors=True)
    sources = [getattr(rag, attr) for attr in VECTOR_STORES]
    ids = [await _ids(s) for s in sources]
    progress.total = sum(map(len, ids))
    for source, wanted in zip(sources, ids, strict=True):
        target = _target_store(source, embedding_func, shadow)
        await target.initialize()
        try:
            await target.drop()  # rows of an earlier, interrupted reindex
            for start in range(0, len(wanted), batch):
                records = await source.get_by_ids(wanted[start : start + batch])
                await target.upsert({r["id"]: _upsertable(r) for r in records if r})
                progress.done += len(records)
            await target.index_done_callback()
        finally:
            await target.finalize()
    return [_file_of(s) for s in sources] if shadow is not None else []


def finish_switch(data_dir: Path, workspace: str) -> EmbedderId | None:
    """Move a local reindex's files over the workspace's (what a journal names and is still
    there); returns the embedder the journal records, or None without a journal."""
    journal = _journal(data_dir, workspace)
    try:
        recorded = json.loads(journal.read_text())
    except FileNotFoundError:
        return None
    built = shadow_root(data_dir) / workspace
    for name in recorded["files"]:
        if (built / name).exists():
            os.replace(built / name, data_dir / workspace / name)
    return EmbedderId(recorded["model"], int(recorded["dimensions"]))


def _write_journal(data_dir: Path, workspace: str, embedder: EmbedderId, files: list[str]) -> None:
    journal = _journal(data_dir, workspace)
    tmp = journal.with_suffix(".tmp")
    tmp.write_text(json.dumps({**asdict(embedder), "files": files}))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(journal)


def _clean(data_dir: Path, workspace: str) -> None:
    _journal(data_dir, workspace).unlink(missing_ok=True)
    shutil.rmtree(shadow_root(data_dir) / workspace, ignore_errors=True)
    with contextlib.suppress(OSError):  # another workspace's reindex may be using it
        shadow_root(data_dir).rmdir()


async def recover(runtime: RagRuntime) -> None:
    """At start: finish a switch that was under way, drop what an unfinished rebuild left."""
    root = shadow_root(runtime.settings.data_dir)
    if not root.is_dir():
        return
    for journal in root.glob("*.switch.json"):
        workspace = journal.name.removesuffix(".switch.json")
        embedder = finish_switch(runtime.settings.data_dir, workspace)
        if embedder is not None:
            await runtime.registry.set_embedder(workspace, embedder)
            log.warning("workspace %s: finished switching to %s", workspace, embedder)
    shutil.rmtree(root, ignore_errors=True)


async def run(runtime: RagRuntime, progress: Progress) -> None:
    """Rebuild ``progress.workspace``'s vectors with ``progress.target`` (the embedder
    rag-server uses now) and switch to them."""
    settings, factory, workspace = runtime.settings, runtime.factory, progress.workspace
    data_dir = settings.data_dir
    try:
        # the pool's instance (built with the old model; its graph is served meanwhile), held
        # so it is not evicted under the rebuild
        async with runtime.pool.lease(workspace) as rag:
            # its own embedding function (rate-limited like every embedding call) embeds
            # with the current model; only the size it declares is the old one
            embedding_func = replace(
                rag.embedding_func,
                embedding_dim=progress.target.dimensions,
                model_name=progress.target.model,
            )
            files = await rebuild(rag, embedding_func, data_dir, settings.reindex_batch, progress)
        # no instance while switching: the next request opens the new vectors
        async with runtime.pool.exclusive(workspace, factory.close):
            if files:  # local: the files moved in, journaled
                _write_journal(data_dir, workspace, progress.target, files)
                finish_switch(data_dir, workspace)
            await runtime.registry.set_embedder(workspace, progress.target)
            _clean(data_dir, workspace)
        if not files:  # PostgreSQL: the old model's rows are dropped
            old = await factory.build(workspace, embedder=progress.source)
            try:
                for attr in VECTOR_STORES:
                    await getattr(old, attr).drop()
            finally:
                await factory.close(old)
        async with runtime.pool.lease(workspace) as fresh:  # opens with the new vectors
            await clear_query_cache(fresh)
        progress.state = DONE
        log.info(
            "workspace %s: %d vectors rebuilt with %s", workspace, progress.done, progress.target
        )
    except Exception as exc:
        progress.state, progress.error = FAILED, f"{type(exc).__name__}: {exc}"
        log.exception("workspace %s: reindex with %s failed", workspace, progress.target)
        if not _journal(data_dir, workspace).exists():  # not switched: the old index stays
            shutil.rmtree(shadow_root(data_dir) / workspace, ignore_errors=True)
    finally:
        progress.finished = time.time()
        runtime.observe_pool()
