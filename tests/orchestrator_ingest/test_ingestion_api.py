"""The ingestion API, the job store and the JetStream contract, against the real PostgreSQL
and NATS JetStream of the session (a database and a stream of this module's own)."""

from __future__ import annotations

import asyncio
import bz2
import gzip
import hashlib
import io
import json
import lzma
import os
import tarfile
import time
import tracemalloc
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import asyncpg
import httpx
import nats
import pytest
from fastapi import FastAPI
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from orchestrator.app import create_app
from orchestrator.ingest.sniffing import ArchiveSniffer, looks_like_tar
from orchestrator.settings import Settings
from sparkstack.infra import EmbeddedInfra
from sparkstack_common.ingestion.contract import (
    MSG_ID_HEADER,
    IngestLimits,
    IngestMessage,
    InvalidMessage,
    QueueSettings,
    encode_payload,
)
from sparkstack_common.ingestion.nats import (
    NatsLink,
    QueueConfigError,
    ensure_consumer,
    ensure_stream,
)
from sparkstack_common.ingestion.outbox import OutboxRelay
from sparkstack_common.ingestion.spool import CompressedSpool, UploadTooLarge
from sparkstack_common.ingestion.store import (
    MAX_LISTED,
    JobStore,
    UploadNotFound,
    initial_progress,
)
from sparkstack_testing.serve import wait_healthy
from support import ADMIN_KEY, bearer, free_port, fresh_database, serve_asgi

AUTH = bearer(ADMIN_KEY)

SUFFIX = uuid.uuid4().hex[:8]
QUEUE = QueueSettings(stream=f"INGEST_T{SUFFIX}", subject_prefix=f"t{SUFFIX}.ingest")
LIMIT = 60 * 1024 * 1024


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def ingest_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh database: the schema is created from nothing, and no other test sees it."""
    async with fresh_database(postgres_dsn, "ingest") as dsn:
        yield dsn


def make_settings(dsn: str, nats_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "postgres_dsn": dsn,
        "nats_url": nats_url,
        "ingest_limits": IngestLimits(max_upload_bytes=LIMIT),
        "queue": QUEUE,
        "ingest_relay_interval_seconds": 0.5,
        "ingest_nats_reconnect_seconds": 0.25,
        "ingest_publish_timeout_seconds": 2.0,
        "ingest_db_timeout_seconds": 3.0,
        "memory_enabled": False,
        "admin_key": ADMIN_KEY,
    }
    if "max_upload_bytes" in overrides:
        values["ingest_limits"] = IngestLimits(max_upload_bytes=overrides.pop("max_upload_bytes"))
    values.update(overrides)
    return Settings(**values)


def make_app(settings: Settings) -> FastAPI:
    """The orchestrator's app with memory off: the ingestion routes behind the real Gate."""
    return create_app(settings)


@pytest.fixture(scope="module")
def settings(ingest_dsn: str, nats_url: str) -> Settings:
    return make_settings(ingest_dsn, nats_url)


@pytest.fixture(scope="module")
def base_url(settings: Settings) -> Iterator[str]:
    with serve_asgi(make_app(settings)) as url:
        # ready once its tables exist: the app creates them after it starts serving, and a
        # test that counts rows at once would otherwise race it
        wait_healthy(f"{url}/ready")
        yield url


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60, headers=AUTH) as c:
        yield c


