"""The orchestrator's pipelined Redis client: against the real Valkey where it can be, and
against raw sockets for the servers that break off, talk nonsense or fall silent.

redis-py (``admin``) is the independent look at what Valkey holds and who is connected."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from memory_support import clients_settle_at, unique
from orchestrator.redis_wire import Redis, RedisError, ReplyError, encode, parse_url
from support import self_signed_certificate

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def raw_server(handler: Handler, **kwargs: object) -> AsyncIterator[str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)  # type: ignore[arg-type]
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.close()


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One RESP command as a client sends it."""
    count = int((await reader.readline())[1:])
    args = []
    for _ in range(count):
        size = int((await reader.readline())[1:])
        args.append((await reader.readexactly(size + 2))[:-2])
    return args


async def test_concurrent_callers_share_one_connection_and_get_their_own_replies(
    redis_url: str, admin: aioredis.Redis
) -> None:
    client = Redis(redis_url)
    before = len(await admin.client_list())
    keys = [unique("k") for _ in range(300)]
    try:
        assert await asyncio.gather(*(client.execute("SET", k, k) for k in keys)) == [b"OK"] * 300
        assert await asyncio.gather(*(client.execute("GET", k) for k in keys)) == [
            k.encode() for k in keys
        ]
        await clients_settle_at(admin, before + 1)
        assert await client.execute("RPUSH", keys[0] + ":l", "a", b"b", 3) == 3
        assert await client.execute("LRANGE", keys[0] + ":l", 0, -1) == [b"a", b"b", b"3"]
        assert await client.execute("GET", unique("missing")) is None
    finally:
        await client.aclose()
        await admin.delete(*keys, keys[0] + ":l")


async def test_an_error_reply_reaches_its_own_caller_only(redis_url: str) -> None:
    client = Redis(redis_url)
    key = unique("k")
    try:
        results = await asyncio.gather(
            client.execute("SET", key, "v"),
            client.execute("NO-SUCH-COMMAND"),
            client.execute("INCR", key),  # not a number
            client.execute("GET", key),
            return_exceptions=True,
        )
        assert results[0] == b"OK" and results[3] == b"v"
        assert isinstance(results[1], ReplyError) and "unknown command" in str(results[1])
        assert isinstance(results[2], ReplyError) and "not an integer" in str(results[2])
        assert await client.execute("PING") == b"PONG"  # the connection carries on
    finally:
        await client.aclose()


async def test_credentials_and_database_from_the_url_or_apart(
    redis_url: str, admin: aioredis.Redis
) -> None:
    user, secret = unique("wm"), unique("pw")
    await admin.acl_setuser(
        user, enabled=True, passwords=[f"+{secret}"], keys="*", commands=["+@all"]
    )
    host = redis_url.removeprefix("redis://").split("/")[0]
    key = unique("k")
    try:
        client = Redis(f"redis://{user}@{host}/3", password=secret)
        assert await client.execute("SET", key, "in three") == b"OK"
        assert (await client.execute("ACL", "WHOAMI")).decode() == user
        await client.aclose()
        db3 = aioredis.Redis.from_url(f"redis://{host}/3")
        assert await db3.get(key) == b"in three" and await admin.get(key) is None
        await db3.delete(key)
        await db3.aclose()

        wrong = Redis(f"redis://{user}@{host}/0", password="not-it")
        with pytest.raises(RedisError, match="refused the connection: WRONGPASS") as refused:
            await wrong.execute("PING")
        assert "not-it" not in str(refused.value) and secret not in str(refused.value)
        # without a user name, the password is the default user's (which here has none)
        apart = Redis(redis_url, password="given-apart")
        with pytest.raises(RedisError, match="refused the connection") as refused:
            await apart.execute("PING")
        assert "given-apart" not in str(refused.value)
    finally:
        await admin.acl_deluser(user)


