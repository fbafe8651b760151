"""The orchestrator as an OpenAI endpoint, driven by the official openai client."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
from orchestrator.app import create_app
from orchestrator.settings import Settings
from sparkstack_testing.fake_llm import FakeLLM
from support import ADMIN_KEY, bearer, free_port, oversized_post, serve_asgi

HI = [{"role": "user", "content": "x"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "read_file",
            "description": "Read a file",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "required": ["path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "grep",
            "description": "Search files",
            "parameters": {
                "type": "object",
                "properties": {"pattern": {"type": "string"}},
                "required": ["pattern"],
            },
        },
    },
]


def proxy_settings(backend: str, **overrides: object) -> Settings:
    """Memory off, only the bootstrap admin key: no PostgreSQL needed (its pool stays empty)."""
    urls = {f"{role}_url": f"{backend}/v1" for role in ("coding", "reasoning", "extract", "embed")}
    dead_db = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    values = {"memory_enabled": False, "admin_key": ADMIN_KEY, "postgres_dsn": dead_db}
    return Settings(**urls, **{**values, **overrides})


@pytest.fixture(scope="module")
def orchestrator(llm: tuple[FakeLLM, str]) -> Iterator[str]:
    with serve_asgi(create_app(proxy_settings(llm[1]))) as url:
        yield url


@pytest.fixture
def client(orchestrator: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{orchestrator}/v1", api_key=ADMIN_KEY, max_retries=0)


def test_chat_routes_by_alias_and_passes_fields_through(
    client: openai.OpenAI, fake: FakeLLM
) -> None:
    started = time.perf_counter()
    raw = client.chat.completions.with_raw_response.create(
        model="qwen3-coder",
        messages=[{"role": "user", "content": "hello there"}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=64,
        stop=["END"],
        seed=7,
        response_format={"type": "text"},
        extra_body={"reasoning_effort": "low", "custom_extra": {"a": 1}},
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    reply = raw.parse()
    assert reply.model == "qwen3-coder"  # the name the client used
    assert reply.choices[0].message.content.startswith("echo: hello there")
    assert reply.choices[0].finish_reason == "stop"
    sent = fake.last_chat["body"]
    assert sent["model"] == "qwen3-coder-next:q4_K_M"
    for key, value in {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 64,
        "stop": ["END"],
        "seed": 7,
        "response_format": {"type": "text"},
        "reasoning_effort": "low",
        "custom_extra": {"a": 1},
    }.items():
        assert sent[key] == value, key
    assert raw.headers["x-session-id"].startswith("s-")
    # the orchestrator's own time: some, and less than the whole round trip the client saw
    assert 0 < float(raw.headers["x-orchestrator-overhead-ms"]) < elapsed_ms


@pytest.mark.parametrize(
    ("name", "upstream"),
    [
        ("qwen3-coder-next", "qwen3-coder-next:q4_K_M"),
        ("deepseek-r1", "deepseek-r1:32b"),
        ("deepseek", "deepseek-r1:32b"),
        ("qwen3:8b", "qwen3:8b"),
    ],
)
def test_aliases(client: openai.OpenAI, fake: FakeLLM, name: str, upstream: str) -> None:
    client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    assert fake.last_chat["body"]["model"] == upstream


def test_streaming_with_usage_last(client: openai.OpenAI, fake: FakeLLM) -> None:
    chunks = list(
        client.chat.completions.create(
            model="qwen3-coder",
            messages=[{"role": "user", "content": "stream me a few words please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.model == "qwen3-coder" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: stream me a few words please")
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_two_parallel_tool_calls_streamed_then_tool_results(
    client: openai.OpenAI, fake: FakeLLM
) -> None:
    messages: list[dict] = [{"role": "user", "content": "call tools in parallel"}]
    stream = client.chat.completions.create(
        model="deepseek-r1", messages=messages, tools=TOOLS, tool_choice="auto", stream=True
    )
    calls: dict[int, dict] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function and tc.function.name:
                    call["name"] += tc.function.name
                if tc.function and tc.function.arguments:
                    call["arguments"] += tc.function.arguments
    # a request with tools for the reasoning model goes to its tools-enabled alias
    assert fake.last_chat["body"]["model"] == "deepseek-r1-tools:32b"
    assert fake.last_chat["body"]["tool_choice"] == "auto"
    assert finish == "tool_calls"
    assert sorted(calls) == [0, 1]
    assert {c["name"] for c in calls.values()} == {"read_file", "grep"}
    assert len({c["id"] for c in calls.values()}) == 2
    args = {c["name"]: json.loads(c["arguments"]) for c in calls.values()}
    assert set(args["read_file"]) == {"path"} and set(args["grep"]) == {"pattern"}

    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls.values()
            ],
        }
    )
    for c in calls.values():
        messages.append(
            {"role": "tool", "tool_call_id": c["id"], "content": f"result of {c['name']}"}
        )
    reply = client.chat.completions.create(model="deepseek-r1", messages=messages, tools=TOOLS)
    assert reply.choices[0].finish_reason == "stop"
    assert "result of read_file" in reply.choices[0].message.content
    sent = fake.last_chat["body"]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["assistant", "tool", "tool"]


def test_embeddings_and_models(client: openai.OpenAI, fake: FakeLLM) -> None:
    result = client.embeddings.create(
        model="qwen3-embedding", input=["parse the config file", "parse the config files"]
    )
    assert result.model == "qwen3-embedding"
    assert len(result.data) == 2 and len(result.data[0].embedding) == 1024
    assert fake.requests_for("/v1/embeddings")[-1]["body"]["model"] == "qwen3-embedding:0.6b"
    ids = {m.id for m in client.models.list().data}
    assert {"qwen3-coder-next", "qwen3-coder", "deepseek-r1", "deepseek", "qwen3-embedding"} <= ids
    assert "bge-reranker-v2-m3" not in ids


def test_unknown_model_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "x"}])
    assert err.value.code == "model_not_found"
    assert err.value.body["param"] == "model"


def test_bad_requests_are_400_with_openai_errors(orchestrator: str) -> None:
    url = f"{orchestrator}/v1/chat/completions"
    for body in (
        b"{not json",
        b"[]",
        b'{"model": "qwen3-coder"}',
        b'{"model": "qwen3-coder", "messages": []}',
    ):
        r = httpx.post(
            url, content=body, headers={"content-type": "application/json", **bearer(ADMIN_KEY)}
        )
        assert r.status_code == 400, body
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(
        url,
        json={
            "model": "qwen3-coder",
            "messages": [{"role": "user", "content": "x"}],
            "workspace": "bad name",
        },
        headers=bearer(ADMIN_KEY),
    )
    assert r.status_code == 400 and "workspace" in r.json()["error"]["message"]


def test_backend_unreachable_is_502() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    with serve_asgi(create_app(proxy_settings(dead))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(
                model="qwen3-coder", messages=[{"role": "user", "content": "x"}]
            )
        assert err.value.status_code == 502
        assert err.value.code == "backend_unreachable"
        # which model, where, and how to configure one
        message = err.value.message
        assert "qwen3-coder" in message and dead in message
        assert "ORCHESTRATOR_CODING_URL" in message and "sparkstack up --backend" in message
        assert time.monotonic() - started < 5
        with pytest.raises(openai.APIStatusError) as err:
            list(
                client.chat.completions.create(
                    model="qwen3-coder", messages=[{"role": "user", "content": "x"}], stream=True
                )
            )
        assert err.value.status_code == 502


def test_backend_timeout_is_504(llm: tuple[FakeLLM, str], fake: FakeLLM) -> None:
    fake.set_delay(3.0)
    with serve_asgi(create_app(proxy_settings(llm[1], backend_timeout=0.5))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(
                model="qwen3-coder", messages=[{"role": "user", "content": "x"}]
            )
        assert err.value.status_code == 504 and err.value.code == "backend_timeout"
        assert time.monotonic() - started < 2.5


def test_backend_errors_pass_through(
    client: openai.OpenAI, fake: FakeLLM, orchestrator: str
) -> None:
    before = metric_value(
        orchestrator, 'orchestrator_backend_errors_total{role="coding",status="500"}'
    )
    fake.fail_next(1, status=500, kind="chat", message="the model ran out of memory")
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(
            model="qwen3-coder", messages=[{"role": "user", "content": "x"}]
        )
    assert err.value.status_code == 500
    assert err.value.body["message"] == "the model ran out of memory"  # the backend's own
    after = metric_value(
        orchestrator, 'orchestrator_backend_errors_total{role="coding",status="500"}'
    )
    assert after == before + 1


def test_a_backend_error_that_is_not_openai_shaped_is_wrapped_in_one() -> None:
    """A proxy in front of the backend answering plain text: the client still gets an
    OpenAI error, saying which model's backend answered what."""

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 503, "headers": []})
        await send({"type": "http.response.body", "body": b"overloaded, try later " + b"x" * 600})

    with serve_asgi(app) as backend, serve_asgi(create_app(proxy_settings(backend))) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "qwen3-coder", "messages": HI},
            headers=bearer(ADMIN_KEY),
        )
        assert r.status_code == 503
        error = r.json()["error"]
        assert error["type"] == error["code"] == "backend_error"
        text = "overloaded, try later " + "x" * 478  # the first 500 bytes of the answer
        assert error["message"] == f"the backend of model 'qwen3-coder' answered 503: {text}"
        assert (
            metric_value(url, 'orchestrator_backend_errors_total{role="coding",status="503"}') == 1
        )


