"""`sparkstack up` on a machine without any model server: it says so, serves embeddings from
the embedded model, and what needs no chat model works: ingesting a codebase (code indexed
from syntax, prose searchable as chunks with its extraction pending), retrieving by meaning,
the graph. A chat is refused at once, saying what to do. When a model server appears, the
pending prose is extracted."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from sparkstack import embedder
from support import catalog_fake, free_port, serve_asgi
from test_end_to_end import processes_of, sparkstack

CODEBASE = {
    "shop/geometry.py": '''
def circle_area(radius: float) -> float:
    """Compute the area of a circle from its radius."""
    return 3.14159 * radius * radius
''',
    "shop/mailer.py": '''
def send_invoice(customer: str, amount: float) -> None:
    """Email the monthly invoice to a customer with the amount they owe."""
    print(f"mail {customer}: {amount}")
''',
    "shop/README.md": """# Shop

The QuillLedger keeps every PaymentRecord of the shop until the auditors sign it off.
""",
    "shop/settings.py": '''
import json


def load_settings(path: str) -> dict:
    """Read the settings file from disk and decode its JSON document."""
    with open(path) as f:
        return json.load(f)
''',
}


def test_no_model_server_at_all(tmp_path: Path) -> None:
    data = tmp_path / "stack"
    names = ("ORCHESTRATOR", "RAG_SERVER", "CODE_PREPROCESSOR", "INGEST_WORKER", "EMBEDDER")
    ports = {name: free_port() for name in (*names, "POSTGRES", "VALKEY", "NATS")}
    env = {f"SPARKSTACK_{k}_PORT": str(v) for k, v in ports.items()}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env["RAG_SERVER_EXTRACTION_RETRY_SECONDS"] = "0.5"  # ask for the model often in a test
    later = free_port()
    nowhere = f"http://127.0.0.1:{later}/v1"  # nothing listens there (yet)
    api = f"http://127.0.0.1:{ports['ORCHESTRATOR']}"
    for path, text in CODEBASE.items():
        (tmp_path / "code" / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "code" / path).write_text(text)

    up = sparkstack(data, env, "up", "--detach", "--backend", nowhere)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"embedded {embedder.MODEL}" in up.stdout  # the banner says which embedder
    try:
        status = sparkstack(data, env, "status", timeout=60)
        assert status.returncode == 0, status.stdout
        assert "embedder" in status.stdout and f"embedded {embedder.MODEL}" in status.stdout
        assert f"no embedding backend answers at {nowhere}" in status.stdout

        ingest = sparkstack(data, env, "ingest", str(tmp_path / "code"), "--workspace", "shop")
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        # code needs no chat model; the prose is searchable, its extraction pending
        assert f"completed: {len(CODEBASE)} added" in ingest.stdout
        jobs = sparkstack(data, env, "jobs", "list", "--workspace", "shop", "--json").stdout
        assert {j["status"] for j in json.loads(jobs)["data"]} == {"completed"}

        admin = sparkstack(data, env, "keys", "admin").stdout.strip()
        auth = {"Authorization": f"Bearer {admin}"}
        # retrieval by meaning: the question shares few words with the code, many with its
        # docstring
        r = httpx.post(
            f"{api}/v1/workspaces/shop/retrieve",
            json={"query": "email a customer the invoice they owe", "mode": "naive", "top_k": 3},
            headers=auth,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        chunks = r.json()["chunks"]
        assert chunks and chunks[0]["source"] == "shop/mailer.py", chunks
        scores = [c["score"] for c in chunks]  # the similarity to the question, best first
        assert all(isinstance(x, float) for x in scores) and scores[0] == max(scores)
        graph = httpx.get(
            f"{api}/v1/workspaces/shop/graph", params={"label": "*"}, headers=auth, timeout=60
        )
        assert graph.status_code == 200 and "send_invoice" in graph.text

        prose = httpx.post(
            f"{api}/v1/workspaces/shop/retrieve",
            json={"query": "who keeps the payment records", "mode": "naive", "top_k": 3},
            headers=auth,
            timeout=60,
        ).json()["chunks"]
        assert any("QuillLedger" in c["content"] for c in prose), prose
        labels = f"{api}/v1/workspaces/shop/graph/labels?q=QuillLedger"
        assert "QuillLedger" not in httpx.get(labels, headers=auth, timeout=60).text

        client = openai.OpenAI(base_url=f"{api}/v1", api_key=admin, max_retries=0)
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(
                model="qwen3-coder", messages=[{"role": "user", "content": "hi"}], timeout=30
            )
        assert refused.value.status_code == 502
        assert nowhere in refused.value.message and "sparkstack up --backend" in (
            refused.value.message
        )

        # a model server appears where the stack was told to look: the prose is extracted
        with serve_asgi(catalog_fake().app, port=later):
            deadline = time.monotonic() + 120
            while "QuillLedger" not in httpx.get(labels, headers=auth, timeout=60).text:
                assert time.monotonic() < deadline, "the pending prose was never extracted"
                time.sleep(0.5)

            # embeddings from the model server from now on: the workspace built with the
            # embedded model is refused, saying how to go on, until it is reindexed
            assert sparkstack(data, env, "down", timeout=120).returncode == 0
            again = sparkstack(
                data, env, "up", "--detach", "--backend", nowhere, "--embedder", "backend"
            )
            assert again.returncode == 0, again.stdout + again.stderr
            question = {"query": "email a customer the invoice they owe", "mode": "naive"}
            retrieve = f"{api}/v1/workspaces/shop/retrieve"
            refused = httpx.post(retrieve, json=question, headers=auth, timeout=60)
            assert refused.status_code == 409, refused.text
            assert "sparkstack workspaces reindex shop" in refused.json()["error"]["message"]
            reindex = sparkstack(data, env, "workspaces", "reindex", "shop", timeout=300)
            assert reindex.returncode == 0, reindex.stdout + reindex.stderr
            assert "reindexed with qwen3-embedding" in reindex.stdout, reindex.stdout
            found = httpx.post(retrieve, json=question, headers=auth, timeout=60)
            assert found.status_code == 200, found.text
            assert found.json()["chunks"][0]["source"] == "shop/mailer.py", found.json()
            assert "QuillLedger" in httpx.get(labels, headers=auth, timeout=60).text
    finally:
        down = sparkstack(data, env, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_of(data) == []
