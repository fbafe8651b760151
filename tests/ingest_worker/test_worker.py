"""The ingest-worker with real NATS JetStream, PostgreSQL, code-preprocessor and rag-server:
a job ends when its content is searchable, survives crashes and outages, and never doubles."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path

import httpx
import pytest
from archive_builders import gzip_bomb, symlink, tar_bytes, zip_bomb, zip_bytes
from sparkstack_testing.fake_llm import FakeLLM, create_fake_llm
from support import RAG_KEY, bearer, fresh_database, rag_server, serve_asgi
from worker_support import Harness, preprocessor_for, worker_process


def codebase(n: int, tag: str = "") -> dict[str, bytes]:
    """A multi-file Python codebase with distinct content per file."""
    return {
        f"proj/pkg{i // 50}/mod_{i}.py": (
            f'"""Module {i} {tag}."""\n\n\ndef handler_{i}(value):\n'
            f"    return value * {i}\n\n\nclass Service{i}:\n"
            f"    def run(self):\n        return handler_{i}({i})\n"
        ).encode()
        for i in range(n)
    }


async def docs_in(rag: str, workspace: str) -> list[dict]:
    out: list[dict] = []
    page = 1
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            r = await client.post(
                f"{rag}/documents/paginated",
                json={"page": page, "page_size": 200, "sort_field": "id", "sort_direction": "asc"},
                headers={"LIGHTRAG-WORKSPACE": workspace, **bearer(RAG_KEY)},
            )
            if r.status_code == 404:
                return out
            body = r.json()
            out.extend(body["documents"])
            if not body["pagination"]["has_next"]:
                return out
            page += 1


def files_of(docs: list[dict]) -> dict[str, int]:
    """Documents per file (a code file's cross-file links document aside)."""
    counts: dict[str, int] = {}
    for d in docs:
        if d["file_path"].endswith("#links"):
            continue
        path = d["file_path"].split("#", 1)[0]
        counts[path] = counts.get(path, 0) + 1
    return counts


async def assert_indexed_exactly_once(harness: Harness, rag: str, ws: str, files: set[str]):
    docs = await docs_in(rag, ws)
    assert {d["status"] for d in docs} == {"processed"}
    per_file = files_of(docs)
    assert set(per_file) == files
    expected = await harness.store.pool.fetch(  # type: ignore[union-attr]
        "SELECT path, cardinality(doc_ids) AS n FROM ingest_codebase_files WHERE workspace = $1",
        ws,
    )
    # each file's documents once: the same ids on every retry, so nothing was added twice
    assert {r["path"]: r["n"] for r in expected} == per_file
    assert len({d["id"] for d in docs}) == len(docs)
    links = await harness.store.pool.fetch(  # type: ignore[union-attr]
        "SELECT links_doc_id FROM ingest_codebase_files"
        " WHERE workspace = $1 AND links_doc_id IS NOT NULL",
        ws,
    )
    assert {r["links_doc_id"] for r in links} == {
        d["id"] for d in docs if d["file_path"].endswith("#links")
    }
    stuck = await harness.store.pool.fetchval(  # type: ignore[union-attr]
        "SELECT count(*) FROM ingest_jobs WHERE workspace = $1"
        " AND status IN ('queued', 'parsing', 'indexing')",
        ws,
    )
    assert stuck == 0


async def test_a_job_is_completed_only_once_rag_server_has_indexed_everything(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path, extraction: FakeLLM
) -> None:
    ws = f"search-{uuid.uuid4().hex[:6]}"
    files = {**codebase(12), "proj/README.md": b"# Proj\n\nThe HandlerHub routes values.\n"}
    extraction.set_delay(0.3)  # indexing takes a while: the job must wait for it
    job_id = await harness.submit(ws, "codebase", "p.tar.gz", tar_bytes(files), "p")
    seen = set()
    with worker_process(harness, preprocessor, rag, tmp_path):
        while True:
            job = await harness.job(job_id)
            seen.add(job.status)
            if job.status == "indexing":
                docs = job.progress["documents"]
                assert docs["sent"] > 0 and docs["indexed"] + docs["failed"] <= docs["sent"]
            if job.finished:
                break
            await asyncio.sleep(0.05)
    assert job.status == "completed", job.error
    assert {"parsing", "indexing"} <= seen
    # completed means searchable: every document the job sent is processed in rag-server
    docs = await docs_in(rag, ws)
    assert docs and {d["status"] for d in docs} == {"processed"}
    assert job.progress["documents"]["indexed"] == len(docs) == job.progress["documents"]["sent"]
    assert job.progress["files"]["added"] == len(files)
    tracked = await harness.store.job_documents(job_id)  # type: ignore[union-attr]
    assert {d["status"] for d in tracked} == {"processed"} and len(tracked) == len(docs)


async def test_a_document_failing_in_lightrag_is_reported_then_retried(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path, extraction: FakeLLM
) -> None:
    ws = f"fail-{uuid.uuid4().hex[:6]}"
    files = {
        "docs/good.md": b"# Good\n\nThe LanternService answers lookups.\n",
        "docs/bad.md": b"# Bad\n\nThe PoisonedLedger cannot be extracted.\n",
        "bin/tool.exe": b"MZ\x00\x00binary",
        "uv.lock": b"lock",
    }
    extraction.fail_when("PoisonedLedger")
    job_id = await harness.submit(ws, "codebase", "d.tar.gz", tar_bytes(files), "d")
    with worker_process(harness, preprocessor, rag, tmp_path):
        job = await harness.wait(job_id)
        assert job.status == "completed_with_errors", (job.status, job.error)
        failed = job.result["failed_documents"]
        assert [f["path"] for f in failed] == ["docs/bad.md"]
        assert failed[0]["error"]  # LightRAG's reason
        assert "failed to index" in job.error
        files_ = job.progress["files"]
        # skipped files are counted as skipped, never as added
        assert files_["added"] == 2 and files_["skipped"] == 2, files_
        skipped = {s["path"]: s["reason"] for s in job.progress["skipped"]}
        assert skipped["uv.lock"] == "skipped: lock file"
        assert "binary" in skipped["bin/tool.exe"]

        extraction.recover()
        retried = await harness.store.retry(job_id)  # type: ignore[union-attr]
        assert retried is not None and retried.status == "queued"
        await harness.publish_outbox(job_id)
        job = await harness.wait(job_id, within=120)
    assert job.status == "completed", (job.status, job.error, job.result)
    assert job.retries == 1 and job.progress["documents"]["failed"] == 0
    await assert_indexed_exactly_once(harness, rag, ws, {"docs/good.md", "docs/bad.md"})


@pytest.mark.timeout(900)
async def test_sigkill_at_random_points_three_times_in_a_2000_file_job(
    harness: Harness, tmp_path: Path, postgres_dsn: str
) -> None:
    """rag-server on PostgreSQL here: LightRAG's JSON files slow down with thousands of
    documents."""
    ws = f"kill-{uuid.uuid4().hex[:6]}"
    files = {
        f"notes/n{i:04d}.txt": f"Note {i} about topic {i % 37}.\n".encode() for i in range(2000)
    }
    job_id = await harness.submit(ws, "codebase", "notes.tar.gz", tar_bytes(files), "notes")
    fake = create_fake_llm(chat_models=["qwen3:8b"], embedding_models=["qwen3-embedding:0.6b"])
    rng = random.Random(7)
    (tmp_path / "rag").mkdir()
    async with fresh_database(postgres_dsn, "kill_rag") as rag_dsn:
        with (
            serve_asgi(fake.app) as fake_url,
            rag_server(fake_url, tmp_path / "rag", profile="postgres", postgres_dsn=rag_dsn) as rag,
            preprocessor_for(rag) as preprocessor,
        ):
            kills = 0
            # "added" counts what every attempt of the job did: it only grows
            targets = sorted(rng.sample(range(100, 1900), 3))
            with worker_process(
                harness, preprocessor, rag, tmp_path, batch_files=40, queue={"max_deliver": 6}
            ) as worker:
                for target in targets:
                    job = await harness.until(
                        job_id,
                        # a job still queued (the worker not started yet) is no end
                        lambda j, t=target: (
                            j.status not in ("queued", "parsing")
                            or j.progress["files"]["added"] >= t
                        ),
                    )
                    if job.status != "parsing":
                        break
                    worker.kill()
                    kills += 1
                    worker.start()
                job = await harness.wait(job_id, within=900)
            assert kills == 3
            assert job.status == "completed", (job.status, job.error)
            assert job.attempts == 4
            assert job.progress["files"]["added"] == 2000  # counted across the attempts
            await assert_indexed_exactly_once(harness, rag, ws, set(files))


@pytest.mark.timeout(900)
async def test_a_three_minute_database_outage_spends_no_delivery(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path, infra: object
) -> None:
    ws = f"outage-{uuid.uuid4().hex[:6]}"
    files = codebase(200, "outage")
    job_id = await harness.submit(ws, "codebase", "o.tar.gz", tar_bytes(files), "o")
    with worker_process(harness, preprocessor, rag, tmp_path, batch_files=10) as worker:
        await harness.until(job_id, lambda j: j.progress["files"].get("added", 0) >= 30)
        infra.postgres.stop()  # type: ignore[attr-defined]
        try:
            await asyncio.sleep(180)
            assert worker.proc is not None and worker.proc.poll() is None
        finally:
            infra.postgres.start()  # type: ignore[attr-defined]
        await harness.store.pool.expire_connections()  # type: ignore[union-attr]
        job = await harness.wait(job_id, within=300)
        metrics = worker.metrics()
    assert job.status == "completed", (job.status, job.error, job.errors)
    assert job.attempts == 1  # held, not redelivered: no delivery spent
    assert 'ingest_messages_total{action="held-for-database"}' in metrics
    assert job.progress["files"]["added"] == 200
    await assert_indexed_exactly_once(harness, rag, ws, set(files))


async def test_two_jobs_on_one_codebase_leave_exactly_the_last_one(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    ws = f"race-{uuid.uuid4().hex[:6]}"
    first = {f"app/a{i}.py": f"def first_{i}():\n    return {i}\n".encode() for i in range(40)}
    second = {f"app/b{i}.py": f"def second_{i}():\n    return {i}\n".encode() for i in range(25)}
    one = await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(first), "app")
    two = await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(second), "app")
    with worker_process(harness, preprocessor, rag, tmp_path, concurrency=2, batch_files=5):
        a, b = await harness.wait(one, within=300), await harness.wait(two, within=300)
    assert b.status == "completed", b.error
    assert a.status in ("completed", "superseded"), a.error
    docs = await docs_in(rag, ws)
    assert set(files_of(docs)) == set(second)  # nothing of the first, however they interleaved
    await assert_indexed_exactly_once(harness, rag, ws, set(second))


