"""Search results' scores: the cosine similarity of each chunk to the question, with the
vectors of chunks scored recently kept (bounded) instead of read back each time."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
from rag_server.scores import ChunkVectors, score_chunks


class Store:
    """A vector store's read path: the vectors it holds, and what it was asked for."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors
        self.asked: list[list[str]] = []

    async def get_vectors_by_ids(self, ids: list[str]) -> dict[str, list[float]]:
        self.asked.append(list(ids))
        await asyncio.sleep(0)  # a read takes a turn of the loop, as a real store's does
        return {i: self.vectors[i] for i in ids if i in self.vectors}


def rag(vectors: dict[str, list[float]]) -> Any:
    return SimpleNamespace(chunks_vdb=Store(vectors))


def result(*ids: str) -> dict[str, Any]:
    return {"data": {"chunks": [{"chunk_id": i, "content": i} for i in ids]}}


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.hypot(*a) * math.hypot(*b))


async def test_each_chunk_gets_its_cosine_similarity_to_the_question() -> None:
    vectors = {"c1": [1.0, 0.0, 0.0], "c2": [0.6, 0.8, 0.0], "c3": [0.0, 0.0, 2.0]}
    found = result("c1", "c2", "c3", "gone")
    await score_chunks(ChunkVectors(1 << 20), rag(vectors), "ws", "m", found, [3.0, 4.0, 0.0])
    chunks = {c["chunk_id"]: c for c in found["data"]["chunks"]}
    for i in ("c1", "c2", "c3"):
        assert chunks[i]["score"] == round(cosine(vectors[i], [3.0, 4.0, 0.0]), 4)
    assert chunks["c2"]["score"] == 1.0 and chunks["c3"]["score"] == 0.0
    assert "score" not in chunks["gone"]  # no vector, no score (not a made-up one)


async def test_vectors_scored_once_are_not_read_again() -> None:
    vectors = {"c1": [1.0, 0.0], "c2": [0.3, 0.7]}
    store = rag(vectors)
    kept = ChunkVectors(1 << 20)
    for question in ([1.0, 0.0], [0.0, 1.0], [1.0, 2.0]):
        found = result("c1", "c2")
        await score_chunks(kept, store, "ws", "m", found, question)
        scores = [c["score"] for c in found["data"]["chunks"]]  # from kept vectors too
        assert scores == [round(cosine(vectors[i], question), 4) for i in ("c1", "c2")]
    assert store.chunks_vdb.asked == [["c1", "c2"]]
    # another embedding model's vectors are other vectors; another workspace's store too
    await score_chunks(kept, store, "ws", "other-model", result("c1"), [1.0, 0.0])
    await score_chunks(kept, store, "ws2", "m", result("c2"), [1.0, 0.0])
    assert store.chunks_vdb.asked == [["c1", "c2"], ["c1"], ["c2"]]


async def test_the_kept_vectors_stay_within_their_bytes() -> None:
    dim = 256  # 1 KiB a vector
    vectors = {f"c{i}": list(np.random.default_rng(i).random(dim)) for i in range(10)}
    store = rag(vectors)
    kept = ChunkVectors(4 << 10)
    for i in range(10):
        await kept.get(store, "ws", "m", [f"c{i}"])
    assert len(kept) == 4 and kept.nbytes == 4 << 10
    store.chunks_vdb.asked.clear()
    await kept.get(store, "ws", "m", ["c9", "c0"])  # the newest are kept, the oldest read
    assert store.chunks_vdb.asked == [["c0"]]
    nothing = ChunkVectors(0)  # RAG_SERVER_SCORE_VECTOR_CACHE_MB=0: read every time
    await nothing.get(store, "ws", "m", ["c1"])
    assert len(nothing) == 0 and nothing.nbytes == 0


async def test_a_zero_vector_scores_zero_not_nan() -> None:
    found = result("c1", "zero")
    store = rag({"c1": [1.0, 2.0], "zero": [0.0, 0.0]})
    await score_chunks(ChunkVectors(1 << 20), store, "ws", "m", found, [3.0, 1.0])
    assert [c["score"] for c in found["data"]["chunks"]] == [
        round(cosine([1.0, 2.0], [3.0, 1.0]), 4),
        0.0,
    ]
    found = result("c1")
    await score_chunks(ChunkVectors(1 << 20), store, "ws", "m", found, [0.0, 0.0])
    assert found["data"]["chunks"][0]["score"] == 0.0


async def test_two_searches_reading_one_chunk_at_once_keep_it_once() -> None:
    store = rag({"c1": [0.5] * 256})  # 1 KiB
    kept = ChunkVectors(1 << 10)  # room for exactly one
    await asyncio.gather(kept.get(store, "ws", "m", ["c1"]), kept.get(store, "ws", "m", ["c1"]))
    assert store.chunks_vdb.asked == [["c1"], ["c1"]]  # both missed...
    assert len(kept) == 1 and kept.nbytes == 1 << 10  # ...and it is counted once
    await kept.get(store, "ws", "m", ["c1"])
    assert len(store.chunks_vdb.asked) == 2
