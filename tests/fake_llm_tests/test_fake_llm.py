"""The deterministic fake model server (sparkstack_testing.fake_llm) against real clients over
HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from lightrag.operate import (
    _parse_keywords_payload,
    _process_extraction_result,
    _process_json_extraction_result,
)
from lightrag.prompt import PROMPTS, get_default_entity_extraction_prompt_profile
from sparkstack_testing.fake_llm import (
    LR_COMPLETE,
    FakeLLM,
    cosine,
    create_fake_llm,
    fake_embedding,
    prompt_text,
    serve_fake_llm,
)
from sparkstack_testing.serve import serve_asgi

CHUNK_TEXT = (
    "Alice Smith works at Acme Corporation in Berlin. She maintains the LightRAG service.\n"
    "The function parse_config() reads settings from config.yaml and calls load_env.\n"
    "The GraphStore class persists nodes for the ingest pipeline."
)

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1},
                },
                "required": ["city", "unit"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the knowledge base",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "limit": {"type": "integer", "minimum": 3},
                    "filters": {
                        "type": "object",
                        "properties": {"tags": {"type": "array", "items": {"type": "string"}}},
                        "required": ["tags"],
                    },
                },
                "required": ["query", "limit", "filters"],
            },
        },
    },
]


@pytest.fixture
def fake() -> FakeLLM:
    return create_fake_llm()


@pytest.fixture
def url(fake: FakeLLM) -> Iterator[str]:
    with serve_asgi(fake.app) as base:
        yield base


@pytest.fixture
def client(url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{url}/v1", api_key="test-key", max_retries=0) as c:
        yield c


# ---- OpenAI chat ----------------------------------------------------------------------------


def test_chat_non_streaming_echo_usage_and_recording(fake: FakeLLM, client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="fake-chat",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        extra_headers={"X-Workspace": "team-a"},
        extra_body={"reasoning_effort": "low", "think": True},
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content.startswith("echo: What is the capital of France? [")
    # Deterministic: the same question gives the same answer.
    again = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": "What is the capital of France?"}]
    )
    assert again.choices[0].message.content == choice.message.content
    assert resp.usage.prompt_tokens == len("You are terse. What is the capital of France?".split())
    assert resp.usage.completion_tokens == len(choice.message.content.split())
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens

    rec = fake.chat_requests[0]
    assert rec["path"] == "/v1/chat/completions"
    assert rec["headers"]["x-workspace"] == "team-a"
    assert rec["headers"]["authorization"] == "Bearer test-key"
    assert rec["body"]["messages"][1]["content"] == "What is the capital of France?"
    assert rec["reply_kind"] == "echo"
    assert "You are terse." in fake.prompts()[0]
    assert fake.count("chat") == 2
    assert fake.counts["/v1/chat/completions"] == 2


def test_streaming_with_include_usage_puts_usage_last(fake: FakeLLM, client: openai.OpenAI) -> None:
    question = "Tell me about the DGX Spark unified memory."
    plain = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": question}]
    )
    context = "Memory: the user prefers short answers and works on sparkstack. " * 5
    stream = client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "system", "content": context}, {"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 3
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and all(f is None for f in finishes[:-1])
    # Usage: only on the very last chunk, whose choices are empty.
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    # Injected context shows up in prompt_tokens.
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens + len(context.split())
    assert chunks[-1].usage.completion_tokens == len(text.split())

    # Without include_usage: no usage chunk at all.
    chunks = list(
        client.chat.completions.create(
            model="fake-chat", messages=[{"role": "user", "content": question}], stream=True
        )
    )
    assert all(c.usage is None and c.choices for c in chunks)


def test_raw_sse_framing_ends_with_done(url: str) -> None:
    body = {
        "model": "fake-chat",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    last = json.loads(events[-2][len("data: ") :])
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == 2


def test_parallel_streamed_tool_calls_then_tool_result_round_trip(
    fake: FakeLLM, client: openai.OpenAI
) -> None:
    user = "Please call tools in parallel: weather in Paris and search the docs for GPU limits"
    messages: list[dict] = [{"role": "user", "content": user}]
    chunks = list(
        client.chat.completions.create(
            model="fake-chat",
            messages=messages,
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    calls: dict[int, dict] = {}
    order: list[int] = []
    for chunk in chunks:
        if not chunk.choices:
            continue
        for tc in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
            if tc.id:
                assert entry["id"] is None, "id sent once per call"
                entry["id"] = tc.id
                assert tc.type == "function"
            if tc.function and tc.function.name:
                entry["name"] = tc.function.name
            if tc.function and tc.function.arguments:
                entry["arguments"] += tc.function.arguments
                order.append(tc.index)
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "search_docs"]
    assert calls[0]["id"] == "call_1" and calls[1]["id"] == "call_2"
    # Fragments of the two calls are interleaved, and each call's args took several chunks.
    assert order.count(0) > 1 and order.count(1) > 1
    assert order != sorted(order)
    weather = json.loads(calls[0]["arguments"])
    search = json.loads(calls[1]["arguments"])
    assert weather == {"city": "city-1", "unit": "celsius"}
    assert search == {"query": user, "limit": 3, "filters": {"tags": ["tags-1"]}}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0

    messages.append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": calls[i]["id"],
                    "type": "function",
                    "function": {"name": calls[i]["name"], "arguments": calls[i]["arguments"]},
                }
                for i in (0, 1)
            ],
        }
    )
    messages.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 degrees"})
    messages.append({"role": "tool", "tool_call_id": "call_2", "content": "3 documents found"})
    final = client.chat.completions.create(model="fake-chat", messages=messages, tools=TOOLS)
    choice = final.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    assert "get_weather -> sunny, 21 degrees" in choice.message.content
    assert "search_docs -> 3 documents found" in choice.message.content
    assert fake.last_chat["reply_kind"] == "tool_result"


def test_single_tool_call_by_default_and_tool_choice(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "Use search_docs to find the ingest design"}],
        tools=TOOLS,
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    # A tool named in the message is preferred over the first one.
    assert call.function.name == "search_docs" and call.id.startswith("call_")
    assert json.loads(call.function.arguments)["query"].startswith("Use search_docs")

    none = client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "just talk"}],
        tools=TOOLS,
        tool_choice="none",
    )
    assert none.choices[0].message.tool_calls is None
    assert none.choices[0].message.content.startswith("echo: just talk")

    forced = client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": "call tools in parallel"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    assert [c.function.name for c in forced.choices[0].message.tool_calls] == ["get_weather"]


def test_scripted_replies_limits_and_models(fake: FakeLLM, client: openai.OpenAI) -> None:
    fake.queue_reply("scripted answer")
    fake.queue_reply(tool_calls=[{"name": "search_docs", "arguments": {"query": "x"}}])
    assert (
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        .choices[0]
        .message.content
        == "scripted answer"
    )
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "b"}])
    assert resp.choices[0].message.tool_calls[0].function.arguments == '{"query": "x"}'

    fake.responder = lambda messages, body: "custom" if body.get("model") == "special" else None
    resp = client.chat.completions.create(
        model="special", messages=[{"role": "user", "content": "c"}]
    )
    assert resp.choices[0].message.content == "custom"
    fake.responder = None

    resp = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "one two three four five"}], max_tokens=3
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.choices[0].message.content == "echo: one two"

    ids = [m.id for m in client.models.list().data]
    assert ids == ["fake-chat", "fake-embed", "fake-rerank"]

    fake.strict_models = True
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])


# ---- embeddings and rerank -----------------------------------------------------------------


def test_embeddings_similarity_ordering(fake: FakeLLM, client: openai.OpenAI) -> None:
    query = "How do I configure GPU time-slicing on the DGX Spark?"
    related = "Configure GPU time-slicing for the DGX Spark cluster nodes."
    loosely = "The Spark cluster has one GPU."
    unrelated = "A chocolate cake recipe with butter and sugar."
    texts = [query, related, loosely, unrelated, query]
    # Explicit "base64" comes back undecoded from the client; by default it asks for base64
    # and decodes it itself.
    for fmt in ("float", "base64", None):
        kwargs = {"encoding_format": fmt} if fmt else {}
        resp = client.embeddings.create(model="fake-embed", input=texts, **kwargs)
        vecs = [d.embedding for d in resp.data]
        if fmt == "base64":
            vecs = [np.frombuffer(base64.b64decode(v), dtype="<f4").tolist() for v in vecs]
        assert [d.index for d in resp.data] == list(range(5))
        assert all(len(v) == 1024 for v in vecs)
        assert abs(float(np.linalg.norm(vecs[0])) - 1.0) < 1e-5
        assert np.allclose(vecs[0], vecs[4])
        assert np.allclose(vecs[0], fake_embedding(query), atol=1e-6)
        sims = [cosine(vecs[0], v) for v in vecs[1:4]]
        assert sims[0] > sims[1] > sims[2]
        assert sims[0] > 0.6 and sims[2] < 0.2
    assert [r["body"].get("encoding_format") for r in fake.requests] == ["float", *["base64"] * 2]
    single = client.embeddings.create(model="fake-embed", input="hello world", dimensions=256)
    assert len(single.data[0].embedding) == 256
    assert single.usage.prompt_tokens == 2
    assert fake.count("embed") == 4


def test_rerank_orders_by_relevance(fake: FakeLLM, url: str) -> None:
    docs = [
        "Bananas are yellow fruit.",
        "LightRAG builds a knowledge graph from documents.",
        "The knowledge graph of LightRAG stores entities and relations.",
        "Kubernetes schedules pods.",
    ]
    query = "How does LightRAG store the knowledge graph?"
    body = {"model": "fake-rerank", "query": query, "documents": docs}
    r = httpx.post(f"{url}/v1/rerank", json=body)
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["index"] for x in results][:2] == [2, 1]
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores) and scores[0] > 0.5

    top = httpx.post(f"{url}/v1/rerank", json={**body, "top_n": 2}).json()["results"]
    assert top == results[:2]
    assert fake.count("rerank") == 2


# ---- LightRAG prompts ---------------------------------------------------------------------


def _extraction_prompts(use_json: bool) -> tuple[str, str, str]:
    """System, user and gleaning prompts as lightrag.operate.extract_entities builds them."""
    profile = get_default_entity_extraction_prompt_profile()
    if use_json:
        base = {
            "entity_types_guidance": profile["entity_types_guidance"],
            "examples": "\n".join(profile["entity_extraction_json_examples"]),
            "language": "English",
            "max_total_records": 40,
            "max_entity_records": 20,
        }
        return (
            PROMPTS["entity_extraction_json_system_prompt"].format(**base),
            PROMPTS["entity_extraction_json_user_prompt"].format(
                **base, input_text=CHUNK_TEXT, heading_context_block=""
            ),
            PROMPTS["entity_continue_extraction_json_user_prompt"].format(**base),
        )
    delims = {
        "tuple_delimiter": PROMPTS["DEFAULT_TUPLE_DELIMITER"],
        "completion_delimiter": PROMPTS["DEFAULT_COMPLETION_DELIMITER"],
        "entity_types_guidance": profile["entity_types_guidance"],
        "language": "English",
    }
    examples = "\n".join(profile["entity_extraction_examples"]).format(**delims)
    base = {**delims, "examples": examples, "max_total_records": 40, "max_entity_records": 20}
    return (
        PROMPTS["entity_extraction_system_prompt"].format(**base),
        PROMPTS["entity_extraction_user_prompt"].format(
            **base, input_text=CHUNK_TEXT, heading_context_block=""
        ),
        PROMPTS["entity_continue_extraction_user_prompt"].format(**base, input_text=CHUNK_TEXT),
    )


@pytest.mark.parametrize("use_json", [False, True], ids=["text", "json"])
async def test_lightrag_extraction_parses_with_lightrag_parser(
    fake: FakeLLM, client: openai.OpenAI, use_json: bool
) -> None:
    system, user, glean = _extraction_prompts(use_json)
    extra = {"response_format": {"type": "json_object"}} if use_json else {}
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    result = client.chat.completions.create(model="fake-chat", messages=messages, **extra)
    content = result.choices[0].message.content
    assert fake.last_chat["reply_kind"] == "lightrag_extract"
    if use_json:
        nodes, edges = await _process_json_extraction_result(content, "chunk-1", 0, "doc.md")
    else:
        assert content.rstrip().endswith(LR_COMPLETE)
        nodes, edges = await _process_extraction_result(content, "chunk-1", 0, "doc.md")
    assert {"Alice Smith", "Acme Corporation", "Berlin", "LightRAG", "parse_config"} <= set(nodes)
    assert len(nodes) <= 8
    allowed = {"person", "creature", "organization", "location", "event", "concept", "method"}
    allowed |= {"content", "data", "artifact", "naturalobject", "other"}
    for name, records in nodes.items():
        assert records[0]["entity_type"] in allowed
        assert name in records[0]["description"]
    assert nodes["parse_config"][0]["entity_type"] == "method"
    assert "reads settings from config.yaml" in nodes["parse_config"][0]["description"]
    assert ("Alice Smith", "Acme Corporation") in edges
    assert len(edges) == len(nodes) - 1
    edge = edges[("Alice Smith", "Acme Corporation")][0]
    assert edge["keywords"] and "Berlin" in edge["description"]

    # Gleaning (entity_extract_max_gleaning > 0) adds nothing.
    messages += [{"role": "assistant", "content": content}, {"role": "user", "content": glean}]
    gleaned = client.chat.completions.create(model="fake-chat", messages=messages, **extra)
    glean_content = gleaned.choices[0].message.content
    assert fake.last_chat["reply_kind"] == "lightrag_glean"
    if use_json:
        assert json.loads(glean_content) == {"entities": [], "relationships": []}
    else:
        assert glean_content == LR_COMPLETE
        assert await _process_extraction_result(glean_content, "chunk-1", 0) == ({}, {})


def test_lightrag_keywords_summary_and_answer(fake: FakeLLM, client: openai.OpenAI) -> None:
    kw_prompt = PROMPTS["keywords_extraction"].format(
        query="How does parse_config load the Acme settings?",
        examples="\n".join(PROMPTS["keywords_extraction_examples"]),
        language="English",
    )
    resp = client.chat.completions.create(
        model="fake-chat",
        messages=[{"role": "user", "content": kw_prompt}],
        response_format={"type": "json_object"},
    )
    content = resp.choices[0].message.content
    payload = json.loads(content)
    assert set(payload) == {"high_level_keywords", "low_level_keywords"}
    ok, high, low = _parse_keywords_payload(content)
    assert ok and high and {"parse_config", "Acme"} <= set(low)
    assert "<high_level_keyword>" not in content  # the template is not source text

    summary_prompt = PROMPTS["summarize_entity_descriptions"].format(
        description_type="Entity",
        description_name="Acme Corporation",
        description_list="\n".join(
            json.dumps({"Description": d})
            for d in ["Acme Corporation employs Alice.", "Acme Corporation is in Berlin."]
        ),
        summary_length=500,
        language="English",
    )
    resp = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": summary_prompt}]
    )
    summary = resp.choices[0].message.content
    assert fake.last_chat["reply_kind"] == "lightrag_summary"
    assert summary.startswith("Acme Corporation:")
    assert "employs Alice" in summary and "is in Berlin" in summary

    chunk = {"reference_id": "1", "content": "Zanzibar quokkas hibernate under the bridge."}
    context = PROMPTS["naive_query_context"].format(
        text_chunks_str=json.dumps(chunk), reference_list_str="[1] notes/quokkas.md"
    )
    system = PROMPTS["naive_rag_response"].format(
        response_type="Multiple Paragraphs", user_prompt="n/a", content_data=context
    )
    resp = client.chat.completions.create(
        model="fake-chat",
        messages=[
            {"role": "system", "content": system},
            {"role": "user", "content": "Where do quokkas hibernate?"},
        ],
    )
    answer = resp.choices[0].message.content
    assert fake.last_chat["reply_kind"] == "lightrag_answer"
    assert "Zanzibar quokkas hibernate" in answer and "Where do quokkas hibernate?" in answer
    assert "[1] notes/quokkas.md" in answer


class _ByteTokenizer:
    """Offline tokenizer for LightRAG (its default one downloads an encoding)."""

    def encode(self, content: str) -> list[int]:
        return list(content.encode("utf-8"))

    def decode(self, tokens: list[int]) -> str:
        return bytes(tokens).decode("utf-8", errors="ignore")


async def test_lightrag_end_to_end_insert_and_query(fake: FakeLLM, url: str) -> None:
    from lightrag import LightRAG, QueryParam
    from lightrag.kg.shared_storage import finalize_share_data, is_share_data_initialized
    from lightrag.llm.openai import openai_complete_if_cache
    from lightrag.utils import EmbeddingFunc, Tokenizer

    shared_before = is_share_data_initialized()
    embed_client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)

    async def llm(prompt, system_prompt=None, history_messages=None, **kwargs):
        return await openai_complete_if_cache(
            "fake-chat",
            prompt,
            system_prompt=system_prompt,
            history_messages=history_messages or [],
            base_url=f"{url}/v1",
            api_key="k",
            **kwargs,
        )

    async def embed(texts: list[str], **_: object) -> np.ndarray:
        resp = await embed_client.embeddings.create(model="fake-embed", input=texts, dimensions=256)
        return np.array([d.embedding for d in resp.data], dtype=np.float32)

    with tempfile.TemporaryDirectory() as workdir:
        rag = LightRAG(
            working_dir=workdir,
            llm_model_func=llm,
            embedding_func=EmbeddingFunc(embedding_dim=256, max_token_size=8192, func=embed),
            tokenizer=Tokenizer("bytes", _ByteTokenizer()),
            entity_extract_max_gleaning=1,
        )
        await rag.initialize_storages()
        try:
            await rag.ainsert(CHUNK_TEXT)
            answer = await rag.aquery(
                "Where does Alice Smith work?", param=QueryParam(mode="hybrid", enable_rerank=False)
            )
            graph_labels = await rag.get_graph_labels()
        finally:
            await rag.finalize_storages()
            await embed_client.close()
            if not shared_before:
                finalize_share_data()
    assert {"Alice Smith", "Acme Corporation", "parse_config"} <= set(graph_labels)
    assert fake.reply_kinds["lightrag_extract"] == 1
    assert fake.reply_kinds["lightrag_glean"] == 1
    assert fake.reply_kinds["lightrag_keywords"] == 1
    assert fake.reply_kinds["lightrag_answer"] == 1
    assert "Alice Smith works at Acme Corporation" in answer
    # The answer prompt the backend received carried the retrieved chunk.
    assert "Alice Smith works at Acme Corporation" in prompt_text(fake.last_chat["messages"])


# ---- fault injection ----------------------------------------------------------------------


def test_fail_next_and_fail_always(fake: FakeLLM, client: openai.OpenAI, url: str) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    fake.fail_next(1, status=500)
    with pytest.raises(openai.InternalServerError) as err:
        client.chat.completions.create(model="fake-chat", messages=msgs)
    assert err.value.status_code == 500
    assert client.chat.completions.create(model="fake-chat", messages=msgs).choices

    fake.fail_next(2, status=429, retry_after=1)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="fake-chat", messages=msgs)
    assert client.chat.completions.create(model="fake-chat", messages=msgs).choices

    fake.fail_always(503)
    for _ in range(3):
        r = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": msgs})
        assert r.status_code == 503 and "down" in r.json()["error"]["message"]
    # Other kinds are unaffected; then the backend recovers.
    assert client.embeddings.create(model="fake-embed", input="x").data
    fake.recover()
    assert client.chat.completions.create(model="fake-chat", messages=msgs).choices

    fake.fail_next(1, status=500, kind="embed")
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fake-embed", input="x")
    statuses = [r["status"] for r in fake.chat_requests]
    assert statuses == [500, 200, 429, 429, 200, 503, 503, 503, 200]
    assert fake.prompts() == ["hi"] * 9  # failed requests are recorded too


def test_delay_with_client_timeout_is_observed_as_disconnect(fake: FakeLLM, url: str) -> None:
    fake.set_delay(3.0)
    with (
        openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0, timeout=0.3) as c,
        pytest.raises(openai.APITimeoutError),
    ):
        c.chat.completions.create(model="fake-chat", messages=[{"role": "user", "content": "x"}])
    assert fake.wait_for_disconnects(1, timeout=2.0)
    (event,) = fake.disconnects
    assert event["phase"] == "delay" and event["path"] == "/v1/chat/completions"
    rec = fake.chat_requests[0]
    assert 0.2 < event["t"] - rec["t"] < 1.5
    assert rec["status"] == 499
    assert fake.wait_until(lambda: fake.in_flight_chat == 0, 2.0)


def test_stream_disconnect_midway_is_recorded(fake: FakeLLM, client: openai.OpenAI) -> None:
    fake.set_stream_chunk_delay(0.05)
    words = " ".join(f"w{i}" for i in range(60))
    stream = client.chat.completions.create(
        model="fake-chat", messages=[{"role": "user", "content": words}], stream=True
    )
    got = []
    for chunk in stream:
        got.append(chunk)
        if len(got) == 3:
            break
    stream.close()
    assert fake.wait_for_disconnects(1, timeout=3.0)
    event = fake.disconnects[0]
    assert event["phase"] == "stream" and 3 <= event["chunks_sent"] < 20
    assert fake.wait_until(lambda: fake.in_flight_chat == 0, 2.0)


def test_broken_stream_aborts_connection(fake: FakeLLM, url: str) -> None:
    fake.break_next_stream(after_chunks=2)
    body = {"model": "m", "messages": [{"role": "user", "content": "a b c d e f"}], "stream": True}
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r,
    ):
        list(r.iter_lines())
    assert fake.wait_until(lambda: len(fake.aborted_streams) == 1, 2.0)
    assert fake.disconnects == []
    assert fake.aborted_streams[0]["mode"] == "abort"
    assert fake.aborted_streams[0]["chunks_sent"] == 2
    # The next stream is whole again.
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        assert [line for line in r.iter_lines() if line][-1] == "data: [DONE]"
    # "truncate" ends the body cleanly but early: no finish chunk, no [DONE].
    fake.break_next_stream(after_chunks=3, mode="truncate")
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r:
        events = [line for line in r.iter_lines() if line]
    assert len(events) == 3 and "data: [DONE]" not in events
    assert fake.wait_until(lambda: len(fake.aborted_streams) == 2, 2.0)
    assert fake.aborted_streams[1]["mode"] == "truncate"


def test_concurrency_accounting(fake: FakeLLM, url: str) -> None:
    fake.set_delay(0.4)

    def call(i: int) -> int:
        body = {"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]}
        return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(call, i) for i in range(4)]
        assert fake.wait_until(lambda: fake.in_flight_chat == 4, 3.0)
        assert [f.result() for f in futures] == [200] * 4
    assert fake.max_concurrent_chat == 4
    assert fake.in_flight_chat == 0
    fake.reset()
    assert fake.max_concurrent_chat == 0 and fake.requests == []


async def test_async_client_and_async_wait(fake: FakeLLM, url: str) -> None:
    fake.set_delay(0.1)
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0) as c:
        results = await asyncio.gather(
            *(
                c.chat.completions.create(
                    model="fake-chat", messages=[{"role": "user", "content": f"n{i}"}]
                )
                for i in range(3)
            )
        )
    assert await fake.wait_until_async(lambda: fake.count("chat") == 3)
    assert sorted(r.choices[0].message.content.split(" ")[1] for r in results) == [
        "n0",
        "n1",
        "n2",
    ]
    assert fake.max_concurrent_chat == 3


def test_serve_helper_and_bad_requests() -> None:
    with serve_fake_llm(embedding_dim=64) as fake:
        url = fake.url
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        bad = httpx.post(
            f"{url}/v1/chat/completions",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 400 and "message" in bad.json()["error"]
        bad = httpx.post(f"{url}/v1/embeddings", json={"model": "e", "input": [{"a": 1}]})
        assert bad.status_code == 400
        bad = httpx.post(f"{url}/v1/rerank", json={"model": "r", "query": "q", "documents": [1]})
        assert bad.status_code == 400
        emb = httpx.post(f"{url}/v1/embeddings", json={"model": "e", "input": "x"}).json()
        assert len(emb["data"][0]["embedding"]) == 64
        assert fake.prompts() == [""]
        assert [r["status"] for r in fake.requests] == [200, 400, 400, 400, 200]
    assert fake.url is None


def test_entity_candidates_shapes() -> None:
    from sparkstack_testing.fake_llm import entity_candidates

    text = (
        "The Unit0Alpha talks to Unit0Beta via HTTP_TIMEOUT.\n"
        "def load_settings(path):\n    return ConfigLoader(path).read()  # os.environ\n"
        "However, New York City hosts the NVIDIA office."
    )
    assert entity_candidates(text, limit=10) == [
        "Unit0Alpha",
        "Unit0Beta",
        "HTTP_TIMEOUT",
        "load_settings",
        "ConfigLoader",
        "os.environ",
        "New York City",
        "NVIDIA",
    ]
    assert entity_candidates(text, limit=3) == ["Unit0Alpha", "Unit0Beta", "load_settings"]