async def test_stranded_jobs_are_requeued_or_failed_by_the_reaper(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    ws = f"reap-{uuid.uuid4().hex[:6]}"
    store = harness.store
    assert store is not None
    # a queued job whose message vanished from the stream (a wiped server, a lost publish)
    lost = await harness.submit(ws, "document", "lost.md", b"# Lost\n\nThe OrphanNote.\n")
    entry = await store.outbox_entry(lost)
    assert entry is not None and entry.stream_seq is not None
    import nats as nats_client

    nc = await nats_client.connect(harness.nats_url)
    await nc.jetstream().delete_msg(harness.queue.stream, entry.stream_seq)
    await nc.close()
    with worker_process(
        harness, preprocessor, rag, tmp_path, stalled_queued_seconds=1, queue={"max_deliver": 3}
    ):
        revived = await harness.wait(lost, within=60)
    assert revived.status == "completed", revived.errors
    assert "message was lost" in json.dumps(revived.errors)

    # a worker killed during the job's last delivery: JetStream will not deliver it again,
    # so the reaper ends it failed, with the reason, once its lease has lapsed
    dead = await harness.submit(ws, "codebase", "d.tar.gz", tar_bytes(codebase(300, "d")), "d")
    settings = {
        "batch_files": 5,
        "lease_seconds": 1,
        "heartbeat_seconds": 0.5,
        "abandoned_after_seconds": 2,
        "queue": {"max_deliver": 1},
    }
    with worker_process(harness, preprocessor, rag, tmp_path, **settings) as worker:
        await harness.until(dead, lambda j: j.progress["files"].get("added", 0) >= 10)
        worker.kill()
        worker.start()
        ended = await harness.wait(dead, within=60)
    assert ended.status == "failed", (ended.status, ended.errors)
    assert "stopped, after 1 attempt(s) (SPARKSTACK_INGEST_MAX_DELIVER=1)" in ended.error


async def test_nats_restart_with_twenty_jobs(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path, infra: object
) -> None:
    workspace = f"restart-{uuid.uuid4().hex[:6]}"
    jobs = [
        await harness.submit(
            workspace,
            "document",
            f"note{i}.md",
            f"# Note {i}\n\nThe NoteKeeper{i} remembers item {i}.\n".encode(),
        )
        for i in range(20)
    ]
    with worker_process(harness, preprocessor, rag, tmp_path, concurrency=2):
        # restart NATS once a job is under way, not after a fixed sleep
        await harness.until(jobs[0], lambda j: j.status != "queued")
        infra.nats.restart()  # type: ignore[attr-defined]
        finished = [await harness.wait(j, within=180) for j in jobs]
    assert [j.status for j in finished] == ["completed"] * 20
    per_file = files_of(await docs_in(rag, workspace))
    assert set(per_file) == {f"note{i}.md" for i in range(20)}


async def test_poison_messages_are_terminated_and_failing_jobs_end_failed(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    await harness.publish_raw(b"{not json")
    unknown = {
        "job_id": str(uuid.uuid4()),
        "workspace": "w",
        "kind": "document",
        "upload_id": str(uuid.uuid4()),
    }
    await harness.publish_raw(json.dumps(unknown).encode(), kind="document")
    good = await harness.submit("poison", "document", "ok.md", b"# Fine\n\nAll good.\n")
    with worker_process(harness, preprocessor, rag, tmp_path) as worker:
        assert (await harness.wait(good)).status == "completed"
        metrics = worker.metrics()
        assert 'ingest_messages_total{action="terminated-poison"} 1.0' in metrics
        assert 'ingest_messages_total{action="terminated-unknown"} 1.0' in metrics
    dead = "http://127.0.0.1:9"
    failing = await harness.submit("poison", "document", "never.md", b"# Never\n\nlands.\n")
    with worker_process(harness, dead, rag, tmp_path, call_attempts=2, queue={"max_deliver": 3}):
        job = await harness.wait(failing, within=90)
    assert job.status == "failed"
    assert job.attempts == 3
    assert "code-preprocessor" in job.error
    assert len(job.errors) == 3


async def test_hostile_archives_are_rejected_while_the_worker_keeps_serving(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    ws = f"hostile-{uuid.uuid4().hex[:6]}"
    hostile = {
        "zip bomb": ("bomb.zip", zip_bomb()),
        "gzip bomb": ("bomb.tar.gz", gzip_bomb()),
        "traversal": (
            "trav.tar.gz",
            tar_bytes({"../../etc/cron.d/evil.py": b"x = 1\n", "ok.py": b"y = 2\n"}),
        ),
        "symlink": (
            "link.tar.gz",
            tar_bytes({"a.py": b"z = 3\n"}, extra=[symlink("b.py", "/etc/shadow")]),
        ),
        "many files": ("many.tar.gz", tar_bytes({f"f/{i}.py": b"x=1\n" for i in range(3000)})),
        "corrupt gzip": ("bad.tar.gz", tar_bytes({"a.py": b"x\n" * 1000})[:-50]),
    }
    ids = {
        name: await harness.submit(ws, "codebase", f, data, name.replace(" ", "-"))
        for name, (f, data) in hostile.items()
    }
    after = await harness.submit(
        ws, "codebase", "fine.zip", zip_bytes({"fine.py": b"ok = True\n"}), "fine"
    )
    with worker_process(harness, preprocessor, rag, tmp_path, limits={"max_files": 2000}):
        results = {name: await harness.wait(job_id) for name, job_id in ids.items()}
        assert (await harness.wait(after)).status == "completed"
    for name in ("zip bomb", "gzip bomb", "many files", "corrupt gzip"):
        assert results[name].status == "failed", name
        assert results[name].attempts == 1, name  # refused at once, never retried
        assert results[name].error.startswith("archive rejected"), results[name].error
        assert results[name].progress["documents"]["sent"] == 0  # judged before sending
    assert "bomb" in results["zip bomb"].error and "bomb" in results["gzip bomb"].error
    assert "more than 2000 files (SPARKSTACK_INGEST_MAX_FILES)" in results["many files"].error
    assert "corrupt" in results["corrupt gzip"].error
    for name, bad in (("traversal", "../../etc/cron.d/evil.py"), ("symlink", "b.py")):
        job = results[name]
        assert job.status == "completed"
        reasons = {s["path"]: s["reason"] for s in job.progress["skipped"]}
        assert reasons[bad] in ("rejected: path traversal", "rejected: symlink")
        assert job.progress["files"]["added"] == 1


async def test_reingest_sends_only_what_changed(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    ws = f"incr-{uuid.uuid4().hex[:6]}"
    files = codebase(30)

    def counts(job: object) -> tuple[int, int, int, int]:
        f = job.progress["files"]  # type: ignore[attr-defined]
        return f["added"], f["changed"], f["unchanged"], f["deleted"]

    with worker_process(harness, preprocessor, rag, tmp_path):
        first = await harness.wait(
            await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(files), "app"), within=240
        )
        assert first.status == "completed" and counts(first) == (30, 0, 0, 0)
        before = {d["id"]: d["file_path"] for d in await docs_in(rag, ws)}

        again = await harness.wait(
            await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(files), "app"), within=240
        )
        assert again.status == "completed"
        assert counts(again) == (0, 0, 30, 0)
        assert again.progress["documents"]["sent"] == 0

        edited = dict(files)
        changed = sorted(files)[:3]
        for path in changed:
            edited[path] = files[path] + b"\n\ndef extra():\n    return 'edited'\n"
        removed = sorted(files)[-1]
        del edited[removed]
        third = await harness.wait(
            await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(edited), "app"), within=240
        )
    assert counts(third) == (0, 3, 26, 1)
    after = {d["id"]: d["file_path"].split("#")[0] for d in await docs_in(rag, ws)}
    assert removed not in set(after.values())
    old_ids_of_changed = {i for i, p in before.items() if p.split("#")[0] in changed}
    assert old_ids_of_changed.isdisjoint(after)  # replaced, not duplicated
    for path in changed:
        assert path in set(after.values())
    untouched = {i for i, p in before.items() if p.split("#")[0] not in set(changed) | {removed}}
    assert untouched <= set(after)


async def test_sigterm_releases_the_running_job_within_the_grace_period(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    ws = f"term-{uuid.uuid4().hex[:6]}"
    job_id = await harness.submit(ws, "codebase", "p.tar.gz", tar_bytes(codebase(120, "term")), "p")
    with worker_process(
        harness, preprocessor, rag, tmp_path, batch_files=5, grace_seconds=0.5
    ) as worker:
        await harness.until(job_id, lambda j: j.progress["files"].get("added", 0) >= 20)
        stopped_at = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - stopped_at < 15
        job = await harness.job(job_id)
        assert job.status == "queued" and job.error == "interrupted by shutdown"
        assert job.progress["files"]["added"] < 120
        worker.start()  # another worker (the same consumer) picks it up again
        job = await harness.wait(job_id, within=300)
    assert job.status == "completed" and job.attempts == 2
    assert job.progress["files"]["added"] == 120  # what the first attempt did still counts
