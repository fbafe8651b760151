"""The whole product as a user meets it: `sparkstack up`, ingest a real multi-language
codebase, chat through the openai client, inspect sessions and jobs, `down`, `up` again.
Only the LLM backends are the fake."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from sparkstack.secrets import load_existing
from sparkstack_testing.fake_llm import FakeLLM
from sparkstack_testing.serve import wait_healthy
from support import catalog_fake, free_port, serve_asgi

SAMPLES = Path(__file__).resolve().parents[1] / "code_preprocessor" / "samples"


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[FakeLLM, str]]:
    fake = catalog_fake()
    with serve_asgi(fake.app) as url:
        yield fake, url


def sparkstack(
    data: Path, env: dict[str, str], *args: str, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sparkstack", "--data-dir", str(data), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def processes_of(data: Path) -> list[int]:
    """Live processes started for this data dir (their command line or environment names it)."""
    needle = str(data).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (
                needle in (entry / "cmdline").read_bytes()
                or needle in (entry / "environ").read_bytes()
            ):
                if (entry / "status").read_text().find("State:\tZ") == -1:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def with_env(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (KEY=value)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    if "State:\tZ" not in (entry / "status").read_text():
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def component_pid(marker: str, module: str) -> int:
    """The pid of the component running ``module`` whose environment holds ``marker``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in env and f"from {module}.cli".encode() in cmdline:
            return int(entry.name)
    raise AssertionError(f"no {module} process with {marker}")