def test_embeddings_pass_their_fields_and_refuse_what_is_not_a_request(
    orchestrator: str, fake: FakeLLM
) -> None:
    url = f"{orchestrator}/v1/embeddings"
    ok = httpx.post(
        url,
        json={"model": "qwen3-embedding", "input": "parse it", "dimensions": 64},
        headers=bearer(ADMIN_KEY),
    )
    assert ok.status_code == 200 and ok.json()["model"] == "qwen3-embedding"
    sent = fake.requests_for("/v1/embeddings")[-1]["body"]
    assert sent == {"model": "qwen3-embedding:0.6b", "input": "parse it", "dimensions": 64}
    assert len(ok.json()["data"][0]["embedding"]) == 64
    refused = 'orchestrator_requests_total{endpoint="embeddings",status="400"}'
    before = metric_value(orchestrator, refused)
    for body, param, message in (
        ({"model": "qwen3-embedding"}, "input", "'input' is required"),
        ({"input": "x"}, "model", "'model' is required"),
        (
            {"model": "qwen3-coder", "input": "x"},
            "model",
            "model 'qwen3-coder' is not an embedding model",
        ),
    ):
        r = httpx.post(url, json=body, headers=bearer(ADMIN_KEY))
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param and r.json()["error"]["message"] == message
    bad = httpx.post(
        url, content=b"[1]", headers={"content-type": "application/json", **bearer(ADMIN_KEY)}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
    assert metric_value(orchestrator, refused) == before + 4
    unknown = httpx.post(url, json={"model": "gpt-17", "input": "x"}, headers=bearer(ADMIN_KEY))
    assert unknown.status_code == 404


def metric_value(orchestrator: str, series: str) -> float:
    text = httpx.get(f"{orchestrator}/metrics", headers=bearer(ADMIN_KEY)).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_a_wrong_or_malformed_key_is_a_401_in_openai_format(orchestrator: str) -> None:
    for key in ("wrong", "sk-other-" + "x" * 43, "Basic abc", "x" * 5000):
        bad = openai.OpenAI(base_url=f"{orchestrator}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            bad.models.list()
        assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer"}):
        r = httpx.get(f"{orchestrator}/v1/models", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "invalid_api_key"
    good = openai.OpenAI(base_url=f"{orchestrator}/v1", api_key=ADMIN_KEY, max_retries=0)
    assert good.models.list().data
    # the probes answer without a key, and say only what is ok
    assert httpx.get(f"{orchestrator}/health").status_code == 200
    ready = httpx.get(f"{orchestrator}/ready").json()
    assert all(set(check) == {"ok"} for check in ready["checks"].values())
    detailed = httpx.get(f"{orchestrator}/ready", headers=bearer(ADMIN_KEY)).json()
    assert all("detail" in check for check in detailed["checks"].values())
    for path in ("/metrics", "/docs", "/openapi.json", "/v1/sessions", "/v1/jobs"):
        assert httpx.get(f"{orchestrator}{path}").status_code == 401, path
    assert httpx.get(f"{orchestrator}/metrics", headers=bearer(ADMIN_KEY)).status_code == 200


@pytest.mark.parametrize("mode", ["before-first-token", "mid-stream", "non-streaming"])
def test_client_disconnect_cancels_the_upstream_request(
    orchestrator: str, fake: FakeLLM, mode: str
) -> None:
    body = {
        "model": "qwen3-coder",
        "messages": [{"role": "user", "content": "a long answer " * 50}],
    }
    if mode == "mid-stream":
        fake.set_stream_chunk_delay(0.2)
        body["stream"] = True
    else:
        fake.set_delay(10.0)
        body["stream"] = mode == "before-first-token"
    closed = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=30, headers=bearer(ADMIN_KEY)) as c:
            try:
                with c.stream("POST", f"{orchestrator}/v1/chat/completions", json=body) as r:
                    if mode == "mid-stream":
                        for i, _ in enumerate(r.iter_raw()):
                            if i == 2:
                                break
                    else:
                        time.sleep(0.5)
            except httpx.ReadTimeout:
                pass
        closed.set()

    if mode != "mid-stream":
        # the request is sent; the client gives up while the backend is still thinking
        def run_timeout() -> None:
            try:
                httpx.post(
                    f"{orchestrator}/v1/chat/completions",
                    json=body,
                    headers=bearer(ADMIN_KEY),
                    timeout=0.5,
                )
            except httpx.TimeoutException:
                pass
            closed.set()

        threading.Thread(target=run_timeout, daemon=True).start()
    else:
        threading.Thread(target=run, daemon=True).start()
    assert closed.wait(10)
    left = time.monotonic()
    assert fake.wait_for_disconnects(1, timeout=3), "the backend never saw the connection close"
    seen = fake.disconnects[-1]["t"]
    # passed on at once (tens of ms here), long before the backend's 10 s answer
    assert seen - left < 5.0


def test_model_name_split_across_network_reads_is_still_renamed(fake: FakeLLM) -> None:
    """A backend whose stream arrives in 7-byte pieces (every model name cut in two)."""
    import asyncio

    from starlette.responses import StreamingResponse

    events = [
        b'data: {"id":"c","object":"chat.completion.chunk","model":"qwen3-coder-next:q4_K_M",'
        b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
        b"data: [DONE]\n\n",
    ]

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()

        async def pieces():
            blob = b"".join(events)
            for i in range(0, len(blob), 7):
                yield blob[i : i + 7]
                await asyncio.sleep(0.001)

        await StreamingResponse(pieces(), media_type="text/event-stream")(scope, receive, send)

    with serve_asgi(app) as backend, serve_asgi(create_app(proxy_settings(backend))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=ADMIN_KEY, max_retries=0)
        chunks = list(client.chat.completions.create(model="qwen3-coder", messages=HI, stream=True))
        assert [c.model for c in chunks] == ["qwen3-coder"]
        assert chunks[0].choices[0].delta.content == "hi"


def test_the_last_line_of_a_stream_without_a_newline_is_renamed_too() -> None:
    """A backend whose stream ends without a final newline: the held-back last line still
    reaches the client, with the model name the client asked for (compact or spaced JSON)."""
    import asyncio

    upstream = b"qwen3-coder-next:q4_K_M"
    blob = (
        b'data: {"model":"' + upstream + b'","choices":[{"delta":{"content":"a"}}]}\n\n'
        b'data: {"model": "' + upstream + b'", "choices": [{"delta": {"content": "b"}}]}'
    )

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(0, len(blob), 7):
            await send({"type": "http.response.body", "body": blob[i : i + 7], "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    with serve_asgi(app) as backend, serve_asgi(create_app(proxy_settings(backend))) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "qwen3-coder", "messages": HI, "stream": True},
            headers=bearer(ADMIN_KEY),
        )
        assert r.status_code == 200
        assert r.content == blob.replace(b'"' + upstream + b'"', b'"qwen3-coder"')


def test_a_stream_the_backend_breaks_off_ends_with_an_error_the_client_sees(
    client: openai.OpenAI, fake: FakeLLM
) -> None:
    fake.break_next_stream(after_chunks=2, mode="abort")
    stream = client.chat.completions.create(
        model="qwen3-coder", messages=[{"role": "user", "content": "a b c d e f g h"}], stream=True
    )
    with pytest.raises(openai.APIError) as err:
        list(stream)
    assert "broke off the stream" in str(err.value)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/workspaces/w/retrieve"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(
    llm: tuple[FakeLLM, str], path: str, declared: bool
) -> None:
    """The proxy's own route and a FastAPI route alike, in OpenAI's error shape."""
    limit = 64 << 10
    with serve_asgi(create_app(proxy_settings(llm[1], max_request_bytes=limit))) as url:
        headers = {**bearer(ADMIN_KEY), "Content-Type": "application/json"}
        status, body, sent = oversized_post(
            url, path, headers, 10 << 30 if declared else None, 64 << 20, b'{"messages": "'
        )
        assert status == 413, body
        error = json.loads(body)["error"]
        assert "ORCHESTRATOR_MAX_REQUEST_BYTES" in error["message"]
        # the client stops sending once the answer is there; it checks every 10 ms and sends
        # 64 KiB between checks, so a server that answers on the headers still takes a block
        # or a few on a loaded machine: far from the 64 MiB a server reading the body takes
        assert sent <= 16 * limit if declared else sent < 64 * limit
