"""Helpers shared by test modules (importable because tests/ is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

# Defined in sparkstack_testing (the benchmarks use them too), importable from here as before.
from sparkstack_testing.keys import ADMIN_KEY, PREPROCESSOR_KEY, RAG_KEY, bearer  # noqa: F401
from sparkstack_testing.serve import free_port, rag_server, serve_asgi, serve_process  # noqa: F401


async def create_database(admin_dsn: str, prefix: str) -> str:
    """A new, empty database on the session's PostgreSQL; returns its DSN."""
    import uuid

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return admin_dsn.rsplit("/", 1)[0] + f"/{name}"


async def drop_database(admin_dsn: str, dsn: str) -> None:
    import asyncpg

    name = dsn.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_database(admin_dsn: str, prefix: str) -> AsyncIterator[str]:
    """A database of its own on the session's PostgreSQL (tables of the same names never meet
    another test's), dropped afterwards; yields its DSN."""
    dsn = await create_database(admin_dsn, prefix)
    try:
        yield dsn
    finally:
        await drop_database(admin_dsn, dsn)


def self_signed_certificate(where: Path) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made here: nothing is downloaded); returns
    the paths of the certificate and of its key."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "cert.pem", where / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


def oversized_post(
    url: str,
    path: str,
    headers: dict[str, str],
    declared: int | None,
    send_bytes: int,
    prefix: bytes = b"",
) -> tuple[int, bytes, int]:
    """POST a body over a socket: with ``Content-Length: declared`` (or chunked when None),
    ``prefix`` and then up to ``send_bytes`` of filler, stopping as soon as the server answers.
    Returns (status, response body, bytes the server took before answering)."""
    import select
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=30)
    lines = [f"POST {path} HTTP/1.1", f"Host: {where.hostname}:{where.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(
        f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked"
    )
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    block = b"x" * (1 << 16)
    sent = 0
    if prefix:
        sock.sendall(prefix if declared is not None else b"%x\r\n%s\r\n" % (len(prefix), prefix))
    try:
        while sent < send_bytes:
            if select.select([sock], [], [], 0.01)[0]:
                break  # the server answered already
            piece = block if declared is not None else b"10000\r\n" + block + b"\r\n"
            sock.sendall(piece)
            sent += len(block)
    except OSError:
        pass  # the server closed the connection after answering
    answer = b""
    try:
        while True:
            data = sock.recv(1 << 16)
            if not data:
                break
            answer += data
            head, _, body = answer.partition(b"\r\n\r\n")
            if b"chunked" in head.lower() and body.endswith(b"0\r\n\r\n"):
                break
            if b"content-length" in head.lower() and body.rstrip().endswith(b"}"):
                break
    finally:
        sock.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        pieces, rest = [], body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            pieces.append(rest[:size])
            rest = rest[size + 2 :]
        body = b"".join(pieces)
    return status, body, sent


def catalog_fake(strict_models: bool = False) -> Any:
    """The fake model server answering for every model of the catalog (chat, tool aliases,
    the embedding model), as the orchestrator's routes name them."""
    from sparkstack_common.catalog import Catalog
    from sparkstack_testing.fake_llm import create_fake_llm

    catalog = Catalog.load()
    chat = [m.tag for m in catalog.models if m.chat] + [
        m.tools_tag for m in catalog.models if m.tools_tag
    ]
    embed = [m.tag for m in catalog.models if m.embedding]
    return create_fake_llm(chat_models=chat, embedding_models=embed, strict_models=strict_models)


def index_texts(rag_url: str, texts: dict[str, str], timeout: float = 60) -> None:
    """One text per workspace (``{workspace: text}``, source ``<workspace>.md``) into rag-server,
    waiting until each is processed."""
    import httpx

    for workspace, text in texts.items():
        headers = {"LIGHTRAG-WORKSPACE": workspace, **bearer(RAG_KEY)}
        r = httpx.post(
            f"{rag_url}/documents/texts",
            json={"texts": [text], "file_sources": [f"{workspace}.md"]},
            headers=headers,
        )
        r.raise_for_status()
        track = r.json()["track_id"]
        deadline = time.monotonic() + timeout
        while True:
            docs = httpx.get(f"{rag_url}/documents/track_status/{track}", headers=headers)
            if all(d["status"] == "processed" for d in docs.json()["documents"]):
                break
            assert time.monotonic() < deadline, docs.text
            time.sleep(0.1)


@contextmanager
def ingest_worker_process(
    *,
    nats_url: str,
    postgres_dsn: str,
    preprocessor_url: str,
    rag_url: str,
    queue: Any,
    log_path: Any,
    **settings: str,
) -> Iterator[int]:
    """An ingest-worker process on ``queue`` (a QueueSettings); yields its metrics port.
    ``settings`` are more ``INGEST_WORKER_*`` values (``watch_interval_seconds="0.2"``)."""
    import sys

    metrics = free_port()
    env = {
        "INGEST_WORKER_NATS_URL": nats_url,
        "INGEST_WORKER_POSTGRES_DSN": postgres_dsn,
        "INGEST_WORKER_PREPROCESSOR_URL": preprocessor_url,
        "INGEST_WORKER_PREPROCESSOR_API_KEY": PREPROCESSOR_KEY,
        "INGEST_WORKER_RAG_SERVER_URL": rag_url,
        "INGEST_WORKER_RAG_SERVER_API_KEY": RAG_KEY,
        "INGEST_WORKER_METRICS_PORT": str(metrics),
        **{f"INGEST_WORKER_{k.upper()}": v for k, v in settings.items()},
        **{f"SPARKSTACK_INGEST_{k.upper()}": str(v) for k, v in queue.model_dump().items()},
    }
    argv = [sys.executable, "-c", "from ingest_worker.cli import main; main()"]
    with serve_process(argv, env, metrics, log_path):
        yield metrics
