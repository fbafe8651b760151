"""The services' HTTP client against real servers: a uvicorn app for the well-behaved
cases, raw sockets for the servers that hang, break off or talk nonsense."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from sparkstack_common import http_wire
from sparkstack_common.http import HTTP, HTTPError, HTTPTimeout
from sparkstack_testing.serve import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from support import self_signed_certificate

BIG = bytes(range(256)) * 20_000  # 5 MB


def _app() -> Starlette:
    now: dict[str, int] = {}  # calls in the handler, by the caller's group
    most: dict[str, int] = {}

    async def echo(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": dict(request.headers),
                "body": (await request.body()).decode(),
                "peer": request.client.port if request.client else None,
            },
            headers={"x-one": "1"},
        )

    async def pieces(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(5):
                yield f"piece {i};".encode()
                await asyncio.sleep(0.02)

        return StreamingResponse(gen(), media_type="text/event-stream")

    async def big(request: Request) -> Response:
        return Response(BIG, media_type="application/octet-stream")

    async def big_stream(request: Request) -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            for i in range(0, len(BIG), 100_000):
                yield BIG[i : i + 100_000]

        return StreamingResponse(gen())

    async def slow(request: Request) -> JSONResponse:
        group = request.query_params.get("group", "")
        now[group] = now.get(group, 0) + 1
        most[group] = max(most.get(group, 0), now[group])
        try:
            await asyncio.sleep(float(request.query_params.get("s", "0.2")))
        finally:
            now[group] -= 1
        return JSONResponse({"most": most[group]})

    async def closing(request: Request) -> Response:
        return Response(b"bye", headers={"connection": "close"})

    async def nothing(request: Request) -> Response:
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["GET", "POST", "PUT"]),
            Route("/pieces", pieces),
            Route("/big", big),
            Route("/big-stream", big_stream),
            Route("/slow", slow),
            Route("/close", closing),
            Route("/nothing", nothing, methods=["DELETE"]),
        ]
    )


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_asgi(_app()) as base:
        yield base


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


def replying(
    reply: bytes,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    """A raw server's handler: reads one request, sends ``reply`` as it is, hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(reply)
        await writer.drain()
        writer.close()

    return handle


async def test_json_request_and_answer(url: str) -> None:
    async with HTTP() as http:
        r = await http.post(
            f"{url}/echo?a=1",
            json={"q": "é"},
            params={"b": "x y"},
            # a length of the caller's own would contradict the body: the client sets it
            headers={"X-Key": "k", "Content-Length": "999"},
        )
    assert r.status_code == 200
    sent = r.json()
    assert sent["method"] == "POST" and sent["path"] == "/echo"
    assert sent["query"] == "a=1&b=x+y"
    assert sent["body"] == '{"q":"é"}'
    assert sent["headers"]["content-type"] == "application/json"
    assert sent["headers"]["x-key"] == "k"
    assert sent["headers"]["content-length"] == str(len('{"q":"é"}'.encode()))
    assert sent["headers"]["host"] == url.removeprefix("http://")
    assert r.headers["x-one"] == "1" and r.headers.get("content-type") == "application/json"


async def test_connections_are_kept_and_reused(url: str) -> None:
    async with HTTP() as http:
        peers = {(await http.get(f"{url}/echo")).json()["peer"] for _ in range(5)}
        assert len(peers) == 1
        # a server that says close: the next request opens a new connection and succeeds
        assert (await http.get(f"{url}/close")).text == "bye"
        assert (await http.get(f"{url}/echo")).json()["peer"] not in peers


async def test_bodies_without_content_and_large_ones(url: str) -> None:
    async with HTTP() as http:
        r = await http.request("DELETE", f"{url}/nothing")
        assert (r.status_code, r.content) == (204, b"")
        assert (await http.get(f"{url}/big")).content == BIG
        upload = BIG[:300_000].hex()
        echoed = await http.request("PUT", f"{url}/echo", content=upload.encode())
        assert echoed.json()["body"] == upload


async def test_a_streamed_answer_arrives_in_pieces(url: str) -> None:
    async with HTTP() as http:
        async with http.stream("GET", f"{url}/pieces") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            chunks = [c async for c in r.iter_chunks()]
        assert b"".join(chunks) == b"".join(f"piece {i};".encode() for i in range(5))
        assert len(chunks) > 1
        # read to its end: the connection serves the next request
        async with http.stream("GET", f"{url}/big-stream") as r:
            got = bytearray()
            async for chunk in r.iter_chunks():
                got += chunk
                await asyncio.sleep(0)  # a slow reader: the socket is paused, nothing lost
        assert bytes(got) == BIG
        r2 = await http.open("GET", f"{url}/big-stream")
        assert await r2.read() == BIG
        r2.close()


