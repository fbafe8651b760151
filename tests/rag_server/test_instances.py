"""The workspace's LightRAG instance: its global config is built once, and again whenever
something it holds changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from lightrag import LightRAG
from lightrag.utils import EmbeddingFunc, Tokenizer
from rag_server.instances import OfflineTokenizer, WorkspaceRAG


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
