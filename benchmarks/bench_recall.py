"""The recall tier with the embedded embedding model: facts stated in one session, asked in a
later one of the same workspace.

    uv run python benchmarks/bench_recall.py [--facts 40]

`sparkstack up` runs with the embedded embedder and the test suite's fake model for chat and
summaries (its summary of a session repeats what the user said, so what is measured is the
recall tier's retrieval, not a model's summarising). Every session is promoted after one
turn (``ORCHESTRATOR_PROMOTE_AFTER_TURNS=1``) and the tier's similarity floor is off
(``ORCHESTRATOR_RECALL_MIN_SIMILARITY=-1``) so the ranking itself is measured. For each fact,
a new session asks about it in other words; recall@3 is the share of questions whose recall
block (top 3, as the model received it: the assistant turn's memory record) holds the
session that stated the fact. Also printed: how many of those would pass the default floor
of 0.55 (cosines from the same embedder), which says whether the default suits this
embedder. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from local_stack import local_stack
from sparkstack.embedder import MODEL as EMBEDDED_MODEL
from sparkstack_testing.serve import serve_asgi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import catalog_fake

THINGS = [
    ("deploy key", "rotates every thirteen days", "How often does the deploy key change?"),
    ("staging database", "lives in the Frankfurt region", "Where is the staging database?"),
    ("billing cron job", "runs at 02:30 UTC", "When does the billing cron run?"),
    ("search index", "is rebuilt from the warehouse on Sundays", "When is search rebuilt?"),
    ("mobile app", "talks to the v3 gateway only", "Which gateway does the mobile app use?"),
    ("log retention", "is ninety days for audit logs", "How long are audit logs kept?"),
    ("CI runners", "use sixteen gigabytes of memory", "How much memory do CI runners get?"),
    ("feature flags", "are stored in the Redis cluster", "Where are feature flags kept?"),
    ("image registry", "is mirrored to the office NAS", "Where is the registry mirrored?"),
    ("payment retries", "stop after five attempts", "How many times are payments retried?"),
]
PROJECTS = ["Aster", "Birch", "Cedar", "Dahlia", "Elm", "Fern", "Gorse", "Hazel"]


def facts(n: int) -> list[tuple[str, str]]:
    """(statement, question) pairs: the same kinds of fact for several projects."""
    out = []
    for i in range(n):
        thing, what, question = THINGS[i % len(THINGS)]
        project = PROJECTS[(i // len(THINGS)) % len(PROJECTS)]
        out.append(
            (
                f"Note for later: in project {project}, the {thing} {what}.",
                f"{question[:-1]} in project {project}?",
            )
        )
    return out


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def summaries(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(DISTINCT session_id) FROM summaries")
    finally:
        await conn.close()


def main() -> None:
    import asyncio

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--facts", type=int, default=40)
    args = ap.parse_args()
    pairs = facts(args.facts)
    with tempfile.TemporaryDirectory() as tmp, serve_asgi(catalog_fake().app) as fake_url:
        with local_stack(
            Path(tmp),
            f"{fake_url}/v1",
            ORCHESTRATOR_PROMOTE_AFTER_TURNS="1",
            ORCHESTRATOR_RECALL_MIN_SIMILARITY="-1",
        ) as stack:
            data, api = stack.data, stack.api
            key = stack.run("keys", "admin").stdout.strip()
            auth = {"Authorization": f"Bearer {key}"}
            state = json.loads((data / "stack.json").read_text())
            dsn = state["infrastructure"]["postgres"]
            embed_key = (data / "secrets" / "embedder.key").read_text().strip()
            embed_url = state["embedding"]["url"]
            with httpx.Client(base_url=api, headers=auth, timeout=120) as client:

                def chat(session: str, text: str) -> dict:
                    r = client.post(
                        "/v1/chat/completions",
                        json={
                            "model": "qwen3-coder",
                            "workspace": "mem",
                            "messages": [{"role": "user", "content": text}],
                        },
                        headers={"x-session-id": session},
                    )
                    r.raise_for_status()
                    return r.json()

                for i, (statement, _) in enumerate(pairs):
                    chat(f"tell-{i}", statement)
                deadline = time.monotonic() + 300
                while asyncio.run(summaries(dsn)) < len(pairs):
                    if time.monotonic() > deadline:
                        raise SystemExit("the sessions were not all promoted in 300 s")
                    time.sleep(0.5)
                hits = floor_hits = 0
                for i, (statement, question) in enumerate(pairs):
                    chat(f"ask-{i}", question)
                    # the turn is written after the answer: wait for it
                    for _ in range(200):
                        shown = client.get(f"/v1/sessions/ask-{i}").json()
                        if len(shown.get("messages") or []) >= 2:
                            break
                        time.sleep(0.05)
                    record = shown["messages"][-1].get("memory") or {}
                    items = record.get("tiers", {}).get("recall", {}).get("items", [])[:3]
                    found = [it for it in items if statement.split(": ", 1)[1][:40] in it]
                    hits += bool(found)
                    if found:
                        vectors = httpx.post(
                            f"{embed_url}/embeddings",
                            json={"model": EMBEDDED_MODEL, "input": [question, found[0]]},
                            headers={"Authorization": f"Bearer {embed_key}"},
                        ).json()["data"]
                        sim = cosine(vectors[0]["embedding"], vectors[1]["embedding"])
                        floor_hits += sim >= 0.55
            n = len(pairs)
            print(f"recall tier, {n} facts in {n} sessions, asked in {n} later sessions")
            print(f"  recall@3: {hits / n:.3f} ({hits}/{n})")
            print(f"  of those, at or above the default floor 0.55: {floor_hits}/{hits}")


if __name__ == "__main__":
    main()