async def test_a_connection_broken_off_fails_what_waits_on_it_and_the_next_call_reconnects() -> (
    None
):
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        command = await read_command(reader)
        if connections == 1:  # the first connection dies with a command in flight
            writer.close()
            return
        assert command == [b"PING"]
        writer.write(b"+PONG\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(once) as url:
        client = Redis(url)
        with pytest.raises(RedisError, match=r"connection to Redis broke \(closed by the server\)"):
            await asyncio.wait_for(client.execute("PING"), 2)
        assert await asyncio.wait_for(client.execute("PING"), 2) == b"PONG"
        assert connections == 2
        await client.aclose()


async def test_nonsense_from_the_server_is_an_error_and_drops_the_connection() -> None:
    async def nonsense(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_command(reader)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(nonsense) as url:
        client = Redis(url)
        with pytest.raises(RedisError, match="unreadable"):
            await asyncio.wait_for(client.execute("PING"), 2)
        assert client._connection is not None and client._connection.closed
        await client.aclose()


async def test_a_silent_server_is_dropped_once_a_caller_gives_up_on_it() -> None:
    """A peer gone without a word: nothing comes back. The caller's deadline ends its wait,
    and the connection is replaced rather than kept for the next caller to wait on."""
    connections, hung_up = 0, 0

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections, hung_up
        connections += 1
        await reader.read()
        hung_up += 1  # the client closed this connection

    async with raw_server(silent) as url:
        client = Redis(url, stall_seconds=0.1)
        for _ in range(2):
            patient = asyncio.ensure_future(client.execute("GET", "k"))  # no deadline of its own
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.execute("PING"), 1.0)
            with pytest.raises(RedisError, match=r"^Redis stopped answering$"):
                # it shared the line: it learns why, and does not wait forever
                await asyncio.wait_for(patient, 2)
            await asyncio.sleep(0.05)
            assert hung_up == connections
        assert connections == 2
        await client.aclose()


async def test_a_slow_reply_is_not_mistaken_for_a_dead_connection(redis_url: str) -> None:
    """A caller that gives up sooner than ``stall_seconds`` leaves the connection alone; its
    late reply is dropped and the next caller gets its own."""
    client = Redis(redis_url, stall_seconds=1.0)
    try:
        assert await client.execute("SET", "wire-slow", "x") == b"OK"
        first = client._connection
        await asyncio.sleep(1.2)  # idle for longer than stall_seconds: that is not silence
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.execute("BLPOP", unique("never"), "0.5"), 0.1)
        assert await client.execute("GET", "wire-slow") == b"x"  # after BLPOP's nil
        assert client._connection is first and not first.closed
    finally:
        await client.aclose()


