"""The Spark's memory budget as a computed fact (sparkstack_common.memory_budget): the catalog
states each model's weights and attention shape and each server's settings; everything loaded
must fit the unified memory with the stated margin, and the table in docs/spark.md is the one
the computation prints."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from sparkstack_common.catalog import Catalog
from sparkstack_common.memory_budget import (
    all_loaded,
    gib,
    kv_cache_gib,
    markdown,
    model_resident_gib,
    server_worst_case,
    working_set,
)

ROOT = Path(__file__).resolve().parents[2]
CATALOG = Catalog.load()


def test_everything_loaded_fits_the_spark_with_the_margin() -> None:
    worst = all_loaded(CATALOG)
    assert worst.fits, (
        f"{worst.total_gib:.1f} GiB of {worst.unified_gib} with everything loaded leaves "
        f"{worst.free_gib:.1f} GiB, under the {worst.margin:.0%} margin"
    )
    # the large server holds one model at a time: the worst case is the heavier of the two
    large = next(s for s in worst.servers if s.server == "ollama-large")
    assert large.loaded == ("coding",)
    assert working_set(CATALOG).total_gib < worst.total_gib


def test_the_kv_cache_is_what_the_review_computed() -> None:
    """Independent figures from the review: deepseek-r1:32b keeps ~16 GiB of f16 KV cache at
    65,536 tokens, qwen3:8b ~4.5 GiB at 32,768; q8_0 halves them (34 bytes per 32 values)."""
    f16 = Catalog.load(
        (ROOT / "services/common/src/sparkstack_common/catalog.toml")
        .read_text()
        .replace('kv_cache_type = "q8_0"', 'kv_cache_type = "f16"')
    )
    large, small = f16.server("ollama-large"), f16.server("ollama-small")
    assert kv_cache_gib(f16.role("reasoning"), 65536, large) == pytest.approx(16.0)
    one_sequence = dataclasses.replace(small, num_parallel=1)
    assert kv_cache_gib(f16.role("extract"), 32768, one_sequence) == pytest.approx(4.5)
    q8 = CATALOG.server("ollama-large")
    assert kv_cache_gib(CATALOG.role("reasoning"), 65536, q8) == pytest.approx(16.0 * 34 / 64)


def test_the_old_layout_would_not_fit() -> None:
    """Both large models resident (a server each, or one server loading two) is what the
    review warned of: the computation must reject it, or it would not protect anything."""
    text = (ROOT / "services/common/src/sparkstack_common/catalog.toml").read_text()
    both = Catalog.load(text.replace("max_loaded_models = 1", "max_loaded_models = 2", 1))
    worst = all_loaded(both)
    assert not worst.fits
    assert next(s for s in worst.servers if s.server == "ollama-large").loaded == (
        "coding",
        "reasoning",
    )


def test_each_server_limit_holds_its_worst_case() -> None:
    """Weights are memory-mapped and count against the pod's memory limit: a limit under what
    the server holds fully loaded would kill it at the first request that loads the model."""
    for server in CATALOG.servers:
        worst = server_worst_case(CATALOG, server)
        assert gib(server.memory_limit) >= worst.gib, f"{server.name}: {worst}"
        assert gib(server.memory_request) <= gib(server.memory_limit)


def test_every_ollama_model_has_its_memory_facts() -> None:
    for m in CATALOG.models:
        if m.source == "ollama":
            assert model_resident_gib(CATALOG, m) > (m.weights_gb or 0) * 1e9 / 2**30


def test_docs_carry_the_computed_table() -> None:
    """docs/spark.md shows the table `python -m sparkstack_common.memory_budget` prints."""
    text = (ROOT / "docs/spark.md").read_text()
    found = re.search(
        r"<!-- memory-budget: generated.*?-->\n(.*?)<!-- /memory-budget -->", text, re.S
    )
    assert found, "docs/spark.md has no generated memory-budget block"
    assert found.group(1) == markdown(CATALOG), (
        "the budget changed: paste `uv run python -m sparkstack_common.memory_budget` into "
        "docs/spark.md"
    )
