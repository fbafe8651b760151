"""An instant OpenAI-compatible backend for benchmarks: fixed answers, no model, raw ASGI.

python benchmarks/fast_backend.py PORT
"""

from __future__ import annotations

import json
import sys

import uvicorn

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "bench",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
    }
).encode()
CHUNKS = [
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"bench",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"ok"},"finish_reason":null}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"bench",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]
VECTOR = json.dumps([0.03125] * 1024)


def embeddings(body: bytes) -> bytes:
    """One (identical) 1024-dimensional vector per input, as the OpenAI API answers."""
    inputs = json.loads(body or b"{}").get("input", "")
    count = len(inputs) if isinstance(inputs, list) else 1
    data = ",".join(
        f'{{"object":"embedding","index":{i},"embedding":{VECTOR}}}' for i in range(count)
    )
    return f'{{"object":"list","model":"bench","data":[{data}]}}'.encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path.endswith("/embeddings"):
        await _send(send, embeddings(body))
    elif path.endswith("/chat/completions") and b'"stream":true' in body.replace(b" ", b""):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path.endswith("/chat/completions"):
        await _send(send, COMPLETION)
    else:
        await _send(send, b'{"object":"list","data":[]}')


async def _send(send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