def test_up_ingest_chat_down_up(backend: tuple[FakeLLM, str], tmp_path: Path) -> None:
    fake, fake_url = backend
    data = tmp_path / "stack"
    ports = {
        name: free_port()
        for name in (
            "ORCHESTRATOR",
            "RAG_SERVER",
            "CODE_PREPROCESSOR",
            "INGEST_WORKER",
            "POSTGRES",
            "VALKEY",
            "NATS",
        )
    }
    env = {f"SPARKSTACK_{k}_PORT": str(v) for k, v in ports.items()}
    env["XDG_STATE_HOME"] = str(tmp_path / "state")  # where `up` notes its data dir
    api = f"http://127.0.0.1:{ports['ORCHESTRATOR']}"

    up = sparkstack(data, env, "up", "--detach", "--backend", f"{fake_url}/v1")
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"{api}/v1" in up.stdout
    admin = sparkstack(data, env, "keys", "admin").stdout.strip()
    assert admin.startswith("sk-ss-")
    auth = {"Authorization": f"Bearer {admin}"}
    secrets = load_existing(data)
    assert secrets is not None and admin == secrets.admin_key
    rag_auth = {"Authorization": f"Bearer {secrets.rag_server_key}"}
    probes: list[str] = []
    try:
        status = sparkstack(data, env, "status", timeout=60)
        assert status.returncode == 0, status.stdout
        for name in ("rag-server", "code-preprocessor", "ingest-worker", "orchestrator"):
            assert f"{name}" in status.stdout
        assert "reachable" in status.stdout

        ingest = sparkstack(
            data, env, "ingest", str(SAMPLES), "--workspace", "demo", "--name", "samples"
        )
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        languages = len([p for p in SAMPLES.iterdir() if p.is_file()])
        # piped output: a line per phase, no carriage-return frames
        assert "\r" not in ingest.stdout
        assert "parsing" in ingest.stdout  # (code needs no LLM: indexing may pass unseen)
        assert f"completed: {languages} added" in ingest.stdout

        jobs = httpx.get(f"{api}/v1/jobs", params={"workspace": "demo"}, headers=auth).json()
        job = jobs["data"][0]
        assert job["status"] == "completed" and job["searchable"]
        assert job["progress"]["files"]["added"] == languages
        # "completed" means searchable: rag-server has processed every document, right now
        rag = f"http://127.0.0.1:{ports['RAG_SERVER']}"
        docs = httpx.post(
            f"{rag}/documents/paginated",
            json={"page_size": 200},
            headers={"LIGHTRAG-WORKSPACE": "demo", **rag_auth},
        ).json()
        assert docs["documents"] and {d["status"] for d in docs["documents"]} == {"processed"}
        assert job["progress"]["documents"]["indexed"] == len(docs["documents"])

        # an empty directory is uploaded, but nothing in it is indexable: the user is told
        empty = tmp_path / "empty"
        empty.mkdir()
        nothing = sparkstack(data, env, "ingest", str(empty), "--workspace", "demo")
        assert nothing.returncode == 0, nothing.stdout + nothing.stderr
        assert "nothing will be searchable" in nothing.stdout
        # --no-wait returns at once with the job
        quick = sparkstack(data, env, "ingest", str(SAMPLES), "--workspace", "demo2", "--no-wait")
        assert quick.returncode == 0 and "not waiting" in quick.stdout

        client = openai.OpenAI(base_url=f"{api}/v1", api_key=admin, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="qwen3-coder",
            messages=[
                {"role": "user", "content": "How does Warehouse reserve stock in inventory.py?"}
            ],
            extra_body={"workspace": "demo"},
        )
        reply = raw.parse()
        assert reply.choices[0].message.content
        assert "archival=ok" in raw.headers["x-memory"]
        prompt = fake.last_chat["body"]["messages"]
        memory = next(
            m["content"] for m in prompt if m["role"] == "system" and "Memory from" in m["content"]
        )
        assert "inventory.py" in memory and "def reserve" in memory  # the code itself

        session = raw.headers["x-session-id"]
        deadline = time.monotonic() + 20
        while httpx.get(f"{api}/v1/sessions/{session}", headers=auth).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sessions = httpx.get(
            f"{api}/v1/sessions", params={"workspace": "demo"}, headers=auth
        ).json()["data"]
        assert session in {s["id"] for s in sessions}

        # the CLI finds the stack without --data-dir, and shows what it holds
        plain = subprocess.run(
            [sys.executable, "-m", "sparkstack", "status"],
            env={**os.environ, **env, "SPARKSTACK_DATA_DIR": ""},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert f"data in {data.resolve()}" in plain.stdout.splitlines()[0], plain.stdout
        assert "running, pid" in plain.stdout.splitlines()[0]
        assert "infrastructure:" in plain.stdout and "postgres" in plain.stdout
        listed_jobs = json.loads(
            sparkstack(data, env, "jobs", "list", "--workspace", "demo", "--json").stdout
        )
        assert {j["status"] for j in listed_jobs["data"]} == {"completed"}
        shown = sparkstack(data, env, "jobs", "show", job["id"]).stdout
        assert f"job {job['id']}" in shown and "completed" in shown
        transcript = sparkstack(data, env, "sessions", "show", session).stdout
        assert "How does Warehouse reserve stock" in transcript
        assert "memory given:" in transcript and "archival=ok" in transcript
        stats = sparkstack(data, env, "workspaces", "show", "demo").stdout
        assert stats.startswith("demo: ") and "entities" in stats
        assert "demo" in sparkstack(data, env, "workspaces").stdout
        refused = sparkstack(data, env, "workspaces", "delete", "demo")
        assert refused.returncode == 1 and "--yes" in refused.stderr
        logs = sparkstack(data, env, "logs", "orchestrator").stdout
        assert logs and all(line.startswith("[orchestrator") for line in logs.splitlines())

        # a key for one workspace, made with the CLI, sees that workspace only
        made = sparkstack(data, env, "keys", "create", "--name", "viewer", "--workspace", "other")
        assert made.returncode == 0, made.stderr
        viewer = made.stdout.strip().splitlines()[-1]
        assert viewer.startswith("sk-ss-") and viewer not in made.stderr
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert httpx.get(f"{api}/v1/jobs", headers=as_viewer).json()["data"] == []
        assert httpx.get(f"{api}/v1/sessions/{session}", headers=as_viewer).status_code == 404
        listed = sparkstack(data, env, "keys", "list")
        assert "viewer" in listed.stdout and viewer not in listed.stdout
        revoked = sparkstack(data, env, "keys", "revoke", "viewer")
        assert revoked.returncode == 0, revoked.stderr
        assert httpx.get(f"{api}/v1/jobs", headers=as_viewer).status_code == 401

        # the local stack is no target for a web page: no text/plain posts, no foreign host
        plain = httpx.post(
            f"{api}/v1/chat/completions",
            content=b'{"model": "qwen3-coder", "messages": []}',
            headers={**auth, "Content-Type": "text/plain"},
        )
        assert plain.status_code == 415
        rebound = httpx.get(f"{api}/v1/models", headers={**auth, "Host": "evil.example:8100"})
        assert rebound.status_code == 421
        assert "access-control-allow-origin" not in {k.lower() for k in plain.headers}
        for port in ports.values():
            for path in ("/health", "/ready"):
                with contextlib.suppress(httpx.HTTPError):
                    probes.append(httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).text)

        # a component that crashes is reported and restarted
        preprocessor = f"http://127.0.0.1:{ports['CODE_PREPROCESSOR']}"
        marker = f"CODE_PREPROCESSOR_PORT={ports['CODE_PREPROCESSOR']}"
        victim = component_pid(marker, "code_preprocessor")
        os.kill(victim, 9)
        wait_healthy(f"{preprocessor}/health", timeout=60)
        assert component_pid(marker, "code_preprocessor") != victim
        log = (data / "logs" / "stack.log").read_text()
        assert "exited with code -9; restarting" in log
    finally:
        down = sparkstack(data, env, "down", timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes_of(data) == []

    # again, in the foreground as a person runs it, stopped with Ctrl-C (SIGINT to the
    # terminal's foreground process group)
    fake_url = f"{fake_url}/v1"
    foreground = subprocess.Popen(
        [sys.executable, "-m", "sparkstack", "--data-dir", str(data), "up", "--backend", fake_url],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while "(ready)" not in sparkstack(data, env, "status", timeout=60).stdout.split("\n")[0]:
            assert foreground.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        assert load_existing(data) == secrets  # the same keys: clients keep working
        jobs = httpx.get(f"{api}/v1/jobs", params={"workspace": "demo"}, headers=auth).json()
        assert [j["status"] for j in jobs["data"]] == ["completed", "completed"]
        listing = httpx.get(f"{api}/v1/sessions", headers=auth).json()["data"]
        assert session in {s["id"] for s in listing}
        labels = httpx.get(
            f"http://127.0.0.1:{ports['RAG_SERVER']}/graph/label/list",
            headers={"LIGHTRAG-WORKSPACE": "demo", **rag_auth},
        ).json()
        assert "inventory.py:Warehouse" in labels  # code entities: <path>:<qualname>
        # output into a pipe closed early: no traceback
        piped = subprocess.run(
            f"{sys.executable} -m sparkstack --data-dir {data} status | head -1",
            shell=True,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert piped.stdout.strip() and "Error" not in piped.stderr, piped.stderr
    finally:
        os.killpg(foreground.pid, signal.SIGINT)
        out, err = foreground.communicate(timeout=120)
    again = subprocess.CompletedProcess(foreground.args, foreground.returncode, out, err)
    assert foreground.returncode == 0, out + err
    shutdown = out[out.index("sparkstack: stopping") :]
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, shutdown
    for name in ("orchestrator", "ingest-worker", "code-preprocessor", "rag-server"):
        assert len(re.findall(rf"\[{name} *\] stopped$", shutdown, re.M)) == 1, shutdown
    for name in ("postgres", "valkey", "nats"):
        assert f"[{name}] stopped" in shutdown, shutdown
    assert processes_of(data) == []
    # nor any process of a component (parser workers included), crashed one or not
    for name in ("ORCHESTRATOR", "RAG_SERVER", "CODE_PREPROCESSOR", "INGEST_WORKER"):
        assert not with_env(f"SPARKSTACK_{name}_PORT={ports[name]}"), name

    # no secret in any log line of any component or server, nor in any probe's answer
    key_files = {p.resolve() for p in (data / "secrets").iterdir()}
    texts = [*probes, up.stdout, up.stderr, again.stdout, again.stderr]
    for path in data.rglob("*"):
        if path.is_file() and path.resolve() not in key_files and path.suffix in (".log", ".json"):
            texts.append(path.read_text(errors="replace"))
    assert any("[orchestrator" in t for t in texts)  # the logs were read
    for secret in secrets.values():
        assert not [t for t in texts if secret in t], "a secret reached a log or a probe"
    # and the secrets sit in files only their owner may read
    for path in key_files:
        assert path.stat().st_mode & 0o077 == 0, path
