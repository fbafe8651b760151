"""The embedded servers are the real thing: pgvector, Redis commands, JetStream, persistence."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis
from nats.js.api import StorageType
from sparkstack.infra import EmbeddedInfra, InfraError, NatsServer, ValkeyServer


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_pgvector_cosine_distance_orders_rows(postgres_dsn: str) -> None:
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await conn.execute("CREATE TEMP TABLE items (name text, embedding vector(3))")
        await conn.executemany(
            "INSERT INTO items VALUES ($1, $2::vector)",
            [
                ("opposite", "[-1,0,0]"),
                ("same", "[2,0,0]"),
                ("orthogonal", "[0,1,0]"),
                ("close", "[1,0.1,0]"),
            ],
        )
        rows = await conn.fetch(
            "SELECT name, embedding <=> '[1,0,0]'::vector AS distance FROM items ORDER BY distance"
        )
    finally:
        await conn.close()

    assert [r["name"] for r in rows] == ["same", "close", "orthogonal", "opposite"]
    assert [round(r["distance"], 3) for r in rows] == [0.0, 0.005, 1.0, 2.0]


async def test_valkey_speaks_redis(redis_url: str) -> None:
    client = aioredis.from_url(redis_url)
    key = _unique("key")
    try:
        assert await client.set(key, "value")
        assert await client.get(key) == b"value"

        await client.lpush(f"{key}:list", "a", "b", "c")
        assert await client.lrange(f"{key}:list", 0, -1) == [b"c", b"b", b"a"]

        assert await client.expire(key, 100)
        assert 0 < await client.ttl(key) <= 100
        assert await client.ttl(f"{key}:list") == -1

        assert (await client.info("server"))["server_name"] == "valkey"
    finally:
        await client.aclose()


async def test_jetstream_publish_and_pull(nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    stream = _unique("jobs")
    try:
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        for i in range(3):
            ack = await js.publish(f"{stream}.new", f"job-{i}".encode())
            assert ack.stream == stream and ack.seq == i + 1

        sub = await js.pull_subscribe(f"{stream}.>", durable="worker", stream=stream)
        msgs = await sub.fetch(3, timeout=5)
        assert [m.data for m in msgs] == [b"job-0", b"job-1", b"job-2"]
        for msg in msgs:
            await msg.ack_sync()

        info = await js.consumer_info(stream, "worker")
        assert info.num_ack_pending == 0 and info.num_pending == 0
        await js.delete_stream(stream)
    finally:
        await nc.close()


async def test_postgres_data_survives_restart(infra: EmbeddedInfra) -> None:
    table = _unique("kept")
    conn = await asyncpg.connect(infra.postgres_dsn)
    await conn.execute(f"CREATE TABLE {table} (v text)")
    await conn.execute(f"INSERT INTO {table} VALUES ('before restart')")
    await conn.close()
    old_pid, port = infra.postgres.pid, infra.postgres.port

    infra.postgres.restart()

    assert infra.postgres.pid != old_pid and infra.postgres.port == port
    assert old_pid is not None and _group_gone(old_pid)
    conn = await asyncpg.connect(infra.postgres_dsn)
    try:
        assert await conn.fetchval(f"SELECT v FROM {table}") == "before restart"
    finally:
        await conn.close()


async def test_jetstream_messages_survive_nats_restart(infra: EmbeddedInfra) -> None:
    stream = _unique("queued")
    nc = await nats.connect(infra.nats_url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[stream], storage=StorageType.FILE)
    await js.publish(stream, b"queued before restart")
    await nc.close()

    infra.nats.restart()

    nc = await nats.connect(infra.nats_url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(stream, durable="worker", stream=stream)
        (msg,) = await sub.fetch(1, timeout=5)
        assert msg.data == b"queued before restart"
        await msg.ack_sync()
        await js.delete_stream(stream)
    finally:
        await nc.close()


async def test_valkey_data_survives_restart(infra: EmbeddedInfra) -> None:
    key = _unique("kept")
    client = aioredis.from_url(infra.redis_url)
    await client.set(key, "before restart")
    await client.aclose()

    infra.valkey.restart()

    client = aioredis.from_url(infra.redis_url)
    try:
        assert await client.get(key) == b"before restart"
    finally:
        await client.aclose()


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    with EmbeddedInfra(tmp_path) as stack:
        pids = {server.name: server.pid for server in stack.servers}
        ports = {server.name: server.port for server in stack.servers}
        assert all(server.running for server in stack.servers)

    for name, pid in pids.items():
        assert pid is not None and _group_gone(pid), f"{name} (pid {pid}) still alive"
    assert not any(server.running for server in stack.servers)
    stack.stop()  # idempotent

    stack.start()
    try:
        assert {server.name: server.port for server in stack.servers} == ports
    finally:
        stack.stop()


class _BrokenValkey(ValkeyServer):
    def _command(self) -> list[str]:
        return [*super()._command(), "--no-such-directive", "x"]


def test_failed_start_reports_log_tail(tmp_path: Path) -> None:
    server = _BrokenValkey(tmp_path / "valkey")
    with pytest.raises(InfraError, match="no-such-directive"):
        server.start()
    assert not server.running
    server.stop()


def test_fixed_port_in_use_is_a_clear_error(infra: EmbeddedInfra, tmp_path: Path) -> None:
    clash = ValkeyServer(tmp_path / "valkey", port=infra.valkey.port)
    with pytest.raises(InfraError, match="already in use"):
        clash.start()


def test_second_launcher_on_same_data_dir_is_refused(infra: EmbeddedInfra) -> None:
    twin = ValkeyServer(infra.valkey.data_dir)
    with pytest.raises(InfraError, match="already running"):
        twin.start()


def _cmdline_and_conf_mode(server: ValkeyServer | NatsServer) -> tuple[bytes, int]:
    cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes()
    return cmdline, (server.data_dir / "auth.conf").stat().st_mode


async def test_valkey_and_nats_with_credentials_refuse_anonymous_clients(tmp_path: Path) -> None:
    """The local stack runs Valkey and NATS with a password and a token: another user on the
    machine reaches neither without them, and neither appears on a command line."""
    import secrets
    import socket

    from redis.exceptions import AuthenticationError, ResponseError

    password, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    infra = EmbeddedInfra(tmp_path, valkey_password=password, nats_token=token)
    with infra:
        for server in (infra.valkey, infra.nats):
            cmdline, mode = _cmdline_and_conf_mode(server)
            assert password.encode() not in cmdline and token.encode() not in cmdline
            assert mode & 0o077 == 0
        anonymous = aioredis.from_url(infra.redis_url)
        with pytest.raises((AuthenticationError, ResponseError)):
            await anonymous.set("k", "v")
        await anonymous.aclose()
        client = aioredis.from_url(infra.redis_url, password=password)
        assert await client.set("k", "v")
        await client.aclose()
        with socket.create_connection(("127.0.0.1", infra.nats.port), timeout=5) as sock:
            info = sock.recv(4096)
            assert b'"auth_required":true' in info
            sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
            assert b"Authorization Violation" in sock.recv(4096)
        nc = await nats.connect(infra.nats_url, token=token, max_reconnect_attempts=0)
        assert (await nc.jetstream().account_info()).streams >= 0
        await nc.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="only as root does PostgreSQL run as another user")
async def test_postgres_starts_from_a_checkout_only_root_can_enter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone under /root or a `mktemp -d` (0700): PostgreSQL runs as `nobody`, so its
    binaries are copied where that user can reach them, with the shared libraries their RPATH
    points to (initdb failed on libpq before)."""
    from sparkstack import infra

    version, bin_dir = infra.postgres_bin_dir()
    package = bin_dir.parent.parent
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    site = private / "site-packages"
    shutil.copytree(bin_dir.parent, site / package.name / bin_dir.parent.name, symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", site / f"{package.name}.libs")
    copied = site / package.name / bin_dir.parent.name / "bin"
    assert not infra._reachable(copied / "postgres")
    monkeypatch.setattr(infra, "postgres_bin_dir", lambda v=None: (version, copied))
    fresh_tmp = tmp_path / "tmp"  # no copy from an earlier run to reuse
    fresh_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fresh_tmp))

    server = infra.PostgresServer(tmp_path / "pg", fsync=False)
    server.start()
    try:
        conn = await asyncpg.connect(server.dsn)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")  # extensions load too
        await conn.close()
    finally:
        server.stop()