async def test_concurrent_calls_beyond_the_limit_wait_their_turn(url: str) -> None:
    async with HTTP(max_connections=2) as http:
        answers = await asyncio.gather(
            *(http.get(f"{url}/slow", params={"s": "0.1", "group": "limit"}) for _ in range(6))
        )
    assert all(a.status_code == 200 for a in answers)
    assert max(a.json()["most"] for a in answers) <= 2


async def test_nobody_listening_is_an_http_error() -> None:
    async with raw_server(_read_request) as base:
        pass  # closed: the port refuses now
    async with HTTP() as http:
        with pytest.raises(HTTPError) as caught:
            await http.get(f"{base}/x")
    assert not isinstance(caught.value, HTTPTimeout)
    assert str(caught.value).startswith("ConnectionRefusedError: ")


async def test_a_server_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async with raw_server(silent) as base, HTTP(timeout=0.3) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HTTPTimeout, match="no answer in time"):
            await http.post(f"{base}/x", json={})
        assert loop.time() - started < 1.5
        with pytest.raises(HTTPTimeout):
            await http.open("POST", f"{base}/x", json={}, timeout=0.2)


async def test_the_read_timeout_is_per_byte_not_per_answer() -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        for _ in range(6):
            await asyncio.sleep(0.1)
            writer.write(b"1\r\nx\r\n")
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.5)  # a stall after the answer is none of the caller's business
        writer.close()

    async with raw_server(dribble) as base, HTTP(timeout=0.3) as http:
        r = await http.get(f"{base}/x")  # 0.6 s in all, never 0.3 s without a byte
        assert r.content == b"xxxxxx"


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\npart\r\n",
    ],
    ids=["content-length", "chunked"],
)
async def test_a_server_breaking_off_mid_answer_is_an_error_not_a_short_body(
    reply: bytes,
) -> None:
    async with raw_server(replying(reply)) as base, HTTP() as http:
        with pytest.raises(HTTPError) as caught:
            await http.get(f"{base}/x")
        assert str(caught.value) == "connection closed before the answer was complete"
        r = await http.open("GET", f"{base}/x")
        with pytest.raises(HTTPError):
            async for _ in r.iter_chunks():
                pass
        r.close()


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    """One answer per connection, then the server hangs up: the next call opens another
    instead of writing into the dead one."""
    connections = 0

    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with raw_server(one_answer) as base, HTTP(timeout=2) as http:
        for _ in range(3):
            assert (await http.get(f"{base}/x")).content == b"ok"
            await asyncio.sleep(0.05)  # the close arrives
    assert connections == 3


async def test_host_and_length_are_sent_once_whatever_the_caller_passes() -> None:
    heads: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    async with raw_server(record) as base, HTTP() as http:
        await http.post(
            f"{base}/x", content=b"abc", headers={"Host": "evil.example", "Content-Length": "9"}
        )
    lines = heads[0].lower().split(b"\r\n")
    assert [line for line in lines if line.startswith(b"host:")] == [
        b"host: " + base.removeprefix("http://").encode()
    ]
    assert [line for line in lines if line.startswith(b"content-length:")] == [b"content-length: 3"]


async def test_an_idle_connection_is_dropped_before_the_server_would_drop_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_wire, "IDLE_SECONDS", 0.3)
    async with HTTP() as http:
        first = (await http.get(f"{url}/echo")).json()["peer"]
        assert (await http.get(f"{url}/echo")).json()["peer"] == first
        await asyncio.sleep(0.5)
        assert (await http.get(f"{url}/echo")).json()["peer"] != first


async def test_a_fast_stream_read_slowly_is_held_back_not_buffered() -> None:
    """Back-pressure: while the caller does not read, the socket is not read either, so a
    backend producing faster than its caller cannot fill the orchestrator's memory."""
    total = 64 << 20
    written = 0

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % total)
        piece = b"x" * 65536
        with contextlib.suppress(ConnectionError):
            while written < total:
                writer.write(piece)
                await writer.drain()
                written += len(piece)

    async with raw_server(flood) as base, HTTP() as http:
        async with http.stream("GET", f"{base}/x") as r:
            consumed, ahead = 0, 0
            async for chunk in r.iter_chunks():
                consumed += len(chunk)
                if consumed % (2 << 20) < len(chunk):  # every 2 MB: a slow moment
                    await asyncio.sleep(0.05)
                    ahead = max(ahead, written - consumed)
        assert consumed == total
    # at most the high-water mark plus what the kernel's socket buffers hold
    assert ahead < 24 << 20


class _Transport:
    def __init__(self) -> None:
        self.reading = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