async def test_nobody_listening_is_an_error_within_the_connect_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(mute) as url:
        port = int(url.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(RedisError, match="unreachable: ConnectionRefusedError"):
        await Redis(f"redis://127.0.0.1:{port}/0").execute("PING")
    # TLS never completed: the connect timeout ends the wait
    async with raw_server(mute) as url:
        client = Redis(url.replace("redis://", "rediss://"), connect_timeout=0.3)
        with pytest.raises(RedisError, match=r"did not answer within 0\.3s"):
            await asyncio.wait_for(client.execute("PING"), 2)


async def test_tls_verifies_the_server(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """rediss:// is verified against the system's CAs, or an internal CA in SSL_CERT_FILE."""
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def pong(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            assert await read_command(reader) == [b"PING"]
            writer.write(b"+PONG\r\n")
            await writer.drain()
            await reader.read()

    async with raw_server(pong, ssl=context) as url:
        url = url.replace("redis://", "rediss://")
        with pytest.raises(RedisError, match="CERTIFICATE_VERIFY_FAILED"):
            await Redis(url).execute("PING")
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        client = Redis(url)
        assert await client.execute("PING") == b"PONG"
        await client.aclose()


def test_urls_and_what_is_printed_of_them() -> None:
    a = parse_url("rediss://me%40home@cache.internal:6380/2")
    assert (a.host, a.port, a.db, a.tls, a.username) == ("cache.internal", 6380, 2, True, "me@home")
    assert str(a) == "rediss://cache.internal:6380/2"
    b = parse_url("redis://127.0.0.1")
    assert (b.port, b.db, b.tls, b.username) == (6379, 0, False, None)
    password = "the Redis URL carries a password: give it apart from the URL"
    for bad, reason in (
        ("redis://:secret@127.0.0.1", password),
        ("redis://me:secret@127.0.0.1", password),
        ("http://127.0.0.1:6379", "a Redis URL starts with redis:// or rediss://, not 'http'"),
        ("redis://:6379/0", "the Redis URL names no host"),
        ("redis://127.0.0.1/zero", "the Redis URL's database must be a number, not 'zero'"),
        ("redis://127.0.0.1/X", "the Redis URL's database must be a number, not 'X'"),
        (
            "redis://127.0.0.1/0?password=secret",
            "the Redis URL has a query or fragment: settings travel apart from it",
        ),
        (
            "redis://127.0.0.1/0#x",
            "the Redis URL has a query or fragment: settings travel apart from it",
        ),
    ):
        with pytest.raises(ValueError) as refused:
            parse_url(bad)
        assert str(refused.value) == reason
    # the defaults the docstrings promise: a second to connect, five of silence
    client = Redis("redis://127.0.0.1")
    assert (client.connect_timeout, client.stall_seconds, client.max_waiting) == (1.0, 5.0, 1024)
    with pytest.raises(ValueError, match=r"^the Redis URL names a user but no password"):
        Redis("redis://me@127.0.0.1")


def test_commands_are_encoded_as_resp_arrays() -> None:
    assert encode(("SET", b"k\r\n", -5)) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n-5\r\n"
    assert encode(("GET", "ключ")) == "*2\r\n$3\r\nGET\r\n$8\r\nключ\r\n".encode()
    for bad, name in ((True, "bool"), (1.5, "float"), (None, "NoneType")):
        with pytest.raises(TypeError, match=f"bytes, str or int, not {name}$"):
            encode(("SET", "k", bad))


def test_a_password_in_the_redis_url_is_refused_at_start_up_and_not_repeated() -> None:
    from orchestrator.settings import Settings
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as refused:
        Settings(redis_url="redis://:hunter2@cache:6379/0")
    assert "carries a password" in str(refused.value) and "hunter2" not in str(refused.value)


async def test_silence_is_counted_from_the_last_byte_received() -> None:
    """Two commands in flight; the first is answered, the second is slow. Giving up on the
    second soon after the first answer leaves the connection alone."""
    connections = 0

    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_command(reader)
        await read_command(reader)
        await asyncio.sleep(1.2)
        writer.write(b"+FIRST\r\n")
        await writer.drain()
        await reader.read()

    async with raw_server(half) as url:
        client = Redis(url, stall_seconds=1.0)
        first = asyncio.ensure_future(client.execute("GET", "a"))
        second = asyncio.ensure_future(client.execute("GET", "b"))
        assert await asyncio.wait_for(first, 2) == b"FIRST"
        await asyncio.sleep(0.1)  # 1.3 s since the commands went out, 0.1 s since a byte came
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert client._connection is not None and not client._connection.closed
        assert connections == 1
        await client.aclose()


async def test_a_reset_connection_names_the_reset() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import socket
        import struct

        await read_command(reader)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # closing with linger 0 sends RST

    async with raw_server(reset) as url:
        client = Redis(url)
        with pytest.raises(RedisError, match="broke \\(ConnectionResetError"):
            await asyncio.wait_for(client.execute("PING"), 2)
        await client.aclose()


async def test_closing_the_client_hangs_up_and_fails_what_waits(
    redis_url: str, admin: aioredis.Redis
) -> None:
    await Redis(redis_url).aclose()  # never connected: nothing to close
    before = len(await admin.client_list())
    client = Redis(redis_url)
    assert await client.execute("PING") == b"PONG"
    await clients_settle_at(admin, before + 1)
    waiting = asyncio.ensure_future(client.execute("BLPOP", unique("never"), 2))
    await asyncio.sleep(0.1)
    await client.aclose()
    with pytest.raises(RedisError, match=r"^the client was closed$"):
        await waiting
    await clients_settle_at(admin, before)
    await client.aclose()  # twice is fine
    with pytest.raises(RedisError, match=r"^the client is closed$"):
        await client.execute("PING")


async def test_a_command_is_never_queued_on_a_closed_connection(redis_url: str) -> None:
    """It would wait for a reply that cannot come; it fails at once instead, and the next
    command opens a new connection."""
    client = Redis(redis_url)
    assert await client.execute("PING") == b"PONG"
    connection = client._connection
    assert connection is not None
    connection.abort(RedisError("gone"))
    with pytest.raises(RedisError, match=r"^the connection to Redis is closed$"):
        connection.send(encode(("PING",)))
    assert await client.execute("PING") == b"PONG"
    assert client._connection is not connection
    await client.aclose()


async def test_a_reply_nobody_asked_for_drops_the_connection() -> None:
    """Replies are matched to commands by their order: one too many means the two sides
    disagree, and nothing more read on that connection can be trusted."""
    connections = 0

    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_command(reader)
            except (asyncio.IncompleteReadError, ValueError):
                return
            writer.write(b"+PONG\r\n" + (b"+EXTRA\r\n" if connections == 1 else b""))
            await writer.drain()

    async with raw_server(chatty) as url:
        client = Redis(url)
        assert await asyncio.wait_for(client.execute("PING"), 2) == b"PONG"
        await asyncio.sleep(0.1)
        assert client._connection is not None and client._connection.closed
        assert await asyncio.wait_for(client.execute("PING"), 2) == b"PONG"
        assert connections == 2
        await client.aclose()


async def test_closing_while_the_connection_opens_keeps_nothing_open() -> None:
    """A client closed while its connection is still being set up (here: AUTH unanswered)
    tells its waiting caller so, and the half-open connection is hung up, not kept."""
    hung_up = asyncio.Event()

    async def mute_auth(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert (await read_command(reader))[0] == b"AUTH"
        await reader.read()
        hung_up.set()

    async with raw_server(mute_auth) as url:
        client = Redis(url, password="pw", connect_timeout=5)
        waiting = asyncio.ensure_future(client.execute("PING"))
        leaving = asyncio.ensure_future(client.execute("PING"))
        await asyncio.sleep(0.2)
        assert client._opening is not None
        # its own caller gives up the moment the opening ends: that cancellation wins
        client._opening.add_done_callback(lambda _: leaving.cancel())
        await client.aclose()
        with pytest.raises(RedisError, match=r"^the client was closed$"):
            await asyncio.wait_for(waiting, 2)
        with pytest.raises(asyncio.CancelledError):
            await leaving
        await asyncio.wait_for(hung_up.wait(), 2)
        assert client._connection is None


async def test_a_redis_that_falls_behind_refuses_more_than_it_may_queue() -> None:
    """Callers that gave up leave their commands on the connection: past ``max_waiting``
    a new command fails at once rather than queueing behind them."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent) as url:
        client = Redis(url, max_waiting=2, stall_seconds=60)
        for _ in range(2):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(client.execute("GET", "k"), 0.2)
        with pytest.raises(RedisError, match=r"^Redis is behind: 2 commands wait already$"):
            await client.execute("GET", "k")
        await client.aclose()


def test_the_renamed_pool_setting_is_refused_not_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.settings import Settings
    from pydantic import ValidationError

    monkeypatch.setenv("ORCHESTRATOR_REDIS_POOL_SIZE", "32")
    with pytest.raises(ValidationError, match="ORCHESTRATOR_REDIS_MAX_IN_FLIGHT"):
        Settings()
