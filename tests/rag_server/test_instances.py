"""The workspace's LightRAG instance: its global config is built once, and again whenever
something it holds changes; LightRAG's tokenizer jobs run without a thread hop."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import lightrag.utils
import numpy as np
import pytest
from lightrag import LightRAG
from lightrag.constants import TOKENIZER_SUBMIT_LIMIT
from lightrag.utils import EmbeddingFunc, Tokenizer, acount_tokens, run_in_tokenizer_executor
from rag_server.instances import OfflineTokenizer, WorkspaceRAG, tokenize_inline


async def embed(texts: list[str], **_: object) -> np.ndarray:
    return np.ones((len(texts), 8), dtype=np.float32)


async def chat(*_: object, **__: object) -> str:
    return ""


def instance(tmp_path: Path) -> WorkspaceRAG:
    return WorkspaceRAG(
        working_dir=str(tmp_path),
        workspace="ws",
        llm_model_func=chat,
        embedding_func=EmbeddingFunc(embedding_dim=8, max_token_size=512, func=embed),
        tokenizer=Tokenizer("sparkstack", OfflineTokenizer()),
    )


async def test_the_config_is_what_lightrag_builds_and_follows_changes(tmp_path: Path) -> None:
    rag = instance(tmp_path)
    fresh = LightRAG._build_global_config(rag)
    first, second = rag._build_global_config(), rag._build_global_config()
    assert first is not second  # each caller its own dict
    assert first.keys() == fresh.keys()
    for key in ("chunk_token_size", "workspace", "addon_params", "top_k", "working_dir"):
        assert first[key] == fresh[key], key
    assert first["tokenizer"] is rag.tokenizer
    assert first["role_llm_funcs"] == fresh["role_llm_funcs"]
    first["top_k"] = -1  # a caller changing its copy changes nobody else's
    assert rag._build_global_config()["top_k"] == fresh["top_k"]

    rag.top_k = 99  # an attribute set: built again
    assert rag._build_global_config()["top_k"] == 99
    rag.addon_params["language"] = "French"  # changed in place: LightRAG marks it dirty
    assert rag._build_global_config()["addon_params"]["language"] == "French"


async def test_lightrags_tokenizer_jobs_run_in_the_callers_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The LightRAG in uv.lock, through its own helpers: once rag-server has taken over its
    tokenizer pool, a job runs in the event loop's thread (no hop to a worker), its result
    and its errors reach the caller, and the submission limit is given back every time."""
    monkeypatch.setattr(lightrag.utils, "_TOKENIZER_EXECUTOR", None)  # as at start-up
    tokenize_inline()
    tokenize_inline()  # twice is the same
    ran_in: list[int] = []

    def job(x: int) -> int:
        ran_in.append(threading.get_ident())
        return x * 2

    results = [await run_in_tokenizer_executor(job, i) for i in range(3 * TOKENIZER_SUBMIT_LIMIT)]
    assert results == [i * 2 for i in range(3 * TOKENIZER_SUBMIT_LIMIT)]
    assert set(ran_in) == {threading.get_ident()}
    tokenizer = Tokenizer("sparkstack", OfflineTokenizer())
    counts = await asyncio.gather(*(acount_tokens(tokenizer, "fooBar baz") for _ in range(50)))
    assert counts == [3] * 50  # foo, Bar, baz

    def broken() -> None:
        raise ValueError("tokenizer broke")

    with pytest.raises(ValueError, match="tokenizer broke"):
        await run_in_tokenizer_executor(broken)
    assert await run_in_tokenizer_executor(job, 21) == 42
