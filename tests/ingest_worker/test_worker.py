"""The ingest-worker with real NATS JetStream, PostgreSQL, code-preprocessor and rag-server."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
from archive_builders import gzip_bomb, symlink, tar_bytes, zip_bomb, zip_bytes
from conftest import Harness, worker_process
from support import RAG_KEY, bearer


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
    counts: dict[str, int] = {}
    for d in docs:
        path = d["file_path"].split("#", 1)[0]
        counts[path] = counts.get(path, 0) + 1
    return counts


async def test_sigkill_mid_job_then_restart_completes_every_file_exactly_once(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    workspace = f"kill-{uuid.uuid4().hex[:6]}"
    files = codebase(500)
    job_id = await harness.submit(workspace, "codebase", "proj.tar.gz", tar_bytes(files), "proj")
    with worker_process(harness, preprocessor, rag, tmp_path, batch_files=25) as worker:
        while True:  # let it get part of the way
            job = await harness.job(job_id)
            done = (job.progress or {}).get("files_done", 0)
            if job.status == "started" and 100 <= done < 500:
                break
            assert job.status in ("queued", "started"), job
            await asyncio.sleep(0.05)
        worker.kill()
        killed_at = (await harness.job(job_id)).progress["files_done"]
        assert killed_at < 500
        worker.start()
        job = await harness.wait(job_id)
    assert job.status == "completed", job.error
    assert job.attempts == 2
    assert job.result["files_total"] == 500
    docs = await docs_in(rag, workspace)
    per_file = files_of(docs)
    assert set(per_file) == set(files)
    # each file's chunks and overview, once: same ids on the retry, so nothing was added twice
    expected = await harness.store.pool.fetch(  # type: ignore[union-attr]
        "SELECT path, cardinality(doc_ids) AS n FROM ingest_codebase_files"
        " WHERE workspace = $1 AND codebase = 'proj'",
        workspace,
    )
    assert {r["path"]: r["n"] for r in expected} == per_file
    assert len({d["id"] for d in docs}) == len(docs)


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
        await asyncio.sleep(0.5)
        infra.nats.restart()  # type: ignore[attr-defined]
        finished = [await harness.wait(j) for j in jobs]
    assert [j.status for j in finished] == ["completed"] * 20
    assert all(j.attempts == 1 for j in finished), [j.attempts for j in finished]
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
    with worker_process(harness, dead, rag, tmp_path, max_deliver=3, call_attempts=2):
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
        "many files": ("many.tar.gz", tar_bytes({f"f/{i}.py": b"x=1\n" for i in range(10_000)})),
        "corrupt gzip": ("bad.tar.gz", tar_bytes({"a.py": b"x\n" * 1000})[:-50]),
    }
    ids = {
        name: await harness.submit(ws, "codebase", f, data, name.replace(" ", "-"))
        for name, (f, data) in hostile.items()
    }
    after = await harness.submit(
        ws, "codebase", "fine.zip", zip_bytes({"fine.py": b"ok = True\n"}), "fine"
    )
    with worker_process(harness, preprocessor, rag, tmp_path):
        results = {name: await harness.wait(job_id) for name, job_id in ids.items()}
        assert (await harness.wait(after)).status == "completed"
    for name in ("zip bomb", "gzip bomb", "many files", "corrupt gzip"):
        assert results[name].status == "failed", name
        assert results[name].attempts == 1, name  # refused at once, never retried
        assert results[name].error.startswith("archive rejected"), results[name].error
    assert "bomb" in results["zip bomb"].error and "bomb" in results["gzip bomb"].error
    assert "more than 2000 files" in results["many files"].error
    assert "corrupt" in results["corrupt gzip"].error
    for name, bad in (("traversal", "../../etc/cron.d/evil.py"), ("symlink", "b.py")):
        job = results[name]
        assert job.status == "completed"
        reasons = {s["path"]: s["reason"] for s in job.result["skipped_files"]}
        assert reasons[bad] in ("rejected: path traversal", "rejected: symlink")
        assert job.result["added"] == 1


async def test_reingest_sends_only_what_changed(
    harness: Harness, preprocessor: str, rag: str, tmp_path: Path
) -> None:
    ws = f"incr-{uuid.uuid4().hex[:6]}"
    files = codebase(30)
    with worker_process(harness, preprocessor, rag, tmp_path):
        first = await harness.wait(
            await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(files), "app"), within=240
        )
        assert first.result["added"] == 30
        before = {d["id"]: d["file_path"] for d in await docs_in(rag, ws)}

        again = await harness.wait(
            await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(files), "app"), within=240
        )
        assert again.status == "completed"
        assert (again.result["added"], again.result["changed"], again.result["unchanged"]) == (
            0,
            0,
            30,
        )
        assert again.result["documents_sent"] == 0

        edited = dict(files)
        changed = sorted(files)[:3]
        for path in changed:
            edited[path] = files[path] + b"\n\ndef extra():\n    return 'edited'\n"
        removed = sorted(files)[-1]
        del edited[removed]
        third = await harness.wait(
            await harness.submit(ws, "codebase", "app.tar.gz", tar_bytes(edited), "app"), within=240
        )
    r = third.result
    assert (r["added"], r["changed"], r["unchanged"], r["deleted"]) == (0, 3, 26, 1)
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
    import time

    ws = f"term-{uuid.uuid4().hex[:6]}"
    job_id = await harness.submit(ws, "codebase", "p.tar.gz", tar_bytes(codebase(120, "term")), "p")
    with worker_process(
        harness, preprocessor, rag, tmp_path, batch_files=5, grace_seconds=0.5
    ) as worker:
        while True:
            if (await harness.job(job_id)).progress.get("files_done", 0) >= 20:
                break
            await asyncio.sleep(0.05)
        stopped_at = time.monotonic()
        assert worker.stop() == 0
        assert time.monotonic() - stopped_at < 15
        job = await harness.job(job_id)
        assert job.status == "queued" and job.error == "interrupted by shutdown"
        assert job.progress["files_done"] < 120
        worker.start()  # another worker (the same consumer) picks it up again
        job = await harness.wait(job_id, within=300)
    assert job.status == "completed" and job.attempts == 2
    assert job.result["added"] + job.result["unchanged"] == 120