@pytest.fixture(scope="module")
async def pool(ingest_dsn: str, base_url: str) -> AsyncIterator[asyncpg.Pool]:
    # base_url first: the app is ready, its schema created.
    pool = await asyncpg.create_pool(ingest_dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture(scope="module")
async def store(pool: asyncpg.Pool) -> JobStore:
    store = JobStore(pool, QUEUE)
    await store.ensure_schema()
    return store


@pytest.fixture(scope="module")
async def js(nats_url: str) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(nats_url, max_reconnect_attempts=-1, reconnect_time_wait=0.25)
    yield nc.jetstream()
    await nc.close()


class Consumer:
    """A durable pull consumer over this module's ingestion subjects."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js
        self.sub: Any = None

    async def bind(self) -> None:
        self.sub = await self.js.pull_subscribe(
            QUEUE.filter_subject, durable="tests", stream=QUEUE.stream
        )

    async def take(self, wait: float = 1.0, jobs: Iterable[str] | None = None) -> list[Any]:
        """Every message available within ``wait`` seconds, acked; with ``jobs``, only those
        of these jobs (another test's late messages are dropped)."""
        wanted = None if jobs is None else set(jobs)
        taken = []
        while True:
            try:
                msgs = await self.sub.fetch(batch=10, timeout=wait)
            except TimeoutError:
                return taken
            for msg in msgs:
                await msg.ack_sync()
                if wanted is None or msg.headers[MSG_ID_HEADER].split(":")[0] in wanted:
                    taken.append(msg)
            wait = 0.3

    async def take_until(
        self, count: int, within: float, jobs: Iterable[str] | None = None
    ) -> list[Any]:
        """Messages (of ``jobs``, if given) until ``count`` arrived or ``within`` seconds
        passed (riding out the test client's own reconnect after a NATS restart)."""
        deadline = time.monotonic() + within
        taken: list[Any] = []
        while len(taken) < count and time.monotonic() < deadline:
            try:
                taken += await self.take(wait=0.5, jobs=jobs)
            except Exception:
                await asyncio.sleep(0.2)
        return taken


@pytest.fixture(scope="module")
async def module_consumer(js: JetStreamContext, base_url: str) -> Consumer:
    await ensure_stream(js, QUEUE)  # the app would create it on its first publish
    consumer = Consumer(js)
    await consumer.bind()
    return consumer


@pytest.fixture
async def consumer(module_consumer: Consumer) -> Consumer:
    """The queue as this test finds it: what earlier tests published (in any order, some
    never take their messages) is taken first."""
    await module_consumer.take(wait=0.2)
    return module_consumer


async def count_rows(pool: asyncpg.Pool) -> tuple[int, int, int, int]:
    return (
        await pool.fetchval("SELECT count(*) FROM ingest_uploads"),
        await pool.fetchval("SELECT count(*) FROM ingest_upload_chunks"),
        await pool.fetchval("SELECT count(*) FROM ingest_jobs"),
        await pool.fetchval("SELECT count(*) FROM ingest_outbox"),
    )


def make_tar(fmt: str, files: dict[str, bytes]) -> bytes:
    mode = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[fmt]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def make_archive(fmt: str, files: dict[str, bytes]) -> bytes:
    return make_zip(files) if fmt == "zip" else make_tar(fmt, files)


SOURCE = {"pkg/__init__.py": b"", "pkg/app.py": b"def main():\n    return 42\n"}


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    if param is not None:
        assert error["param"] == param
    return error


class StreamedBody:
    """A multipart body produced chunk by chunk (sent with chunked transfer encoding, so the
    server sees no Content-Length), counting how much the client was asked for."""

    def __init__(self, block: bytes, total: int, filename: str = "big.txt", **fields: str):
        self.boundary = uuid.uuid4().hex
        self.block = block
        self.total = total
        self.filename = filename
        self.fields = fields
        self.pulled = 0
        self.sha = hashlib.sha256()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def stream(self) -> AsyncIterator[bytes]:
        for piece in self:
            yield piece

    def __iter__(self) -> Iterator[bytes]:
        b = self.boundary
        for name, value in self.fields.items():
            yield (
                f'--{b}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            ).encode()
        yield (
            f'--{b}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{self.filename}"\r\nContent-Type: text/plain\r\n\r\n'
        ).encode()
        left = self.total
        while left > 0:
            piece = self.block if left >= len(self.block) else self.block[:left]
            left -= len(piece)
            self.pulled += len(piece)
            self.sha.update(piece)
            yield piece
        yield f"\r\n--{b}--\r\n".encode()


def answer_to_unfinished_upload(base_url: str, limit: int) -> bytes:
    """Send headers and a bit more than ``limit`` bytes of a chunked multipart body that never
    ends, then wait for the status line (the server must not wait for the rest)."""
    import socket

    host, port = base_url.removeprefix("http://").split(":")
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="endless.bin"\r\n\r\n'
    ).encode()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/documents/ingest HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {ADMIN_KEY}\r\n".encode()
            + b"Transfer-Encoding: chunked\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n".encode()
        )
        piece = b"y" * 65536
        chunks = [head] + [piece] * (limit // len(piece) + 4)
        for chunk in chunks:
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        return sock.recv(4096).split(b"\r\n", 1)[0]


def text_block(size: int = 64 * 1024) -> bytes:
    lines = []
    total = 0
    i = 0
    while total < size:
        line = f"{i:06d} def function_{i % 97}(value): return value * {i % 13}\n"
        lines.append(line)
        total += len(line)
        i += 1
    return "".join(lines).encode()[:size]


# -- documents --------------------------------------------------------------------------


async def test_document_upload_creates_job_and_exactly_one_message(
    client: httpx.AsyncClient, consumer: Consumer, store: JobStore
) -> None:
    content = b"# Title\n\nSome text about the project.\n"
    r = await client.post(
        "/v1/documents/ingest",
        files={"file": ("notes.md", content, "text/markdown")},
        data={"workspace": "docs_ws"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued"
    assert body["workspace"] == "docs_ws"
    assert body["kind"] == "document"
    assert body["size"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert r.headers["location"] == f"/v1/jobs/{body['job_id']}"

    job = await store.get_job(body["job_id"])
    assert job is not None and job.status == "queued" and job.attempts == 0
    assert job.upload_id == body["upload_id"] and job.filename == "notes.md"
    assert job.progress == initial_progress()

    # an earlier test's late retry may be queued too (seed 3463211981): this job's only
    msgs = await consumer.take(wait=2.0, jobs=[body["job_id"]])
    assert len(msgs) == 1, [m.headers for m in msgs]  # one message for one upload
    msg = msgs[0]
    assert msg.subject == QUEUE.subject("document")
    assert msg.headers[MSG_ID_HEADER] == body["job_id"]
    assert json.loads(msg.data) == {
        "job_id": body["job_id"],
        "workspace": "docs_ws",
        "kind": "document",
        "upload_id": body["upload_id"],
    }
    parsed = IngestMessage.from_bytes(msg.data)
    assert parsed.job_id == body["job_id"] and parsed.codebase is None
    entry = await store.outbox_entry(body["job_id"])
    assert entry is not None and entry.published_at is not None


async def test_workspace_from_form_then_header_then_default(
    client: httpx.AsyncClient, consumer: Consumer
) -> None:
    files = {"file": ("a.txt", b"hello")}
    r = await client.post("/v1/documents/ingest", files=files, headers={"X-Workspace": "hdr"})
    assert r.status_code == 202 and r.json()["workspace"] == "hdr"
    jobs = [r.json()["job_id"]]
    r = await client.post(
        "/v1/documents/ingest",
        files=files,
        data={"workspace": "form-ws"},
        headers={"X-Workspace": "hdr"},
    )
    assert r.status_code == 202 and r.json()["workspace"] == "form-ws"
    jobs.append(r.json()["job_id"])
    r = await client.post("/v1/documents/ingest", files=files)
    assert r.status_code == 202 and r.json()["workspace"] == "default"
    jobs.append(r.json()["job_id"])
    # (an earlier test's retry may be published now: only these jobs' messages count)
    assert len(await consumer.take(jobs=jobs)) == 3


async def test_invalid_workspace_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    before = await count_rows(pool)
    for data, headers in (
        ({"workspace": "a b"}, {}),
        ({"workspace": "x" * 65}, {}),
        ({}, {"X-Workspace": "../etc"}),
        ({"workspace": "bad!"}, {"X-Workspace": "good"}),
    ):
        r = await client.post(
            "/v1/documents/ingest", files={"file": ("a.txt", b"hi")}, data=data, headers=headers
        )
        assert assert_openai_error(r, 400, "workspace")["code"] == "invalid_workspace"
    r = await client.post(
        "/v1/codebase/ingest",
        files={"file": ("c.tar", make_tar("tar", SOURCE))},
        data={"workspace": "no/slash"},
    )
    assert_openai_error(r, 400, "workspace")
    r = await client.get("/v1/jobs", params={"workspace": "a b"})
    assert_openai_error(r, 400, "workspace")
    assert await count_rows(pool) == before


async def test_malformed_requests_are_400(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    before = await count_rows(pool)
    r = await client.post("/v1/documents/ingest", json={"file": "x"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = await client.post("/v1/documents/ingest", data={"workspace": "w"}, files={"other": b"x"})
    assert_openai_error(r, 400, "file")
    r = await client.post("/v1/documents/ingest", files={"file": ("empty.txt", b"")})
    assert assert_openai_error(r, 400, "file")["code"] == "empty_file"
    r = await client.post(
        "/v1/documents/ingest",
        files=[("file", ("a.txt", b"a")), ("file", ("b.txt", b"b"))],
    )
    assert_openai_error(r, 400, "file")
    assert await count_rows(pool) == before


# -- codebases --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "filename"),
    [
        ("tar.gz", "myproj.tar.gz"),
        ("tar.gz", "myproj.tgz"),
        ("zip", "myproj.zip"),
        ("tar", "myproj.tar"),
        ("tar.bz2", "myproj.tar.bz2"),
        ("tar.xz", "myproj.tar.xz"),
    ],
)
async def test_codebase_upload_publishes_on_the_codebase_subject(
    client: httpx.AsyncClient, consumer: Consumer, store: JobStore, fmt: str, filename: str
) -> None:
    archive = make_archive(fmt, SOURCE)
    r = await client.post(
        "/v1/codebase/ingest", files={"file": (filename, archive)}, data={"workspace": "code"}
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["codebase"] == "myproj"
    assert body["archive_format"] == fmt
    assert body["status"] == "queued" and body["workspace"] == "code"

    job = await store.get_job(body["job_id"])
    assert job is not None and job.kind == "codebase" and job.codebase == "myproj"
    upload = await store.get_upload(body["upload_id"])
    assert upload is not None and upload.archive_format == fmt

    msgs = await consumer.take(wait=2.0, jobs=[body["job_id"]])
    assert [m.subject for m in msgs] == [QUEUE.subject("codebase")], [m.headers for m in msgs]
    assert IngestMessage.from_bytes(msgs[0].data) == IngestMessage(
        job_id=body["job_id"],
        workspace="code",
        kind="codebase",
        upload_id=body["upload_id"],
        codebase="myproj",
    )
    assert msgs[0].headers[MSG_ID_HEADER] == body["job_id"]


async def test_codebase_detected_by_content_and_named_by_field(
    client: httpx.AsyncClient, consumer: Consumer
) -> None:
    # a zip whose name says tar.gz, with an explicit codebase name
    r = await client.post(
        "/v1/codebase/ingest",
        files={"file": ("misnamed.tar.gz", make_zip(SOURCE))},
        data={"name": "service-a"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["archive_format"] == "zip"
    assert r.json()["codebase"] == "service-a"
    jobs = [r.json()["job_id"]]
    # a tar.gz with no extension at all
    r = await client.post(
        "/v1/codebase/ingest", files={"file": ("snapshot", make_tar("tar.gz", SOURCE))}
    )
    assert r.status_code == 202 and r.json()["codebase"] == "snapshot"
    assert r.json()["archive_format"] == "tar.gz"
    jobs.append(r.json()["job_id"])
    assert len(await consumer.take(jobs=jobs)) == 2


async def test_not_an_archive_is_400_and_nothing_is_stored(
    client: httpx.AsyncClient, pool: asyncpg.Pool, consumer: Consumer
) -> None:
    before = await count_rows(pool)
    not_archives = {
        "text.zip": b"just some text, not a zip at all\n" * 100,
        "plain.gz": gzip.compress(b"a gzipped text file, not a tar\n" * 100),
        "plain.bz2": bz2.compress(b"bzip2 text, not a tar\n" * 100),
        "plain.xz": lzma.compress(b"xz text, not a tar\n" * 100),
        "corrupt.tar.gz": b"\x1f\x8b\x08\x00" + b"\xff" * 2000,
        "tiny.zip": b"PK",
        "empty.tar": b"",
    }
    for filename, data in not_archives.items():
        r = await client.post("/v1/codebase/ingest", files={"file": (filename, data)})
        error = assert_openai_error(r, 400, "file")
        assert error["code"] == "not_an_archive", (filename, error)
    r = await client.post(
        "/v1/codebase/ingest",
        files={"file": ("ok.tar", make_tar("tar", SOURCE))},
        data={"name": "a/b"},
    )
    assert assert_openai_error(r, 400, "name")["code"] == "invalid_codebase_name"
    # nothing stored, nothing in the outbox: nothing can be published for these
    assert await count_rows(pool) == before


# -- downloads --------------------------------------------------------------------------


async def test_download_returns_the_identical_bytes(
    client: httpx.AsyncClient, consumer: Consumer
) -> None:
    content = bytes(range(256)) * 1000 + "ünïcode\n".encode()
    r = await client.post(
        "/v1/documents/ingest",
        files={"file": ("dir/Bericht ü.pdf", content, "application/pdf")},
    )
    assert r.status_code == 202, r.text
    upload_id = r.json()["upload_id"]
    assert r.json()["filename"] == "Bericht ü.pdf"  # the base name only
    d = await client.get(f"/v1/documents/{upload_id}/download")
    assert d.status_code == 200
    assert d.content == content
    assert d.headers["content-type"] == "application/pdf"
    assert d.headers["content-length"] == str(len(content))
    assert "attachment;" in d.headers["content-disposition"]
    assert "filename*=UTF-8''Bericht%20%C3%BC.pdf" in d.headers["content-disposition"]
    assert d.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'

    # content type guessed from the name when the client sent none useful
    r = await client.post(
        "/v1/documents/ingest", files={"file": ("readme.md", b"# hi\n", "application/octet-stream")}
    )
    d = await client.get(f"/v1/documents/{r.json()['upload_id']}/download")
    assert d.content == b"# hi\n" and d.headers["content-type"].startswith("text/markdown")

    archive = make_archive("tar.xz", SOURCE)
    r = await client.post("/v1/codebase/ingest", files={"file": ("p.tar.xz", archive)})
    d = await client.get(f"/v1/documents/{r.json()['upload_id']}/download")
    assert d.content == archive and d.headers["content-type"] == "application/x-xz"
    await consumer.take()


async def test_the_same_bytes_are_stored_once_per_workspace(
    client: httpx.AsyncClient, consumer: Consumer, pool: asyncpg.Pool
) -> None:
    ws = f"dedupe-{uuid.uuid4().hex[:6]}"
    archive = make_archive("tar.gz", {"m.py": f"# {ws}\n".encode()})
    first = await client.post(
        "/v1/codebase/ingest", files={"file": ("m.tar.gz", archive)}, data={"workspace": ws}
    )
    again = await client.post(
        "/v1/codebase/ingest", files={"file": ("copy.tar.gz", archive)}, data={"workspace": ws}
    )
    elsewhere = await client.post(
        "/v1/codebase/ingest", files={"file": ("m.tar.gz", archive)}, data={"workspace": ws + "x"}
    )
    assert first.json()["deduplicated"] is False and again.json()["deduplicated"] is True
    assert again.json()["upload_id"] == first.json()["upload_id"]  # one stored copy
    assert again.json()["job_id"] != first.json()["job_id"]  # two jobs
    assert elsewhere.json()["upload_id"] != first.json()["upload_id"]  # workspaces stay apart
    stored = await pool.fetchval("SELECT count(*) FROM ingest_uploads WHERE workspace = $1", ws)
    assert stored == 1
    await consumer.take()


async def test_workspace_quota_and_job_count_are_enforced_with_clear_answers(
    ingest_dsn: str, nats_url: str, consumer: Consumer, pool: asyncpg.Pool
) -> None:
    limits = IngestLimits(
        max_upload_bytes=LIMIT, max_workspace_upload_bytes=20_000, max_active_jobs_per_workspace=2
    )
    settings = make_settings(ingest_dsn, nats_url, ingest_limits=limits)
    ws = f"quota-{uuid.uuid4().hex[:6]}"
    with serve_asgi(make_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=AUTH) as c:
            noise = os.urandom(15_000)  # does not compress
            r = await c.post(
                "/v1/documents/ingest", files={"file": ("a.bin", noise)}, data={"workspace": ws}
            )
            assert r.status_code == 202
            before = await count_rows(pool)
            r = await c.post(
                "/v1/documents/ingest",
                files={"file": ("b.bin", os.urandom(15_000))},
                data={"workspace": ws},
            )
            error = assert_openai_error(r, 413, "file")
            assert error["code"] == "workspace_quota"
            assert "SPARKSTACK_INGEST_MAX_WORKSPACE_UPLOAD_BYTES" in error["message"]
            assert await count_rows(pool) == before  # nothing stored
            r = await c.post(
                "/v1/documents/ingest", files={"file": ("c.md", b"# c\n")}, data={"workspace": ws}
            )
            assert r.status_code == 202  # two unfinished jobs now
            r = await c.post(
                "/v1/documents/ingest", files={"file": ("d.md", b"# d\n")}, data={"workspace": ws}
            )
            error = assert_openai_error(r, 429)
            assert error["code"] == "too_many_jobs" and r.headers["retry-after"]
            # another workspace is not held back by this one
            r = await c.post(
                "/v1/documents/ingest",
                files={"file": ("d.md", b"# d\n")},
                data={"workspace": ws + "-other"},
            )
            assert r.status_code == 202
            limits_answer = (await c.get("/v1/ingest/limits")).json()
            assert limits_answer["max_workspace_upload_bytes"] == 20_000
            assert limits_answer["max_files"] == 100_000
    await consumer.take()


async def test_finished_uploads_are_deleted_after_retention_and_jobs_keep_their_history(
    client: httpx.AsyncClient, store: JobStore, consumer: Consumer
) -> None:
    ws = f"keep-{uuid.uuid4().hex[:6]}"
    r = await client.post(
        "/v1/documents/ingest", files={"file": ("r.md", b"# r\n")}, data={"workspace": ws}
    )
    job_id, upload_id = r.json()["job_id"], r.json()["upload_id"]
    assert (await client.get(f"/v1/documents/{upload_id}/download")).status_code == 200
    started = await store.start_parsing(job_id, 60)
    assert started is not None
    await store.finish_parsing(job_id, started.attempts, {})
    assert await store.delete_expired_uploads(3600) == 0  # finished just now: kept
    assert await store.delete_expired_uploads(0) >= 1
    assert (await client.get(f"/v1/documents/{upload_id}/download")).status_code == 404
    job = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert job["status"] == "completed" and job["upload_id"] is None
    retry = await client.post(f"/v1/jobs/{job_id}/retry")
    assert retry.status_code == 409  # completed: nothing to retry
    await consumer.take()


async def test_retry_endpoint_requeues_a_failed_job_within_scope(
    client: httpx.AsyncClient, store: JobStore, consumer: Consumer
) -> None:
    ws = f"retry-{uuid.uuid4().hex[:6]}"
    r = await client.post(
        "/v1/documents/ingest", files={"file": ("f.md", b"# f\n")}, data={"workspace": ws}
    )
    job_id = r.json()["job_id"]
    await consumer.take()
    started = await store.start_parsing(job_id, 60)
    assert started is not None
    await store.fail(job_id, "boom", final=True, attempt=started.attempts)
    r = await client.post(f"/v1/jobs/{job_id}/retry")
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.json()["retries"] == 1
    msgs = await consumer.take_until(1, within=10)
    assert [m.headers[MSG_ID_HEADER] for m in msgs] == [f"{job_id}:retry-1"]
    assert (await client.post(f"/v1/jobs/{job_id}/retry")).status_code == 409  # queued now
    documents = await client.get(f"/v1/jobs/{job_id}/documents")
    assert documents.status_code == 200 and documents.json()["data"] == []
    assert (await client.post(f"/v1/jobs/{uuid.uuid4()}/retry")).status_code == 404


async def test_download_and_job_unknown_or_malformed_ids(client: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())
    assert_openai_error(await client.get(f"/v1/documents/{missing}/download"), 404, "upload_id")
    assert_openai_error(await client.get("/v1/documents/not-a-uuid/download"), 400, "upload_id")
    error = assert_openai_error(await client.get(f"/v1/jobs/{missing}"), 404, "job_id")
    assert error["code"] == "job_not_found"
    assert_openai_error(await client.get("/v1/jobs/12345"), 400, "job_id")


# -- size limit -------------------------------------------------------------------------


async def test_size_limit_is_413_and_nothing_is_stored(
    ingest_dsn: str, nats_url: str, pool: asyncpg.Pool, consumer: Consumer
) -> None:
    limit = 1024 * 1024
    before = await count_rows(pool)
    earlier = {str(r["id"]) for r in await pool.fetch("SELECT id FROM ingest_jobs")}
    with serve_asgi(make_app(make_settings(ingest_dsn, nats_url, max_upload_bytes=limit))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=AUTH) as c:
            # exactly the limit is fine
            r = await c.post("/v1/documents/ingest", files={"file": ("ok.bin", b"x" * limit)})
            assert r.status_code == 202, r.text
            job = r.json()["job_id"]
            accepted = await count_rows(pool)
            assert accepted[0] == before[0] + 1
            # one byte over: Content-Length is within the form slack, the stream decides
            r = await c.post("/v1/documents/ingest", files={"file": ("a.bin", b"x" * (limit + 1))})
            assert assert_openai_error(r, 413, "file")["code"] == "file_too_large"
            # far over, Content-Length known: refused before reading
            r = await c.post("/v1/codebase/ingest", files={"file": ("b.tar", b"\0" * (5 * limit))})
            assert_openai_error(r, 413, "file")
            # far over, no Content-Length (chunked): refused, the client still gets the 413
            body = StreamedBody(text_block(), 8 * limit)
            r = await c.post(
                "/v1/documents/ingest",
                content=body.stream(),
                headers={"Content-Type": body.content_type},
            )
            assert_openai_error(r, 413, "file")
            # the answer comes as soon as the limit is passed, not at the end of the body
            status = await asyncio.to_thread(answer_to_unfinished_upload, url, limit)
            assert status.startswith(b"HTTP/1.1 413"), status
            # the server still serves
            assert (await c.get("/v1/jobs", params={"limit": 1})).status_code == 200
    assert await count_rows(pool) == accepted
    # the accepted upload's job is queued, and nothing else of this test (an earlier test's
    # late retry may be in the queue too: its job existed before)
    taken = [m.headers[MSG_ID_HEADER].split(":")[0] for m in await consumer.take()]
    assert [j for j in taken if j not in earlier] == [job]


async def test_streamed_50mb_upload_is_not_held_in_memory(
    client: httpx.AsyncClient, store: JobStore, consumer: Consumer
) -> None:
    size = 50 * 1024 * 1024
    body = StreamedBody(text_block(), size, filename="big.txt", workspace="bulk")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        r = await client.post(
            "/v1/documents/ingest",
            content=body.stream(),
            headers={"Content-Type": body.content_type},
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 202, r.text
    assert body.pulled == size
    # Both processes' sides (client, server thread) are traced: far less than the file.
    assert peak < size // 4, f"peak {peak / 2**20:.1f} MiB"
    upload = await store.get_upload(r.json()["upload_id"])
    assert upload is not None
    assert upload.size == size and upload.sha256 == body.sha.hexdigest()
    assert upload.compressed_size < size // 4
    assert upload.chunk_count >= 1

    sha = hashlib.sha256()
    received = 0
    async with client.stream("GET", f"/v1/documents/{upload.id}/download") as d:
        assert d.status_code == 200
        async for piece in d.aiter_bytes():
            sha.update(piece)
            received += len(piece)
    assert received == size and sha.hexdigest() == upload.sha256
    assert len(await consumer.take(jobs=[r.json()["job_id"]])) == 1


# -- job listing ------------------------------------------------------------------------


async def test_jobs_list_filters_and_paging(
    client: httpx.AsyncClient, store: JobStore, consumer: Consumer
) -> None:
    ws = f"list-{uuid.uuid4().hex[:8]}"
    ids = []
    for i in range(3):
        r = await client.post(
            "/v1/documents/ingest", files={"file": (f"d{i}.txt", b"doc")}, data={"workspace": ws}
        )
        ids.append(r.json()["job_id"])
    r = await client.post(
        "/v1/codebase/ingest",
        files={"file": ("c.zip", make_zip(SOURCE))},
        data={"workspace": ws},
    )
    code_id = r.json()["job_id"]
    started = await store.start_parsing(ids[0], lease_seconds=60)
    assert started is not None
    # nothing was sent: from parsing straight to completed
    finished = await store.finish_parsing(ids[0], started.attempts, {"documents": 1})
    assert finished is not None and finished.status == "completed"

    r = await client.get("/v1/jobs", params={"workspace": ws})
    page = r.json()
    assert page["object"] == "list" and page["total"] == 4 and not page["has_more"]
    assert [j["id"] for j in page["data"]] == [code_id, ids[2], ids[1], ids[0]]  # newest first
    assert {j["workspace"] for j in page["data"]} == {ws}

    r = await client.get("/v1/jobs", params={"workspace": ws, "status": "completed"})
    assert [j["id"] for j in r.json()["data"]] == [ids[0]]
    done = r.json()["data"][0]
    assert done["result"]["documents"] == {"indexed": 0, "failed": 0, "removed_since": 0}
    assert done["attempts"] == 1 and done["searchable"] is True
    assert done["started_at"] and done["finished_at"]

    r = await client.get("/v1/jobs", params={"workspace": ws, "status": "queued"})
    assert r.json()["total"] == 3
    r = await client.get("/v1/jobs", params={"workspace": ws, "kind": "codebase"})
    assert [j["id"] for j in r.json()["data"]] == [code_id]
    assert r.json()["data"][0]["codebase"] == "c"

    r = await client.get("/v1/jobs", params={"workspace": ws, "limit": 2, "offset": 1})
    page = r.json()
    assert [j["id"] for j in page["data"]] == [ids[2], ids[1]] and page["has_more"]

    r = await client.get(f"/v1/jobs/{ids[0]}")
    assert r.status_code == 200 and r.json()["status"] == "completed"

    assert_openai_error(await client.get("/v1/jobs", params={"status": "running"}), 400, "status")
    assert_openai_error(await client.get("/v1/jobs", params={"limit": "0"}), 400, "limit")
    assert_openai_error(await client.get("/v1/jobs", params={"limit": "x"}), 400, "limit")
    assert_openai_error(await client.get("/v1/jobs", params={"offset": "-1"}), 400, "offset")
    assert len(await consumer.take(jobs=[*ids, code_id])) == 4


# -- NATS outages -----------------------------------------------------------------------


async def test_upload_while_nats_is_down_is_published_once_it_is_back(
    infra: EmbeddedInfra,
    client: httpx.AsyncClient,
    store: JobStore,
    pool: asyncpg.Pool,
    consumer: Consumer,
    js: JetStreamContext,
) -> None:
    await consumer.take(wait=0.2)
    infra.nats.stop()
    try:
        started = time.monotonic()
        r = await client.post(
            "/v1/documents/ingest", files={"file": ("offline.md", b"# offline\n")}
        )
        assert r.status_code == 202, r.text
        assert time.monotonic() - started < 5
        body = r.json()
        assert body["status"] == "queued" and body["published"] is False
        job = await store.get_job(body["job_id"])
        assert job is not None and job.status == "queued"
        entry = await store.outbox_entry(body["job_id"])
        assert entry is not None and entry.published_at is None
    finally:
        infra.nats.start()

    # only this job's messages count: an earlier test's late retry may be queued too
    msgs = await consumer.take_until(1, within=15, jobs=[body["job_id"]])
    assert len(msgs) == 1, "the relay did not publish after NATS came back"
    assert msgs[0].headers[MSG_ID_HEADER] == body["job_id"]
    assert await consumer.take(wait=1.0, jobs=[body["job_id"]]) == []
    entry = await store.outbox_entry(body["job_id"])
    assert entry is not None and entry.published_at is not None
    assert entry.publish_attempts >= 1

    # Republishing (a relay that crashed before marking the row) is deduplicated by JetStream.
    await pool.execute(
        "UPDATE ingest_outbox SET published_at = NULL WHERE job_id = $1", uuid.UUID(job.id)
    )
    await wait_published(store, job.id)
    entry = await store.outbox_entry(job.id)
    assert entry is not None
    ack = await js.publish(
        entry.subject,
        encode_payload(entry.payload),
        headers={MSG_ID_HEADER: entry.msg_id},
        stream=QUEUE.stream,
    )
    assert ack.duplicate
    assert await consumer.take(wait=1.0, jobs=[job.id]) == []


async def test_nats_down_at_startup_does_not_stop_the_service(
    infra: EmbeddedInfra, ingest_dsn: str, nats_url: str, consumer: Consumer
) -> None:
    await consumer.take(wait=0.2)
    infra.nats.stop()
    try:
        with serve_asgi(make_app(make_settings(ingest_dsn, nats_url))) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH) as c:
                r = await c.post("/v1/documents/ingest", files={"file": ("s.md", b"# start\n")})
                assert r.status_code == 202, r.text
                assert r.json()["published"] is False
                job_id = r.json()["job_id"]
                infra.nats.start()
                msgs = await consumer.take_until(1, within=15)
                assert [m.headers[MSG_ID_HEADER] for m in msgs] == [job_id]
    finally:
        infra.nats.start()


async def test_unreachable_database_answers_503(nats_url: str) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with serve_asgi(make_app(make_settings(dsn, nats_url, ingest_db_timeout_seconds=1.0))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30, headers=AUTH) as c:
            r = await c.post("/v1/documents/ingest", files={"file": ("a.txt", b"x")})
            assert assert_openai_error(r, 503)["code"] == "database_unavailable"
            assert_openai_error(await c.get("/v1/jobs"), 503)


# -- JobStore ---------------------------------------------------------------------------


async def test_store_job_lifecycle_progress_attempts(store: JobStore) -> None:
    job, upload = await store.create_job_with_upload(
        workspace="unit",
        kind="codebase",
        filename="repo.tar",
        content_type="application/x-tar",
        data=make_tar("tar", SOURCE),
        codebase="repo",
        archive_format="tar",
    )
    assert job.status == "queued" and job.attempts == 0 and job.codebase == "repo"
    assert upload.kind == "codebase" and upload.compression == "zlib"
    entry = await store.outbox_entry(job.id)
    assert entry is not None and entry.subject == QUEUE.subject("codebase")
    assert entry.msg_id == job.id and entry.payload["codebase"] == "repo"

    # no progress before the job started
    assert not await store.update_progress(job.id, files={"seen": 5})

    first = await store.start_parsing(job.id, lease_seconds=60)
    assert first is not None and first.status == "parsing" and first.attempts == 1
    assert first.started_at is not None and first.lease_until is not None
    assert await store.update_progress(job.id, files={"seen": 5, "added": 2}, attempt=1)
    assert await store.update_progress(
        job.id, files={"skipped": 1}, skipped=[{"path": "bin/tool", "reason": "binary"}]
    )
    assert await store.update_progress(
        job.id, files={"failed": 1}, failed=[{"path": "x.pdf", "reason": "corrupt"}]
    )
    assert await store.add_documents(job.id, [("d1", "a.py"), ("d2", "a.py")], attempt=1) == 2
    assert await store.add_documents(job.id, [("d2", "a.py")], attempt=1) == 0  # counted once
    current = await store.get_job(job.id)
    assert current is not None
    p = current.progress
    assert p["phase"] == "parsing"
    assert (p["files"]["seen"], p["files"]["added"], p["files"]["skipped"]) == (5, 2, 1)
    assert p["documents"] == {"sent": 2, "indexed": 0, "failed": 0, "pending": 2}
    assert p["skipped"] == [{"path": "bin/tool", "reason": "binary"}]
    assert p["failed"] == [{"path": "x.pdf", "reason": "corrupt"}]
    # a hostile archive's thousands of rejections are counted, only the first ones listed
    many = [{"path": f"f{i}", "reason": "rejected"} for i in range(MAX_LISTED + 5)]
    assert await store.update_progress(job.id, files={"skipped": len(many)}, skipped=many)
    current = await store.get_job(job.id)
    assert current is not None
    assert len(current.progress["skipped"]) == MAX_LISTED
    assert current.progress["files"]["skipped"] == MAX_LISTED + 6

    # a failed attempt that will be retried goes back to queued, keeping its error
    assert await store.fail(job.id, "preprocessor unreachable", final=False, attempt=1)
    retried = await store.get_job(job.id)
    assert retried is not None and retried.status == "queued" and retried.lease_until is None
    assert retried.error == "preprocessor unreachable"
    assert [e["attempt"] for e in retried.errors] == [1]

    second = await store.start_parsing(job.id, lease_seconds=60)
    assert second is not None and second.attempts == 2
    assert second.progress["files"] == initial_progress()["files"]  # counted afresh
    # the stale first attempt is fenced off
    assert not await store.update_progress(job.id, files={"seen": 1}, attempt=1)
    assert await store.finish_parsing(job.id, 1, {"stale": True}) is None
    assert not await store.renew_lease(job.id, 1, 60)
    assert not await store.fail(job.id, "stale", attempt=1)

    # everything sent: indexing until rag-server has processed every document
    indexing = await store.finish_parsing(job.id, 2, {"files": {"added": 1}})
    assert indexing is not None and indexing.status == "indexing"
    assert indexing.progress["documents"]["pending"] == 2
    assert [j.id for j in await store.claim_indexing(30)] == [job.id]
    assert await store.claim_indexing(30) == []  # leased: another watcher leaves it alone
    await store.record_documents(job.id, {"d1": ("processed", None)})
    assert await store.finalize(job.id) is None  # d2 is still pending
    await store.record_documents(job.id, {"d2": ("failed", "LLM refused")})
    done = await store.finalize(job.id)
    assert done is not None and done.status == "completed_with_errors"
    assert done.result["failed_documents"] == [
        {"doc_id": "d2", "path": "a.py", "error": "LLM refused"}
    ]
    assert "1 document(s) failed to index: LLM refused" == done.error
    assert done.progress["documents"] == {"sent": 2, "indexed": 1, "failed": 1, "pending": 0}
    # finished jobs never run or change again, but the failed part can be retried
    assert await store.start_parsing(job.id, lease_seconds=60) is None
    assert not await store.fail(job.id, "late")
    assert not await store.update_progress(job.id, files={"seen": 9})
    again = await store.retry(job.id)
    assert again is not None and again.status == "queued" and again.retries == 1
    assert again.attempts == 0
    assert (await store.outbox_entry(job.id)).msg_id == f"{job.id}:retry-1"  # type: ignore[union-attr]


async def test_store_final_failure_and_unknown_jobs(store: JobStore) -> None:
    job, _ = await store.create_job_with_upload(
        workspace="unit",
        kind="document",
        filename="a.md",
        content_type="text/markdown",
        data=b"# a\n",
        codebase="ignored for documents",
    )
    assert job.codebase is None
    for attempt in (1, 2, 3):
        started = await store.start_parsing(job.id, lease_seconds=60)
        assert started is not None and started.attempts == attempt
        assert await store.fail(job.id, f"boom {attempt}", final=attempt == 3)
    failed = await store.get_job(job.id)
    assert failed is not None and failed.status == "failed" and failed.attempts == 3
    assert failed.error == "boom 3" and failed.finished_at is not None
    assert [e["error"] for e in failed.errors] == ["boom 1", "boom 2", "boom 3"]
    assert await store.start_parsing(job.id, lease_seconds=60) is None

    unknown = uuid.uuid4()
    assert await store.get_job(unknown) is None
    assert await store.start_parsing(unknown, lease_seconds=60) is None
    assert await store.finalize(unknown) is None
    with pytest.raises(ValueError):
        await store.get_job("nope")
    with pytest.raises(UploadNotFound):
        await store.iter_upload(unknown)
    with pytest.raises(ValueError):
        await store.create_job_with_upload(
            workspace="bad name",
            kind="document",
            filename="a",
            content_type="text/plain",
            data=b"x",
        )
    with pytest.raises(ValueError):
        await store.create_job_with_upload(
            workspace="w", kind="codebase", filename="a", content_type="x", data=b"x"
        )


async def test_store_upload_round_trip_in_chunks(store: JobStore) -> None:
    import os

    data = os.urandom(3 * 1024 * 1024 + 123)  # incompressible: several 1 MiB chunks
    with CompressedSpool(level=1, memory_limit=64 * 1024) as spool:
        for start in range(0, len(data), 100_000):
            spool.write(data[start : start + 100_000])
        _, upload = await store.create_job_with_upload(
            workspace="unit",
            kind="document",
            filename="r.bin",
            content_type="application/octet-stream",
            data=spool,
        )
    assert upload.chunk_count == 4 and upload.size == len(data)
    assert await store.read_upload(upload.id) == data
    out = io.BytesIO()
    assert await store.copy_upload_to(upload.id, out) == len(data)
    assert out.getvalue() == data
    pieces = [p async for p in await store.iter_upload(upload.id, piece_size=50_000)]
    assert max(map(len, pieces)) <= 50_000 and b"".join(pieces) == data


def test_spool_stops_at_the_limit() -> None:
    with CompressedSpool(max_bytes=10) as spool:
        spool.write(b"12345")
        spool.write(b"67890")
        with pytest.raises(UploadTooLarge):
            spool.write(b"1")
        assert spool.size == 11


async def test_schema_creation_is_idempotent_and_concurrent(store: JobStore) -> None:
    await asyncio.gather(*(store.ensure_schema() for _ in range(4)))


async def wait_published(store: JobStore, job_id: str, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while (entry := await store.outbox_entry(job_id)) is None or entry.published_at is None:
        assert time.monotonic() < deadline, f"job {job_id} was not published"
        await asyncio.sleep(0.05)


async def test_relay_publishes_pending_rows_and_dedupes(
    store: JobStore, pool: asyncpg.Pool, nats_url: str, consumer: Consumer
) -> None:
    # jobs the store tests created are published by the app's relay: let them go first
    deadline = time.monotonic() + 10
    while await store.outbox_pending():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await consumer.take(wait=0.3)
    link = NatsLink(nats_url, name="test-relay")
    relay = OutboxRelay(store, link, QUEUE, interval=60)
    link.start()
    try:
        assert await link.wait_connected(10)
        job, _ = await store.create_job_with_upload(
            workspace="relay",
            kind="document",
            filename="r.md",
            content_type="text/markdown",
            data=b"# r\n",
        )
        # The app's relay watches the same outbox and may hold the row at any moment (then
        # ours skips it): either way it gets published, once.
        await relay.publish_job(job.id)
        await wait_published(store, job.id)
        assert await relay.publish_job(job.id)  # already published: nothing to do
        await pool.execute(
            "UPDATE ingest_outbox SET published_at = NULL WHERE job_id = $1", uuid.UUID(job.id)
        )
        republished_here = await relay.publish_pending()
        await wait_published(store, job.id)
        msgs = await consumer.take(wait=1.0, jobs=[job.id])
        # whichever relay republished it (ours or the app's), JetStream dropped the copy: the
        # consumer sees the job once
        assert [m.headers[MSG_ID_HEADER] for m in msgs] == [job.id]
        if republished_here:
            assert relay.stats.duplicates == 1
    finally:
        await relay.stop()
        await link.close()


# -- queue contract ---------------------------------------------------------------------


def test_message_contract() -> None:
    job_id, upload_id = str(uuid.uuid4()), str(uuid.uuid4())
    message = IngestMessage(job_id, "ws", "codebase", upload_id, "repo")
    assert message.headers() == {"Nats-Msg-Id": job_id}
    assert json.loads(message.to_bytes()) == {
        "job_id": job_id,
        "workspace": "ws",
        "kind": "codebase",
        "upload_id": upload_id,
        "codebase": "repo",
    }
    assert IngestMessage.from_bytes(message.to_bytes()) == message
    document = IngestMessage(job_id, "ws", "document", upload_id)
    assert "codebase" not in json.loads(document.to_bytes())
    # unknown extra keys are tolerated (forward compatible)
    assert IngestMessage.from_dict({**document.to_dict(), "future": 1}) == document
    bad_payloads = [
        b"not json",
        b"[]",
        json.dumps({**document.to_dict(), "job_id": "123"}).encode(),
        json.dumps({**document.to_dict(), "upload_id": None}).encode(),
        json.dumps({**document.to_dict(), "kind": "video"}).encode(),
        json.dumps({**document.to_dict(), "workspace": "a b"}).encode(),
        json.dumps({**document.to_dict(), "workspace": ""}).encode(),
        json.dumps({**document.to_dict(), "kind": "codebase"}).encode(),
        json.dumps({**document.to_dict(), "codebase": "x"}).encode(),
    ]
    for payload in bad_payloads:
        with pytest.raises(InvalidMessage):
            IngestMessage.from_bytes(payload)
    # a refused message names what is wrong with it (the worker logs it, then drops it)
    with pytest.raises(InvalidMessage, match="job_id is not a UUID: '123'"):
        IngestMessage.from_bytes(bad_payloads[2])
    with pytest.raises(InvalidMessage, match="upload_id must be a UUID string"):
        IngestMessage.from_bytes(bad_payloads[3])


async def test_stream_and_consumer_are_created_then_reused(js: JetStreamContext) -> None:
    queue = QueueSettings(
        stream=f"QT{uuid.uuid4().hex[:8]}",
        subject_prefix="qt.ingest",
        consumer="worker",
        ack_wait_seconds=30,
        max_deliver=3,
    )
    try:
        info = await ensure_stream(js, queue)
        config = info.config
        assert config.retention == js_api.RetentionPolicy.WORK_QUEUE
        assert config.storage == js_api.StorageType.FILE
        assert sorted(config.subjects) == ["qt.ingest.codebase", "qt.ingest.document"]
        assert config.duplicate_window == pytest.approx(3600)
        again = await ensure_stream(js, queue)
        assert again.created == info.created  # reused, not recreated
        # drifted subjects are put back
        await js.update_stream(config.evolve(subjects=["qt.ingest.document"]))
        fixed = await ensure_stream(js, queue)
        assert sorted(fixed.config.subjects) == sorted(queue.subjects)

        consumer = await ensure_consumer(js, queue)
        assert consumer.config.max_deliver == 3 and consumer.config.ack_wait == 30
        assert consumer.config.ack_policy == js_api.AckPolicy.EXPLICIT
        assert consumer.config.filter_subject == "qt.ingest.>"
        same = await ensure_consumer(js, queue)
        assert same.created == consumer.created
        changed = await ensure_consumer(js, queue.model_copy(update={"max_deliver": 5}))
        assert changed.config.max_deliver == 5
    finally:
        await js.delete_stream(queue.stream)

    other = QueueSettings(stream=f"QL{uuid.uuid4().hex[:8]}", subject_prefix="ql.ingest")
    await js.add_stream(
        name=other.stream, subjects=other.subjects, retention=js_api.RetentionPolicy.LIMITS
    )
    try:
        with pytest.raises(QueueConfigError):
            await ensure_stream(js, other)
    finally:
        await js.delete_stream(other.stream)
    with pytest.raises(NotFoundError):
        await js.stream_info(other.stream)


# -- archive sniffing -------------------------------------------------------------------


def sniff(data: bytes, piece: int) -> str | None:
    sniffer = ArchiveSniffer()
    for start in range(0, len(data), piece):
        sniffer.feed(data[start : start + piece])
        if sniffer.decided:
            break
    return sniffer.finish()


@pytest.mark.parametrize("fmt", ["tar", "tar.gz", "tar.bz2", "tar.xz", "zip"])
@pytest.mark.parametrize("piece", [7, 1000, 1 << 20])
def test_sniffer_recognizes_archives_fed_in_pieces(fmt: str, piece: int) -> None:
    assert sniff(make_archive(fmt, SOURCE), piece) == fmt


def test_sniffer_large_bz2_needs_more_than_the_head() -> None:
    import os

    # incompressible content: the first bz2 block ends far beyond the first 64 KiB
    data = make_tar("tar.bz2", {"blob.bin": os.urandom(600_000)})
    assert sniff(data, 64 * 1024) == "tar.bz2"


def test_v7_tar_header_is_recognized_by_checksum() -> None:
    header = bytearray(make_tar("tar", SOURCE)[:1024])
    header[257:265] = bytes(8)  # no ustar magic: an old v7 header
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    assert looks_like_tar(bytes(header))
    header[0] ^= 0xFF  # a wrong checksum
    assert not looks_like_tar(bytes(header))
    assert looks_like_tar(bytes(1024))  # an empty archive
    assert not looks_like_tar(bytes(512))


async def test_jobs_feed_sends_a_change_that_commits_after_a_newer_one(
    client: httpx.AsyncClient, pool: asyncpg.Pool, ingest_dsn: str
) -> None:
    """A job's updated_at is its transaction's start: a transaction that began first but
    commits after another job's change must still reach the feed."""
    ws = f"feed_{SUFFIX}"
    ids = []
    for name in ("a.md", "b.md"):
        r = await client.post(
            "/v1/documents/ingest",
            files={"file": (name, f"# notes of {name}\n".encode(), "text/markdown")},
            data={"workspace": ws},
        )
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    first, second = ids
    seen: list[dict[str, Any]] = []

    async def follow() -> None:
        async with client.stream("GET", "/v1/jobs/events", params={"workspace": ws}) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))

    feed = asyncio.create_task(follow())
    try:
        await asyncio.sleep(0.8)  # following
        slow = await asyncpg.connect(ingest_dsn)
        try:
            tx = slow.transaction()
            await tx.start()
            await slow.execute(
                "UPDATE ingest_jobs SET status = 'parsing', updated_at = now() WHERE id = $1",
                first,
            )
            await asyncio.sleep(0.1)
            await pool.execute(
                "UPDATE ingest_jobs SET status = 'parsing', updated_at = now() WHERE id = $1",
                second,
            )
            deadline = time.monotonic() + 10
            while not any(e["id"] == second for e in seen):  # the feed moved past it
                assert time.monotonic() < deadline, seen
                await asyncio.sleep(0.1)
            await tx.commit()  # an older updated_at, committed last
        finally:
            await slow.close()
        deadline = time.monotonic() + 10
        while not any(e["id"] == first and e["status"] == "parsing" for e in seen):
            assert time.monotonic() < deadline, f"the late commit never reached the feed: {seen}"
            await asyncio.sleep(0.1)
        assert [e["id"] for e in seen].count(second) == 1  # and nothing twice
    finally:
        feed.cancel()
