"""The code-preprocessor over real HTTP: /parse, /parse/batch, /ingest and the service routes.

rag-server is stood in for by a recorder of what it receives until the rag-server issue lands;
the ingest contract it checks (paths, headers, body) is the one rag-server implements.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from code_preprocessor.app import create_app
from code_preprocessor.settings import Settings
from fastapi import FastAPI, Request
from support import PREPROCESSOR_KEY, RAG_KEY, bearer, free_port, serve_asgi

PY = b"import os\n\nclass Store(Base):\n    def get(self, key):\n        return os.environ[key]\n"
GO = b'package main\n\nimport "fmt"\n\nfunc main() {\n\tfmt.Println("hi")\n}\n'


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "ok"}

        self.code: list[dict[str, Any]] = []

        @self.app.post("/documents/code")
        async def code(request: Request) -> dict[str, Any]:
            body = await request.json()
            for document in body["documents"]:
                self.code.append(
                    {
                        "workspace": request.headers.get("LIGHTRAG-WORKSPACE"),
                        "authorization": request.headers.get("authorization"),
                        **document,
                    }
                )
            return {
                "documents": [
                    {"doc_id": d["doc_id"], "status": "success", "track_id": f"code-{d['doc_id']}"}
                    for d in body["documents"]
                ]
            }

        @self.app.post("/documents/texts")
        async def texts(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.calls.append(
                {
                    "workspace": request.headers.get("LIGHTRAG-WORKSPACE"),
                    "authorization": request.headers.get("authorization"),
                    **body,
                }
            )
            return {"status": "success", "track_id": f"track-{len(self.calls)}"}


@pytest.fixture(scope="module")
def rag() -> Iterator[tuple[Recorder, str]]:
    recorder = Recorder()
    with serve_asgi(recorder.app) as url:
        yield recorder, url


@pytest.fixture(scope="module")
def service(rag: tuple[Recorder, str]) -> Iterator[str]:
    settings = Settings(
        workers=2,
        max_file_bytes=4096,
        rag_server_url=rag[1],
        ingest_batch_size=3,
        api_key=PREPROCESSOR_KEY,
        rag_server_api_key=RAG_KEY,
    )
    with serve_asgi(create_app(settings)) as url:
        yield url


@pytest.fixture
def client(service: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service, timeout=60, headers=bearer(PREPROCESSOR_KEY)) as c:
        yield c


def test_parse_one_file(client: httpx.Client) -> None:
    r = client.post("/parse", files={"file": ("src/store.py", PY)})
    assert r.status_code == 200
    body = r.json()
    assert body["path"] == "src/store.py" and body["language"] == "python"
    assert [s["qualname"] for s in body["symbols"]] == ["Store", "Store.get"]
    assert "".join(c["text"] for c in body["chunks"]) == PY.decode()
    assert body["overview"]["kind"] == "overview"


def test_parse_errors(client: httpx.Client) -> None:
    r = client.post("/parse", files={"file": ("photo.jpg", b"\xff\xd8")})
    assert r.status_code == 400 and "unsupported" in r.json()["detail"]
    r = client.post("/parse", files={"file": ("big.py", b"x = 1\n" * 1000)})
    assert r.status_code == 413 and "4096" in r.json()["detail"]
    r = client.post("/parse", files={"file": ("bad.pdf", b"%PDF-1.4 broken")})
    assert r.status_code == 422 and "unreadable PDF" in r.json()["detail"]
    r = client.post("/parse", files={"file": ("blob.py", b"\x00\x01")})
    assert r.status_code == 200 and r.json()["status"] == "skipped"
    assert r.json()["reason"] == "binary: contains NUL bytes"
    r = client.post("/parse", files={"file": ("empty.py", b"")})
    assert r.json()["status"] == "skipped" and r.json()["reason"] == "empty"
    r = client.post("/parse", files={"file": ("x.py", PY)}, data={"path": "other/name.py"})
    assert r.json()["path"] == "other/name.py"


def test_batch_parses_good_files_and_reports_bad_ones(client: httpx.Client) -> None:
    files = [
        ("files", ("a/store.py", PY)),
        ("files", ("b/notes.md", b"# Notes\n\nSome text.\n")),
        ("files", ("c/blob.py", b"\x00")),
        ("files", ("d/huge.py", b"#" * 5000)),
        ("files", ("e/image.gif", b"GIF89a")),
        ("files", ("f/latin.py", b"s = '\xe9'\n")),
        ("files", ("g/broken.py", b"def f(:\n")),
        ("files", ("h/bad.pdf", b"%PDF nope")),
        ("files", ("i/empty.rs", b"")),
    ]
    r = client.post("/parse/batch", files=files)
    assert r.status_code == 200
    by = {f["path"]: f for f in r.json()["files"]}
    assert by["a/store.py"]["status"] == "ok" and by["b/notes.md"]["status"] == "ok"
    assert by["c/blob.py"]["reason"] == "binary: contains NUL bytes"
    assert by["d/huge.py"]["status"] == "skipped" and "too large" in by["d/huge.py"]["reason"]
    assert by["e/image.gif"]["reason"] == "unsupported: .gif"
    assert "decode-replaced" in by["f/latin.py"]["flags"]
    assert "syntax-error" in by["g/broken.py"]["flags"] and by["g/broken.py"]["chunks"]
    assert by["h/bad.pdf"]["status"] == "error"
    assert by["i/empty.rs"]["reason"] == "empty"
    summary = r.json()["summary"]
    assert summary["files"] == 9 and summary["ok"] == 4


def test_ingest_sends_code_as_a_graph_and_prose_as_texts(
    client: httpx.Client, rag: tuple[Recorder, str]
) -> None:
    recorder, _ = rag
    recorder.calls.clear()
    recorder.code.clear()
    files = [
        ("files", ("src/store.py", PY)),
        ("files", ("cmd/main.go", GO)),
        ("files", ("README.md", b"# Store\n\nA key value store.\n")),
        ("files", ("bin/tool.exe", b"MZ\x00")),
    ]
    r = client.post("/ingest", files=files, headers={"X-Workspace": "proj-a"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["workspace"] == "proj-a"
    by = {f["path"]: f for f in body["files"]}
    assert by["bin/tool.exe"]["status"] == "skipped" and by["bin/tool.exe"]["sent"] == 0
    # every call carried rag-server's key and the workspace
    calls = recorder.calls + recorder.code
    assert {c["authorization"] for c in calls} == {f"Bearer {RAG_KEY}"}
    assert {c["workspace"] for c in calls} == {"proj-a"}
    # prose is extracted by LightRAG: sent as texts
    texts = {
        src: text
        for c in recorder.calls
        for src, text in zip(c["file_sources"], c["texts"], strict=True)
    }
    assert set(texts) == {"README.md#L1-L3"}
    # code goes in as a graph: the code itself in chunks, symbols named <path>:<qualname>
    code = {d["file_path"]: d for d in recorder.code}
    assert set(code) == {"src/store.py", "cmd/main.go"}
    store = code["src/store.py"]
    assert [d["doc_id"] for d in recorder.code if d["file_path"] == "src/store.py"] == by[
        "src/store.py"
    ]["doc_ids"]
    assert any("return os.environ[key]" in c for c in store["chunks"])
    names = {e["name"]: e["type"] for e in store["entities"]}
    assert names == {
        "src/store.py": "module",
        "src/store.py:Store": "class",
        "src/store.py:Store.get": "method",
    }
    assert {(r["source"], r["target"], tuple(r["kinds"])) for r in store["relations"]} == {
        ("src/store.py", "src/store.py:Store", ("contains",)),
        ("src/store.py:Store", "src/store.py:Store.get", ("contains",)),
    }
    # what the worker links across files: the references as written
    assert by["src/store.py"]["graph"]["refs"] == [["extends", "Store", "Base"]]
    assert by["README.md"].get("graph") is None
    # stable: the same content in the same workspace gets the same document ids
    again = client.post("/ingest", files=files[:1], headers={"X-Workspace": "proj-a"}).json()
    assert again["files"][0]["doc_ids"] == by["src/store.py"]["doc_ids"]
    other = client.post("/ingest", files=files[:1], headers={"X-Workspace": "proj-b"}).json()
    assert set(other["files"][0]["doc_ids"]).isdisjoint(by["src/store.py"]["doc_ids"])


def test_ingest_default_and_invalid_workspace(
    client: httpx.Client, rag: tuple[Recorder, str]
) -> None:
    recorder, _ = rag
    recorder.calls.clear()
    recorder.code.clear()
    r = client.post("/ingest", files=[("files", ("a.py", PY))])
    assert r.status_code == 200 and r.json()["workspace"] == "default"
    assert recorder.code[-1]["workspace"] == "default"
    for bad in ("a b", "x" * 65, "../etc", "a.b", "na%C3%AFve"):
        r = client.post("/ingest", files=[("files", ("a.py", PY))], headers={"X-Workspace": bad})
        assert r.status_code == 400, bad
        assert "invalid workspace" in r.json()["detail"]


def test_ingest_with_rag_server_down_is_502_naming_it() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = Settings(workers=0, rag_server_url=dead, api_key=PREPROCESSOR_KEY)
    with serve_asgi(create_app(settings)) as url:
        r = httpx.post(
            f"{url}/ingest",
            files=[("files", ("a.py", PY))],
            headers=bearer(PREPROCESSOR_KEY),
            timeout=30,
        )
        assert r.status_code == 502
        body = r.json()
        assert "rag-server unreachable" in body["detail"] and dead in body["detail"]
        assert body["files"][0]["sent"] == 0 and body["files"][0]["documents"] > 0
        ready = httpx.get(f"{url}/ready", headers=bearer(PREPROCESSOR_KEY)).json()
        assert ready["checks"]["parser"]["ok"] is True
        assert "not reachable" in ready["checks"]["rag-server"]["detail"]


def test_every_route_but_the_probes_needs_the_key(service: str) -> None:
    routes = [
        ("POST", "/parse", {"files": {"file": ("a.py", PY)}}),
        ("POST", "/parse/batch", {"files": [("files", ("a.py", PY))]}),
        ("POST", "/ingest", {"files": [("files", ("a.py", PY))]}),
        ("GET", "/docs", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/metrics", {}),
    ]
    for wrong in ({}, bearer("not-the-key"), bearer(RAG_KEY)):
        for method, path, extra in routes:
            r = httpx.request(method, f"{service}{path}", headers=wrong, timeout=30, **extra)
            assert r.status_code == 401, (method, path, wrong)
    assert httpx.get(f"{service}/health").status_code == 200
    ready = httpx.get(f"{service}/ready")
    assert ready.status_code == 200
    assert all(set(check) == {"ok"} for check in ready.json()["checks"].values())


def test_service_routes(client: httpx.Client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["rag-server"]["ok"] is True
    client.post("/parse", files={"file": ("m.py", PY)})
    metrics = client.get("/metrics").text
    assert 'preprocessor_files_total{language="python",status="ok"}' in metrics


def test_ingest_reaches_the_real_rag_server(tmp_path_factory: pytest.TempPathFactory) -> None:
    from sparkstack_testing.fake_llm import create_fake_llm
    from support import rag_server

    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    source = (
        b"class PaymentGateway:\n"
        b"    def charge(self, card):\n"
        b"        return LedgerService().record(card)\n"
    )
    with (
        serve_asgi(fake.app) as fake_url,
        rag_server(fake_url, tmp_path_factory.mktemp("rag")) as rag_url,
        serve_asgi(
            create_app(
                Settings(
                    workers=1,
                    rag_server_url=rag_url,
                    api_key=PREPROCESSOR_KEY,
                    rag_server_api_key=RAG_KEY,
                )
            )
        ) as url,
    ):
        r = httpx.post(
            f"{url}/ingest",
            files=[("files", ("billing/gateway.py", source))],
            headers={"X-Workspace": "billing", **bearer(PREPROCESSOR_KEY)},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        track = r.json()["files"][0]["track_ids"][0]
        headers = {"LIGHTRAG-WORKSPACE": "billing", **bearer(RAG_KEY)}
        for _ in range(300):
            status = httpx.get(f"{rag_url}/documents/track_status/{track}", headers=headers)
            docs = status.json()["documents"]
            if all(d["status"] == "processed" for d in docs):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(status.text)
        data = httpx.post(
            f"{rag_url}/query/data",
            json={"query": "How does PaymentGateway charge a card?", "mode": "hybrid"},
            headers=headers,
            timeout=60,
        ).json()["data"]
        chunks = " ".join(c["content"] for c in data["chunks"])
        assert "return LedgerService().record(card)" in chunks  # the code itself is indexed
        assert "billing/gateway.py" in {c["file_path"].split("#")[0] for c in data["chunks"]}
        assert "billing/gateway.py:PaymentGateway" in {e["entity_name"] for e in data["entities"]}
        # code was indexed from syntax: the one chat call is the hybrid query's keywords
        assert fake.count("chat") == 1
