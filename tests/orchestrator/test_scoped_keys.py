"""Scoped keys end to end: two keys, two workspaces, one orchestrator (and a second replica on
the same database), real PostgreSQL, Valkey, NATS and rag-server. Each key sees and touches
only its own workspace; everything else looks exactly like something that does not exist."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import openai
import pytest
from orchestrator.app import create_app
from orchestrator.settings import Settings
from sparkstack_common.ingestion.contract import QueueSettings
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import ADMIN_KEY, RAG_KEY, bearer, fresh_database, index_texts, rag_server, serve_asgi

ADMIN = bearer(ADMIN_KEY)
KNOWLEDGE = {
    "ws-a": "The AlphaVault keeps the signing keys of team A in a sealed enclave.",
    "ws-b": "The BetaHarbor ships team B's container images every night at two.",
}


@pytest.fixture(scope="module")
def rag(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    with (
        serve_asgi(fake.app) as fake_url,
        rag_server(fake_url, tmp_path_factory.mktemp("k")) as url,
    ):
        index_texts(url, KNOWLEDGE)
        yield url


@pytest.fixture(scope="module")
async def dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_dsn, "keys") as name:
        yield name


@pytest.fixture(scope="module")
def settings(
    llm: tuple[FakeLLM, str], dsn: str, redis_url: str, nats_url: str, rag: str
) -> Settings:
    backend = f"{llm[1]}/v1"
    suffix = uuid.uuid4().hex[:8]
    return Settings(
        **{f"{role}_url": backend for role in ("coding", "reasoning", "extract", "embed")},
        postgres_dsn=dsn,
        redis_url=redis_url,
        nats_url=nats_url,
        queue=QueueSettings(stream=f"KEYS_{suffix}", subject_prefix=f"keys{suffix}.ingest"),
        rag_server_url=rag,
        rag_server_api_key=RAG_KEY,
        admin_key=ADMIN_KEY,
        recall_min_similarity=0.05,
        archival_deadline_ms=3000,
        recall_deadline_ms=3000,
        working_deadline_ms=2000,
    )


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[str]:
    with serve_asgi(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def replica(settings: Settings, api: str) -> Iterator[str]:
    """A second orchestrator on the same database, as a second pod would be."""
    with serve_asgi(create_app(settings)) as url:
        yield url


def create_key(api: str, name: str, workspaces: list[str], admin: bool = False) -> str:
    r = httpx.post(
        f"{api}/v1/keys",
        json={"name": name, "workspaces": workspaces, "admin": admin},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    return r.json()["key"]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def chat(api: str, key: str, content: str, **extra: Any) -> httpx.Response:
    body = {"model": "qwen3-coder", "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{api}/v1/chat/completions", json=body, headers=bearer(key), timeout=60)


def upload(api: str, key: str, text: bytes, **fields: str) -> httpx.Response:
    return httpx.post(
        f"{api}/v1/documents/ingest",
        files={"file": ("notes.md", text)},
        data=fields,
        headers=bearer(key),
        timeout=60,
    )


def wait_session(api: str, key: str, session: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        r = httpx.get(f"{api}/v1/sessions/{session}", headers=bearer(key))
        if r.status_code == 200:
            return r.json()
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)


def get(api: str, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{api}{path}", params=params, headers=bearer(key), timeout=30)


def same_404(a: httpx.Response, b: httpx.Response, own_id: str, other_id: str) -> None:
    """Two 404s a client cannot tell apart (once each answer's own id is masked)."""
    assert a.status_code == b.status_code == 404
    ea, eb = a.json()["error"], b.json()["error"]
    assert ea["code"] == eb["code"] and ea["type"] == eb["type"] and ea["param"] == eb["param"]
    assert ea["message"].replace(own_id, "ID") == eb["message"].replace(other_id, "ID")


def test_each_key_sees_and_touches_only_its_workspace(
    api: str, fake: FakeLLM, caplog: pytest.LogCaptureFixture
) -> None:
    key_a = create_key(api, unique("alice"), ["ws-a"])
    key_b = create_key(api, unique("bob"), ["ws-b"])
    owned: dict[str, dict[str, str]] = {}
    for key, workspace, secret_word in (
        (key_a, "ws-a", "AlphaVault"),
        (key_b, "ws-b", "BetaHarbor"),
    ):
        # no workspace named: a key scoped to one workspace works in it
        r = chat(api, key, f"Where does the {secret_word} keep things?")
        assert r.status_code == 200, r.text
        assert r.headers["x-workspace"] == workspace
        prompt = str(fake.last_chat["body"]["messages"])
        assert secret_word in prompt  # its own archival knowledge reached the backend
        other_word = "BetaHarbor" if secret_word == "AlphaVault" else "AlphaVault"
        assert other_word not in prompt  # and nothing of the other workspace
        sent = upload(api, key, f"# {secret_word} notes\n".encode())
        assert sent.status_code == 202, sent.text
        assert sent.json()["workspace"] == workspace
        session = r.headers["x-session-id"]
        wait_session(api, key, session)
        owned[workspace] = {
            "key": key,
            "session": session,
            "job": sent.json()["job_id"],
            "upload": sent.json()["upload_id"],
        }

    for mine, theirs in (("ws-a", "ws-b"), ("ws-b", "ws-a")):
        key, own, other = owned[mine]["key"], owned[mine], owned[theirs]
        sessions = get(api, key, "/v1/sessions").json()["data"]
        assert {s["workspace"] for s in sessions} == {mine}
        assert own["session"] in {s["id"] for s in sessions}
        assert get(api, key, "/v1/sessions", workspace=theirs).json()["data"] == []
        jobs = get(api, key, "/v1/jobs").json()
        assert {j["workspace"] for j in jobs["data"]} == {mine} and jobs["total"] == 1
        assert get(api, key, "/v1/jobs", workspace=theirs).json()["data"] == []
        workspaces = {w["name"] for w in get(api, key, "/v1/workspaces").json()["data"]}
        assert workspaces == {mine}
        missing = str(uuid.uuid4())
        for path in ("/v1/jobs/{}", "/v1/documents/{}/download"):
            kind = "job" if "jobs" in path else "upload"
            same_404(
                get(api, key, path.format(other[kind])),
                get(api, key, path.format(missing)),
                other[kind],
                missing,
            )
            assert get(api, key, path.format(own[kind])).status_code == 200
        same_404(
            get(api, key, f"/v1/sessions/{other['session']}"),
            get(api, key, "/v1/sessions/s-nosuchsession"),
            other["session"],
            "s-nosuchsession",
        )
        gone = httpx.delete(f"{api}/v1/sessions/{other['session']}", headers=bearer(key))
        assert gone.status_code == 404
        assert get(api, ADMIN_KEY, f"/v1/sessions/{other['session']}").status_code == 200

        # a chat naming the other workspace is refused before any backend call
        calls = fake.count("chat")
        for where in ({"workspace": theirs}, {}):
            headers = {"X-Workspace": theirs} if not where else {}
            body = {
                "model": "qwen3-coder",
                "messages": [{"role": "user", "content": "What do you know?"}],
                **where,
            }
            r = httpx.post(
                f"{api}/v1/chat/completions", json=body, headers={**bearer(key), **headers}
            )
            assert r.status_code == 404 and r.json()["error"]["code"] == "workspace_not_found"
        client = openai.OpenAI(base_url=f"{api}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(
                model="qwen3-coder",
                messages=[
                    {"role": "system", "content": f"workspace: {theirs}"},
                    {"role": "user", "content": "hi"},
                ],
            )
        assert fake.count("chat") == calls
        # and so is an upload into it; nothing is stored
        before = get(api, ADMIN_KEY, "/v1/jobs").json()["total"]
        refused = upload(api, key, b"planted\n", workspace=theirs)
        assert refused.status_code == 404
        assert get(api, ADMIN_KEY, "/v1/jobs").json()["total"] == before

    # the admin key sees both
    sessions = get(api, ADMIN_KEY, "/v1/sessions").json()["data"]
    assert {owned["ws-a"]["session"], owned["ws-b"]["session"]} <= {s["id"] for s in sessions}
    assert {"ws-a", "ws-b"} <= {
        j["workspace"] for j in get(api, ADMIN_KEY, "/v1/jobs").json()["data"]
    }
    names = {w["name"] for w in get(api, ADMIN_KEY, "/v1/workspaces").json()["data"]}
    assert {"ws-a", "ws-b"} <= names
    # nothing the orchestrator logged along the way names a key
    assert caplog.records is not None
    for secret in (ADMIN_KEY, RAG_KEY, key_a, key_b):
        assert secret not in caplog.text


def test_a_revoked_key_is_refused_within_a_second_on_every_replica(api: str, replica: str) -> None:
    name = unique("temp")
    key = create_key(api, name, ["ws-a"])
    for url in (api, replica):
        assert get(url, key, "/v1/models").status_code == 200
    r = httpx.delete(f"{api}/v1/keys/{name}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["revoked_at"]
    revoked_at = time.monotonic()
    assert get(api, key, "/v1/models").status_code == 401  # the replica that revoked: at once
    while get(replica, key, "/v1/models").status_code != 401:
        time.sleep(0.02)
    assert time.monotonic() - revoked_at < 1.0
    assert httpx.delete(f"{api}/v1/keys/{name}", headers=ADMIN).status_code == 404


def key_rows(dsn: str) -> str:
    async def fetch() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [dict(r) for r in await conn.fetch("SELECT * FROM api_keys")]
        finally:
            await conn.close()

    return str(asyncio.run(fetch()))


def test_keys_are_stored_hashed_and_never_shown_again(api: str, dsn: str) -> None:
    name = unique("hashed")
    key = create_key(api, name, ["ws-a"])
    rows = key_rows(dsn)
    assert key not in rows
    assert key[-4:] in rows  # the hint, nothing more
    listing = httpx.get(f"{api}/v1/keys", headers=ADMIN)
    assert key not in listing.text and name in listing.text
    # keys are for admins; a scoped key cannot see them, make one, or read metrics
    assert get(api, key, "/v1/keys").status_code == 403
    r = httpx.post(f"{api}/v1/keys", json={"name": "x", "admin": True}, headers=bearer(key))
    assert r.status_code == 403
    assert get(api, key, "/metrics").status_code == 403
    # bad requests
    bad = httpx.post(f"{api}/v1/keys", json={"name": "no spaces"}, headers=ADMIN)
    assert bad.status_code == 400
    bad = httpx.post(f"{api}/v1/keys", json={"name": unique("n"), "workspaces": []}, headers=ADMIN)
    assert bad.status_code == 400 and "workspace" in bad.json()["error"]["message"]
    dup = httpx.post(f"{api}/v1/keys", json={"name": name, "workspaces": ["ws-a"]}, headers=ADMIN)
    assert dup.status_code == 400 and "exists" in dup.json()["error"]["message"]
    assert httpx.delete(f"{api}/v1/keys/admin", headers=ADMIN).status_code == 400


def test_a_key_for_a_new_workspace_works_there_and_reaches_nothing_else(
    api: str, fake: FakeLLM
) -> None:
    workspace = unique("fresh")
    key = create_key(api, unique("newcomer"), [workspace])
    r = chat(api, key, "Tell me about the AlphaVault and the BetaHarbor.")
    assert r.status_code == 200 and r.headers["x-workspace"] == workspace
    prompt = str(fake.last_chat["body"]["messages"])
    assert "AlphaVault keeps" not in prompt and "BetaHarbor ships" not in prompt
    assert {w["name"] for w in get(api, key, "/v1/workspaces").json()["data"]} == {workspace}


def test_derived_sessions_include_the_key(api: str) -> None:
    one = create_key(api, unique("one"), ["ws-a"])
    two = create_key(api, unique("two"), ["ws-a"])
    question = f"Same opening question {uuid.uuid4().hex}"
    first, second = chat(api, one, question), chat(api, two, question)
    assert first.headers["x-session-id"] != second.headers["x-session-id"]
    assert chat(api, one, question).headers["x-session-id"] == first.headers["x-session-id"]


def test_a_key_for_several_workspaces_must_name_one(api: str) -> None:
    key = create_key(api, unique("both"), ["ws-a", "ws-b"])
    r = chat(api, key, "Which workspace?")
    assert r.status_code == 400
    assert "ws-a" in r.json()["error"]["message"] and "ws-b" in r.json()["error"]["message"]
    assert chat(api, key, "Which workspace?", workspace="ws-b").headers["x-workspace"] == "ws-b"


def test_browser_requests_are_refused(api: str, settings: Settings) -> None:
    body = b'{"model": "qwen3-coder", "messages": [{"role": "user", "content": "x"}]}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**ADMIN, **({"Content-Type": content_type} if content_type else {})}
        r = httpx.post(f"{api}/v1/chat/completions", content=body, headers=headers)
        assert r.status_code == 415, content_type
        assert r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(
        f"{api}/v1/chat/completions",
        content=body,
        headers={**ADMIN, "Content-Type": "application/json", "Host": "attacker.example"},
    )
    assert r.status_code == 421
    for host in ("localhost:1234", "127.0.0.1", "[::1]:8100"):
        assert get(api, ADMIN_KEY, "/v1/models").status_code == 200
        r = httpx.get(f"{api}/v1/models", headers={**ADMIN, "Host": host})
        assert r.status_code == 200, host
    # no CORS unless configured: a preflight gets nothing that lets a page in
    preflight = httpx.options(
        f"{api}/v1/chat/completions",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    configured = settings.model_copy(update={"cors_origins": "http://console.example"})
    with serve_asgi(create_app(configured)) as url:
        preflight = httpx.options(
            f"{url}/v1/chat/completions",
            headers={
                "Origin": "http://console.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "http://console.example"


def test_the_openai_routes_keep_the_door_and_the_methods(api: str) -> None:
    """They go from the Gate straight to the proxy: the key is still checked first, and a
    method they do not take is a 405 as on any other route."""
    body = {"model": "qwen3-coder", "messages": [{"role": "user", "content": "hi"}]}
    for path in ("/v1/chat/completions", "/v1/embeddings"):
        r = httpx.post(f"{api}{path}", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = httpx.post(f"{api}{path}", json=body, headers=bearer("sk-not-a-key"))
        assert r.status_code == 401
        assert get(api, ADMIN_KEY, path).status_code == 405
    assert httpx.get(f"{api}/v1/models").status_code == 401
    assert httpx.post(f"{api}/v1/models", json={}, headers=ADMIN).status_code == 405
