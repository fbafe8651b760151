"""One bad file costs only itself: memory and time limits per parser worker, PDF caps, dead
workers replaced, and request bodies refused while they stream in."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from code_preprocessor.app import create_app
from code_preprocessor.settings import Settings
from fastapi import FastAPI
from pdf_bomb import pdf_bomb, text_pdf
from support import PREPROCESSOR_KEY, bearer, oversized_post, serve_asgi

NORMAL = b"def area(r):\n    return 3.14159 * r * r\n"
MEMORY_MIB = 256
AUTH = bearer(PREPROCESSOR_KEY)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return pdf_bomb(900)


@contextmanager
def preprocessor(**settings: Any) -> Iterator[tuple[str, FastAPI]]:
    defaults: dict[str, Any] = {
        "workers": 1,
        "worker_memory_mib": MEMORY_MIB,
        "max_file_bytes": 1 << 20,
        "rag_server_url": "http://127.0.0.1:9",
        "api_key": PREPROCESSOR_KEY,
    }
    app = create_app(Settings(**{**defaults, **settings}))
    with serve_asgi(app) as url:
        yield url, app


def parse(url: str, name: str, data: bytes) -> httpx.Response:
    return httpx.post(f"{url}/parse", files={"file": (name, data)}, headers=AUTH, timeout=120)


def parses_normally(url: str) -> float:
    """Seconds until a normal file parses (asserting it does)."""
    started = time.monotonic()
    r = parse(url, "geometry.py", NORMAL)
    assert r.status_code == 200, r.text
    assert [s["qualname"] for s in r.json()["symbols"]] == ["area"]
    return time.monotonic() - started


def address_space_limit(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max address space"):
            return int(line.split()[3])
    raise AssertionError("no address-space line")


def peak_rss(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


def test_a_pdf_bomb_is_refused_before_it_inflates(bomb: bytes) -> None:
    assert len(bomb) < 1 << 20  # under the file size cap: only the inflation gives it away
    with preprocessor() as (url, app):
        r = parse(url, "report.pdf", bomb)
        assert r.status_code == 422
        assert "inflate to more than" in r.json()["detail"]
        assert "PDF_MAX_INFLATED_BYTES" in r.json()["detail"]
        assert parses_normally(url) < 5
        (pid,) = app.state.pool.worker_pids()
        assert peak_rss(pid) < 200 << 20
        assert httpx.get(f"{url}/ready").status_code == 200


def test_past_the_pdf_caps_the_memory_limit_fails_that_file_alone(bomb: bytes) -> None:
    """The inflation cap set out of the way: the worker's address-space limit stops the PDF,
    the worker is replaced, and the next file parses."""
    with preprocessor(pdf_max_inflated_bytes=8 << 30) as (url, app):
        (pid,) = app.state.pool.worker_pids()
        assert address_space_limit(pid) == MEMORY_MIB << 20  # so its RSS cannot pass it
        r = parse(url, "report.pdf", bomb)
        assert r.status_code == 422
        assert f"parser's limit of {MEMORY_MIB} MiB" in r.json()["detail"], r.text
        assert parses_normally(url) < 5
        (new_pid,) = app.state.pool.worker_pids()
        assert new_pid != pid and address_space_limit(new_pid) == MEMORY_MIB << 20
        ready = httpx.get(f"{url}/ready", headers=AUTH).json()
        assert ready["status"] == "ready" and "1 replaced" in ready["checks"]["parser"]["detail"]
        assert httpx.get(f"{url}/health").status_code == 200
        metrics = httpx.get(f"{url}/metrics", headers=AUTH).text
        assert "preprocessor_workers_replaced 1.0" in metrics


def test_too_many_pages_is_a_clear_skip() -> None:
    pages = text_pdf("one page")
    with preprocessor(pdf_max_pages=1) as (url, _):
        r = httpx.post(
            f"{url}/parse/batch",
            files=[("files", ("fine.pdf", pages)), ("files", ("g.py", NORMAL))],
            headers=AUTH,
            timeout=60,
        )
        assert [f["status"] for f in r.json()["files"]] == ["ok", "ok"]
    many = text_pdf("one of two pages", pages=2)
    with preprocessor(pdf_max_pages=1) as (url, _):
        r = parse(url, "long.pdf", many)
        assert r.status_code == 200
        assert r.json()["status"] == "skipped"
        assert "2 pages, more than 1" in r.json()["reason"]


def test_a_file_that_takes_too_long_fails_alone_and_its_worker_is_replaced() -> None:
    slow = b"".join(b"def f%d(a, b):\n    return g(a) + h(b)\n" % i for i in range(20000))
    with preprocessor(seconds_per_file=0.05, max_file_bytes=4 << 20) as (url, app):
        (pid,) = app.state.pool.worker_pids()
        r = httpx.post(
            f"{url}/parse/batch",
            files=[("files", ("slow.py", slow)), ("files", ("geometry.py", NORMAL))],
            headers=AUTH,
            timeout=60,
        )
        by_path = {f["path"]: f for f in r.json()["files"]}
        assert by_path["slow.py"]["status"] == "error"
        assert "longer than 0.05 s" in by_path["slow.py"]["reason"]
        assert by_path["geometry.py"]["status"] == "ok"
        assert pid not in app.state.pool.worker_pids()


def test_a_killed_worker_is_replaced_and_the_service_keeps_parsing() -> None:
    with preprocessor(workers=2) as (url, app):
        pids = app.state.pool.worker_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        for _ in range(4):
            assert parses_normally(url) < 5
        assert set(app.state.pool.worker_pids()).isdisjoint(pids)
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/ready").status_code == 200


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_before_it_is_read(declared: bool) -> None:
    limit = 1 << 20
    with preprocessor(max_request_bytes=limit) as (url, _):
        headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=x"}
        part = b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.py"\r\n\r\n'
        status, body, sent = oversized_post(
            url, "/parse/batch", headers, 10 << 30 if declared else None, 64 << 20, part
        )
        assert status == 413
        assert b"CODE_PREPROCESSOR_MAX_REQUEST_BYTES" in body
        # declared: refused on the header; chunked: cut off near the limit, long before the
        # 64 MiB the client had
        assert sent < (limit if declared else 8 * limit)
        assert parses_normally(url) < 5


def test_the_inflation_count_is_exact_and_stops_at_the_cap() -> None:
    from code_preprocessor.pdf_guard import inflated_size

    ten = pdf_bomb(10)
    assert inflated_size(ten, 1 << 40) == 10 << 20  # every byte, and it terminates
    assert 4 << 20 < inflated_size(ten, 4 << 20) < 5 << 20  # stops just past the cap
    assert inflated_size(text_pdf("plain"), 1 << 20) == 0
