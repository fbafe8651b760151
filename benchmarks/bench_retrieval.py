"""Retrieval quality with the embedded embedding model, on a codebase nobody here wrote.

    uv run python benchmarks/bench_retrieval.py                 # the httpx package of this venv
    uv run python benchmarks/bench_retrieval.py --package click --modes naive,mix

`sparkstack up` runs with the embedded embedder (no model server for embeddings) and the
test suite's fake model for chat, which only matters to the graph modes (their keyword
extraction); the package is ingested with `sparkstack ingest` (code indexed from syntax).
Then, for each documented public function, the first sentence of its docstring is the
question, and the chunk that holds the function (its file, ``def <name>``) is the answer:
recall@5 (the answer among the first five chunks) and MRR (the mean of 1/rank, 0 when it is
not returned) per retrieval mode, through the orchestrator's
``POST /v1/workspaces/{ws}/retrieve``. Figures are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from local_stack import local_stack
from sparkstack_testing.fake_llm import create_fake_llm
from sparkstack_testing.serve import serve_asgi

SENTENCE = re.compile(r"^(.+?[.!?])(\s|$)", re.S)


@dataclass(frozen=True)
class Question:
    text: str
    path: str  # relative to the package directory, as ingested
    function: str


def questions(package_dir: Path, limit: int) -> list[Question]:
    found: list[Question] = []
    for file in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8", errors="replace"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node)
            if node.name.startswith("_") or not doc:
                continue
            first = SENTENCE.match(" ".join(doc.split()))
            text = first.group(1) if first else " ".join(doc.split())
            if len(text) >= 20:
                found.append(Question(text, str(file.relative_to(package_dir)), node.name))
    return found[:limit]


def rank(chunks: list[dict], q: Question) -> int | None:
    """1-based rank of the first chunk holding ``q``'s function, or None."""
    pattern = re.compile(rf"\bdef {re.escape(q.function)}\s*\(")
    for i, chunk in enumerate(chunks, 1):
        source = (chunk.get("source") or "").replace("\\", "/")
        if source.endswith(q.path) and pattern.search(chunk.get("content") or ""):
            return i
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--package", default="httpx", help="an installed package (default httpx)")
    ap.add_argument("--modes", default="naive,local,global,hybrid,mix")
    ap.add_argument("--limit", type=int, default=400, help="at most this many questions")
    args = ap.parse_args()
    spec = importlib.util.find_spec(args.package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"{args.package} is not installed here")
    package_dir = Path(spec.origin).parent
    asked = questions(package_dir, args.limit)
    print(f"{args.package}: {len(asked)} documented public functions in {package_dir}")

    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=[])
    with tempfile.TemporaryDirectory() as tmp, serve_asgi(fake.app) as fake_url:
        with local_stack(Path(tmp), f"{fake_url}/v1") as stack:
            api = stack.api
            started = time.monotonic()
            ingest = stack.run("ingest", str(package_dir), "--workspace", "bench")
            print(f"ingested in {time.monotonic() - started:.1f} s: {ingest.stdout.strip()[-200:]}")
            key = stack.run("keys", "admin").stdout.strip()
            auth = {"Authorization": f"Bearer {key}"}
            print(f"{'mode':<8} {'recall@5':>9} {'MRR':>7} {'questions':>10} {'ms/query':>9}")
            with httpx.Client(base_url=api, headers=auth, timeout=120) as client:
                for mode in args.modes.split(","):
                    hits, reciprocal, took = 0, 0.0, 0.0
                    for q in asked:
                        t = time.perf_counter()
                        r = client.post(
                            "/v1/workspaces/bench/retrieve",
                            json={"query": q.text, "mode": mode, "top_k": 5},
                        )
                        took += time.perf_counter() - t
                        r.raise_for_status()
                        found = rank(r.json()["chunks"][:5], q)
                        hits += found is not None
                        reciprocal += 1 / found if found else 0.0
                    n = max(len(asked), 1)
                    print(
                        f"{mode:<8} {hits / n:>9.3f} {reciprocal / n:>7.3f} {len(asked):>10} "
                        f"{took / n * 1000:>9.1f}"
                    )


if __name__ == "__main__":
    main()