async def test_an_answer_complete_while_held_back_leaves_its_connection_reading() -> None:
    """The last read both completes the answer and crosses the high-water mark: the
    connection goes back to the pool paused, and the next answer on it must be read."""
    conn = http_wire.Connection(asyncio.get_running_loop())
    transport = _Transport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.streaming = True
    body = b"x" * (http_wire.STREAM_HIGH_WATER + 10)
    conn.data_received(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    assert conn.complete and conn.reusable() and not transport.reading
    conn.begin()
    assert transport.reading and not conn.streaming


async def test_nonsense_from_the_server_is_an_http_error() -> None:
    async def nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with raw_server(nonsense) as base, HTTP(timeout=2) as http:
        with pytest.raises(HTTPError, match="malformed answer"):
            await http.get(f"{base}/x")


async def test_an_endless_answer_head_is_refused_not_buffered() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nx-filler: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(256):  # 1 MiB of one header's value, in small pieces
                writer.write(b"a" * 4096)
                await writer.drain()
                await asyncio.sleep(0.001)

    async with raw_server(endless) as base, HTTP(timeout=5) as http:
        with pytest.raises(HTTPError, match="no end of the answer's head"):
            await http.get(f"{base}/x")


async def test_an_answer_that_ends_with_the_connection_is_whole() -> None:
    old_style = replying(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it")
    async with raw_server(old_style) as base, HTTP() as http:
        assert (await http.get(f"{base}/x")).content == b"all of it"
        assert (await http.get(f"{base}/x")).content == b"all of it"  # a new connection


async def test_leaving_a_stream_early_closes_the_connection() -> None:
    """The backend must see the caller go (it stops generating)."""
    gone = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            for _ in range(200):
                writer.write(b"5\r\ntoken\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)
        except ConnectionError:
            gone.set()
            return
        with contextlib.suppress(ConnectionError):
            if await reader.read(1) == b"":
                gone.set()

    async with raw_server(endless) as base, HTTP() as http:
        async with http.stream("POST", f"{base}/x", json={}) as r:
            async for _ in r.iter_chunks():
                break
        await asyncio.wait_for(gone.wait(), 5)


async def test_a_cancelled_call_does_not_leave_its_connection_behind(url: str) -> None:
    async with HTTP(max_connections=1) as http:
        call = asyncio.create_task(http.get(f"{url}/slow", params={"s": "5"}))
        await asyncio.sleep(0.2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        # the one slot is free again, and the half-read connection was not reused
        r = await asyncio.wait_for(http.get(f"{url}/echo"), 3)
        assert r.status_code == 200


async def test_headers_that_would_split_the_request_are_refused(url: str) -> None:
    async with HTTP() as http:
        for headers in (
            {"x-key": "k\r\nx-admin: yes"},
            {"x-key": "k\rx"},
            {"x-key": "k\nx"},
            {"x-k\rey": "k"},
            {"x-k\ney": "k"},
            {"x-admin: yes\r\nx-key": "k"},
            {"x-admin:yes": "k"},
        ):
            with pytest.raises(ValueError, match="line break"):
                await http.get(f"{url}/echo", headers=headers)
        # the host is the URL's, whatever a caller's headers say
        sent = (await http.get(f"{url}/echo", headers={"Host": "evil.example"})).json()
        assert sent["headers"]["host"] == url.removeprefix("http://")
        with pytest.raises(HTTPError, match="credentials in a URL"):
            await http.get(url.replace("http://", "http://user:secret@") + "/echo")
        with pytest.raises(HTTPError, match="not an http"):
            await http.get("ftp://example.org/x")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@contextlib.asynccontextmanager
async def tls_server(certificate: tuple[str, str]) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecret")
            await writer.drain()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        server.close()


async def test_https_verifies_the_server(
    certificate: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate nobody the system trusts signed is refused; one the operator trusts
    (SSL_CERT_FILE, as for an internal CA) is accepted."""
    async with tls_server(certificate) as base:
        async with HTTP(timeout=5) as http:
            with pytest.raises(HTTPError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"{base}/x")
        monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
        async with HTTP(timeout=5) as http:
            assert (await http.get(f"{base}/x")).content == b"secret"


async def test_a_connection_that_never_completes_times_out() -> None:
    """A server that accepts and never speaks TLS: the connect timeout, not the minute-long
    read timeout, ends the wait."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with raw_server(mute) as base, HTTP(timeout=30, connect_timeout=0.3) as http:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(HTTPTimeout, match=r"no connection to 127\.0\.0\.1:\d+ in time"):
            await http.get(base.replace("http://", "https://") + "/x")
        assert loop.time() - started < 2
