"""The embedded embedding model `sparkstack up` serves when no embedding backend answers: the
OpenAI embeddings protocol behind its key, loaded from the wheel without the network, and an
embedding that knows what texts are about."""

from __future__ import annotations

import base64
import math
import socket
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from sparkstack import embedder
from support import serve_asgi

KEY = "embedder-test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_asgi(embedder.create_app(KEY)) as served:
        yield served


def post(url: str, body: dict, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}/v1/embeddings", json=body, headers=headers, timeout=30)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_the_model_loads_from_the_wheel_without_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    vectors = embedder.load_model().embed(["a text"])
    assert vectors.shape == (1, embedder.DIMENSIONS)


def test_embeddings_in_openai_shapes(url: str) -> None:
    r = post(url, {"model": embedder.MODEL, "input": ["first text", "second text"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == embedder.MODEL and body["usage"]["prompt_tokens"] > 0
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == embedder.DIMENSIONS for d in body["data"])
    one = post(url, {"model": embedder.MODEL, "input": "first text"}).json()["data"]
    assert one[0]["embedding"] == pytest.approx(body["data"][0]["embedding"], rel=1e-5)
    packed = post(
        url, {"model": embedder.MODEL, "input": "first text", "encoding_format": "base64"}
    ).json()["data"][0]["embedding"]
    unpacked = np.frombuffer(base64.b64decode(packed), dtype="<f4")
    assert unpacked.tolist() == pytest.approx(one[0]["embedding"], rel=1e-5)
    models = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    assert [m["id"] for m in models["data"]] == [embedder.MODEL]


def test_texts_about_the_same_thing_are_closer(url: str) -> None:
    question = "How is the area of a circle computed?"
    texts = [
        "def circle_area(radius): return math.pi * radius ** 2  # area of a circle",
        "def parse_json(path): read the file and decode its JSON document",
    ]
    q, on_topic, off_topic = (
        d["embedding"]
        for d in post(url, {"model": embedder.MODEL, "input": [question, *texts]}).json()["data"]
    )
    assert cosine(q, on_topic) > cosine(q, off_topic)


def test_refusals_say_why(url: str) -> None:
    assert post(url, {"model": embedder.MODEL, "input": "x"}, key=None).status_code == 401
    assert post(url, {"model": embedder.MODEL, "input": "x"}, key="wrong").status_code == 401
    wrong_model = post(url, {"model": "qwen3-embedding:0.6b", "input": "x"})
    assert wrong_model.status_code == 404
    assert embedder.MODEL in wrong_model.json()["error"]["message"]
    cases = {
        "input must be": {"model": embedder.MODEL, "input": []},
        "at most 2048": {"model": embedder.MODEL, "input": ["x"] * 2049},
        "characters": {"model": embedder.MODEL, "input": "x" * (embedder.MAX_INPUT_CHARS + 1)},
        "256 dimensions": {"model": embedder.MODEL, "input": "x", "dimensions": 1024},
    }
    for words, body in cases.items():
        r = post(url, body)
        assert r.status_code == 400 and words in r.json()["error"]["message"], (words, r.text)
    # probes need no key
    assert httpx.get(f"{url}/health").status_code == 200
