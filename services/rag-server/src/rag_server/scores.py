"""How close each chunk of a search result is to the question (``score``, cosine similarity).

LightRAG drops the vector store's similarities on the way to its result, so the chunks'
vectors are read back. Reading one means decompressing it and building a list of Python
floats (LightRAG's API), which cost a search more than the search itself; recently scored
chunks' vectors are therefore kept as float32 arrays. A chunk's id is the hash of its text
(LightRAG's and the code graph's alike), so its vector depends only on the text and the
embedding model, and both are in the key: nothing kept can go stale.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
from lightrag import LightRAG


class ChunkVectors:
    """Chunk vectors by (workspace, embedding model, chunk id), newest kept, at most
    ``max_bytes`` of them."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._kept: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._bytes = 0

    async def get(
        self, rag: LightRAG, workspace: str, model: str, ids: list[str]
    ) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for chunk_id in dict.fromkeys(ids):
            vector = self._kept.get((workspace, model, chunk_id))
            if vector is None:
                missing.append(chunk_id)
            else:
                self._kept.move_to_end((workspace, model, chunk_id))
                found[chunk_id] = vector
        if missing:
            read = await rag.chunks_vdb.get_vectors_by_ids(missing)
            for chunk_id, values in read.items():
                vector = np.asarray(values, dtype=np.float32)
                found[chunk_id] = vector
                self._keep((workspace, model, chunk_id), vector)
        return found

    def _keep(self, key: tuple[str, str, str], vector: np.ndarray) -> None:
        if vector.nbytes > self.max_bytes:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._kept[key] = vector
        self._bytes += vector.nbytes
        while self._bytes > self.max_bytes:
            _, dropped = self._kept.popitem(last=False)
            self._bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def nbytes(self) -> int:
        return self._bytes


async def score_chunks(
    vectors: ChunkVectors, rag: LightRAG, workspace: str, model: str, result: Any, query: Any
) -> None:
    """Each retrieved chunk's cosine similarity to the query (``score``), whichever mode
    found it, so a client can tell a close match from the best of poor ones."""
    chunks = ((result or {}).get("data") or {}).get("chunks") or []
    ids = [c["chunk_id"] for c in chunks if c.get("chunk_id")]
    if not ids:
        return
    found = await vectors.get(rag, workspace, model, ids)
    q = np.asarray(query, dtype=np.float32)
    q_norm = float(np.linalg.norm(q)) or 1.0
    for c in chunks:
        v = found.get(c.get("chunk_id") or "")
        if v is not None and len(v) == len(q):
            c["score"] = round(float(v @ q) / ((float(np.linalg.norm(v)) or 1.0) * q_norm), 4)
