"""A streamed query holds its workspace's lease only while it streams: a client that leaves,
at any point, leaves no lease behind (a leaked lease blocks eviction and workspace deletion)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rag_server.app import create_app
from rag_server.settings import Settings
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import RAG_KEY, bearer, serve_asgi

WS = "leases"


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeLLM, str]]:
    llm = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with serve_asgi(llm.app) as url:
        yield llm, url


class ClientGone(OSError):
    pass


async def stream_and_leave(app: Any, leave_at: str) -> list[dict[str, Any]]:
    """One POST /query/stream over raw ASGI whose client goes away: ``before-start`` (the
    server cannot even send the status line), ``after-start`` (gone after the status line)
    or ``disconnect`` (the server hears http.disconnect while it streams)."""
    body = json.dumps({"query": "What does the ZephyrCache store?", "mode": "naive"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"lightrag-workspace", WS.encode()),
        *[(k.lower().encode(), v.encode()) for k, v in bearer(RAG_KEY).items()],
    ]
    spec = "2.3" if leave_at == "disconnect" else "2.4"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/query/stream",
        "raw_path": b"/query/stream",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "state": {},
    }
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if leave_at == "before-start" or (leave_at == "after-start" and sent):
            raise ClientGone("connection reset by peer")
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception:
        pass  # what the server raises at a client that left is not the question here
    return sent


@pytest.mark.parametrize("leave_at", ["before-start", "after-start", "disconnect"])
async def test_a_client_that_leaves_leaves_no_lease(
    fake: tuple[FakeLLM, str], tmp_path: Path, leave_at: str
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        api_key=RAG_KEY,
        llm_base_url=f"{fake[1]}/v1",
        embed_base_url=f"{fake[1]}/v1",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rag") as client:
            headers = {"LIGHTRAG-WORKSPACE": WS, **bearer(RAG_KEY)}
            r = await client.post(
                "/documents/texts",
                json={"texts": ["The ZephyrCache stores session tokens."]},
                headers=headers,
            )
            assert r.status_code == 200, r.text
            pool = app.state.runtime.pool
            # indexing holds the workspace too: wait until it is done
            track = r.json()["track_id"]
            for _ in range(600):
                status = await client.get(f"/documents/track_status/{track}", headers=headers)
                docs = status.json()["documents"]
                if docs and all(d["status"] == "processed" for d in docs) and not pool.leases(WS):
                    break
                await asyncio.sleep(0.1)
            assert pool.leases(WS) == 0
            for _ in range(3):
                await stream_and_leave(app, leave_at)
                await asyncio.sleep(0.05)
                assert pool.leases(WS) == 0
            # and the workspace can be deleted at once (a leaked lease would make this wait)
            deleted = await asyncio.wait_for(
                client.delete(f"/workspaces/{WS}", headers=headers), 10
            )
            assert deleted.status_code in (200, 204), deleted.text
