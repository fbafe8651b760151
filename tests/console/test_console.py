"""The console in a real browser (Debian's Chromium driven by Playwright) against a real
orchestrator, rag-server, PostgreSQL, Valkey and NATS; only the model backend is the fake.

Screenshots of each page go to ``.artifacts/console/`` (or ``$SPARKSTACK_ARTIFACTS``)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from orchestrator.app import create_app
from orchestrator.settings import Settings
from sparkstack_common.ingestion.contract import QueueSettings
from sparkstack_testing.fake_llm import FakeLLM
from support import (
    ADMIN_KEY,
    PREPROCESSOR_KEY,
    RAG_KEY,
    bearer,
    catalog_fake,
    free_port,
    fresh_database,
    index_texts,
    ingest_worker_process,
    rag_server,
    serve_asgi,
    serve_process,
)

playwright_api = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("SPARKSTACK_ARTIFACTS", ROOT / ".artifacts")) / "console"
AXE = Path(__file__).parent / "vendor" / "axe-4.14.1.min.js"
VENDOR = ROOT / "services/console/src/sparkstack_console/static/vendor/VENDOR.json"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
KNOWLEDGE = {
    "alpha": "The ZephyrCache stores session tokens for the AuthGateway and expires them hourly.",
    "beta": "The MeridianQueue delivers invoices to the LedgerWriter in batches.",
}


def chromium_path() -> str:
    found = os.environ.get("SPARKSTACK_CHROMIUM") or shutil.which("chromium")
    if not found:
        pytest.fail("Debian's chromium is needed: apt-get install -y chromium")
    return found


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[FakeLLM, str]]:
    fake = catalog_fake()
    with serve_asgi(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def rag(backend: tuple[FakeLLM, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with rag_server(backend[1], tmp_path_factory.mktemp("console-rag")) as url:
        index_texts(url, KNOWLEDGE)
        yield url


@pytest.fixture(scope="module")
async def console_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_dsn, "console") as dsn:
        yield dsn


# a stream of its own: other modules' orchestrators share the NATS server
QUEUE = QueueSettings(stream="CONSOLE", subject_prefix="console.ingest", consumer="console-worker")


@pytest.fixture(scope="module")
def ingestion(
    rag: str, console_dsn: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """code-preprocessor and an ingest-worker, as processes, so uploads become searchable."""
    import sys

    logs = tmp_path_factory.mktemp("console-ingest")
    port = free_port()
    preprocessor = {
        "CODE_PREPROCESSOR_PORT": str(port),
        "CODE_PREPROCESSOR_API_KEY": PREPROCESSOR_KEY,
        "CODE_PREPROCESSOR_RAG_SERVER_URL": rag,
        "CODE_PREPROCESSOR_RAG_SERVER_API_KEY": RAG_KEY,
        "CODE_PREPROCESSOR_WORKERS": "1",
    }
    run = [sys.executable, "-c"]
    with serve_process(
        [*run, "from code_preprocessor.cli import main; main()"],
        preprocessor,
        port,
        logs / "preprocessor.log",
    ) as pre:
        with ingest_worker_process(
            nats_url=nats_url,
            postgres_dsn=console_dsn,
            preprocessor_url=pre,
            rag_url=rag,
            queue=QUEUE,
            log_path=logs / "worker.log",
        ):
            yield


@pytest.fixture(scope="module")
def orchestrator(
    backend: tuple[FakeLLM, str],
    rag: str,
    console_dsn: str,
    redis_url: str,
    nats_url: str,
    ingestion: None,
) -> Iterator[str]:
    urls = {f"{r}_url": f"{backend[1]}/v1" for r in ("coding", "reasoning", "extract", "embed")}
    settings = Settings(
        **urls,
        postgres_dsn=console_dsn,
        redis_url=redis_url,
        nats_url=nats_url,
        rag_server_url=rag,
        rag_server_api_key=RAG_KEY,
        admin_key=ADMIN_KEY,
        recall_min_similarity=0.05,
        queue=QUEUE,
    )
    with serve_asgi(create_app(settings)) as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        # a conversation in each workspace, so there are sessions to look at (and to hide)
        for workspace, session, question in (
            ("alpha", "console-demo", "Where does ZephyrCache keep tokens?"),
            ("beta", "beta-secret", "How does MeridianQueue batch invoices?"),
        ):
            r = httpx.post(
                f"{url}/v1/chat/completions",
                json={
                    "model": "qwen3-coder",
                    "workspace": workspace,
                    "messages": [{"role": "user", "content": question}],
                },
                headers={**bearer(ADMIN_KEY), "X-Session-Id": session},
                timeout=60,
            )
            assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20  # sessions are recorded off the request path
        while len(httpx.get(f"{url}/v1/sessions", headers=bearer(ADMIN_KEY)).json()["data"]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium_path(),
            # WebGL (the graph) without a GPU: Chromium's software renderer
            args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        yield b
        b.close()


class Tab:
    """A browser tab on the console that records console errors and failed requests."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context()
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, route: str = "") -> None:
        self.page.goto(f"{self.base}/ui/#{route}")

    def login(self, key: str, admitted: bool = True) -> None:
        self.open("/login")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Log in").click()
        if admitted:
            expect(self.page.get_by_role("heading", name="Workspaces")).to_be_visible()

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def accessible(self) -> None:
        """axe-core finds no serious or critical violation on the page as it is now."""
        source = AXE.read_bytes()
        assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "vendored axe-core changed"
        self.page.evaluate(source.decode())  # DevTools evaluation: not subject to the CSP
        result = self.page.evaluate("axe.run(document, {resultTypes: ['violations']})")
        serious = [
            f"{v['id']}: {v['help']} ({len(v['nodes'])} node(s))"
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not serious, serious

    def close(self) -> None:
        self.context.close()


def expect(locator: Any) -> Any:
    return playwright_api.expect(locator)


playwright_api.expect.set_options(timeout=15_000)  # a loaded 2-core machine


def test_login_refuses_a_wrong_key_and_admits_the_right_one(
    orchestrator: str, browser: Any
) -> None:
    tab = Tab(browser, orchestrator)
    try:
        tab.open()
        expect(tab.page.get_by_role("heading", name="Log in")).to_be_visible()
        tab.accessible()
        tab.shot("login")
        tab.login("sk-ss-not-a-key", admitted=False)
        expect(tab.page.get_by_role("alert")).to_contain_text("refused")
        tab.login(ADMIN_KEY)
        expect(tab.page.get_by_role("heading", name="Workspaces")).to_be_visible()
        for name in KNOWLEDGE:
            card = tab.page.get_by_role("region", name=f"workspace {name}")
            expect(card).to_contain_text(re.compile(r"[1-9]\d* document\(s\), \d+ entities"))
        tab.accessible()
        tab.shot("workspaces")
        # the 401 of the wrong key is the one expected console message
        assert all("401" in e for e in tab.errors), tab.errors
    finally:
        tab.close()


def test_pages_render_without_errors_and_retrieve_shows_sources(
    orchestrator: str, browser: Any
) -> None:
    tab = Tab(browser, orchestrator)
    try:
        tab.login(ADMIN_KEY)
        expect(tab.page.get_by_role("heading", name="Workspaces")).to_be_visible()

        tab.page.get_by_role("navigation").get_by_role("link", name="Retrieve").click()
        expect(tab.page.get_by_role("heading", name="Retrieve")).to_be_visible()
        tab.page.get_by_label("Workspace").select_option("alpha")
        tab.page.get_by_label("Question").fill("Where are the ZephyrCache session tokens?")
        tab.page.get_by_label("Mode").select_option("naive")
        tab.page.get_by_role("button", name="Retrieve").click()
        context = tab.page.get_by_role("region", name="retrieved context")
        expect(context).to_contain_text("ZephyrCache")
        expect(context).to_contain_text("alpha.md")
        tab.accessible()
        tab.shot("retrieve")

        tab.page.get_by_role("navigation").get_by_role("link", name="Sessions").click()
        tab.page.get_by_role("link", name="console-demo").click()
        expect(tab.page.get_by_role("heading", name="Session console-demo")).to_be_visible()
        expect(tab.page.locator("main")).to_contain_text("Where does ZephyrCache keep tokens?")
        # what the answer was given: the archival tier's injected knowledge, with its tokens
        tab.page.get_by_text("Memory given for turn 1").click()
        memory = tab.page.get_by_role("table", name="memory of turn 1")
        expect(memory.get_by_role("row").filter(has_text="archival")).to_contain_text("ok")
        expect(memory).to_contain_text("ZephyrCache stores session tokens")
        tab.accessible()
        tab.shot("session")

        tab.page.get_by_role("navigation").get_by_role("link", name="Jobs").click()
        expect(tab.page.get_by_role("heading", name="Jobs")).to_be_visible()
        tab.accessible()
        tab.shot("jobs")

        tab.page.get_by_role("navigation").get_by_role("link", name="Keys").click()
        expect(tab.page.get_by_role("heading", name="Keys")).to_be_visible()
        tab.accessible()
        tab.shot("keys")
        assert tab.errors == []
    finally:
        tab.close()


def test_a_scoped_key_made_in_the_console_sees_its_workspace_only_until_revoked(
    orchestrator: str, browser: Any
) -> None:
    admin = Tab(browser, orchestrator)
    viewer = Tab(browser, orchestrator)
    try:
        admin.login(ADMIN_KEY)
        admin.open("/keys")
        admin.page.get_by_label("Name").fill("alpha-viewer")
        admin.page.get_by_label("Workspaces (comma-separated)").fill("alpha")
        admin.page.get_by_role("button", name="Create key").click()
        key = admin.page.locator("#new-key").inner_text().strip()
        assert key.startswith("sk-ss-")
        expect(admin.page.get_by_role("cell", name="alpha-viewer", exact=True)).to_be_visible()

        viewer.login(key)
        expect(viewer.page.get_by_role("heading", name="Workspaces")).to_be_visible()
        expect(viewer.page.get_by_role("region", name="workspace alpha")).to_be_visible()
        expect(viewer.page.get_by_role("region", name="workspace beta")).to_have_count(0)
        expect(viewer.page.get_by_role("link", name="Keys")).to_be_hidden()
        viewer.open("/retrieve?workspace=beta")
        expect(viewer.page.get_by_role("heading", name="Retrieve")).to_be_visible()
        select = viewer.page.get_by_label("Workspace")
        options = select.locator("option").all_inner_texts()
        assert options == ["alpha"]
        viewer.open("/sessions")
        expect(viewer.page.get_by_role("link", name="console-demo")).to_be_visible()
        expect(viewer.page.get_by_role("link", name="beta-secret")).to_have_count(0)
        viewer.shot("scoped-key")
        viewer.open("/session?id=beta-secret")  # a link typed by hand: as if it did not exist
        expect(viewer.page.get_by_role("alert")).to_contain_text("does not exist")
        expect(viewer.page.locator("main")).not_to_contain_text("MeridianQueue")

        admin.page.on("dialog", lambda d: d.accept())
        admin.page.get_by_role("button", name="revoke key alpha-viewer").click()
        expect(admin.page.get_by_role("cell", name="alpha-viewer", exact=True)).to_have_count(0)
        time.sleep(1.2)  # a revoked key is refused within a second
        viewer.open("/workspaces")  # the next call with the revoked key
        expect(viewer.page.get_by_role("heading", name="Log in")).to_be_visible()
        expect(viewer.page.get_by_role("alert")).to_contain_text("refused")
    finally:
        admin.close()
        viewer.close()


def test_deleting_a_workspace_asks_for_its_name(orchestrator: str, rag: str, browser: Any) -> None:
    headers = {"LIGHTRAG-WORKSPACE": "gamma", **bearer(RAG_KEY)}
    r = httpx.post(f"{rag}/documents/texts", json={"texts": ["Gamma rays."]}, headers=headers)
    assert r.status_code == 200
    tab = Tab(browser, orchestrator)
    try:
        tab.login(ADMIN_KEY)
        card = tab.page.get_by_role("region", name="workspace gamma")
        expect(card).to_be_visible()
        answers = iter(["gamme", "gamma"])  # a typo first: nothing happens
        tab.page.on("dialog", lambda d: d.accept(next(answers)))
        card.get_by_role("button", name="delete workspace gamma").click()
        expect(tab.page.get_by_role("alert")).to_contain_text("did not match")
        expect(card).to_be_visible()
        card.get_by_role("button", name="delete workspace gamma").click()
        expect(tab.page.get_by_role("status").filter(has_text="deleted")).to_be_visible()
        expect(tab.page.get_by_role("region", name="workspace gamma")).to_have_count(0)
        expect(tab.page.get_by_role("region", name="workspace alpha")).to_be_visible()
        assert tab.errors == []
    finally:
        tab.close()


def test_a_codebase_dropped_on_the_page_is_followed_until_searchable(
    orchestrator: str, browser: Any
) -> None:
    tab = Tab(browser, orchestrator)
    watcher = Tab(browser, orchestrator)  # a jobs page open meanwhile: it must update itself
    try:
        watcher.login(ADMIN_KEY)
        watcher.open("/jobs?workspace=dropped")
        expect(watcher.page.get_by_text("0 job(s)")).to_be_visible()
        tab.login(ADMIN_KEY)
        tab.page.get_by_label("New workspace").fill("dropped")  # named here, made by the ingest
        tab.page.get_by_role("button", name="Create and ingest…").click()
        expect(tab.page.get_by_role("heading", name="Ingest")).to_be_visible()
        expect(tab.page.get_by_label("Workspace", exact=True)).to_have_value("dropped")
        tab.page.get_by_label("Codebase name (optional)").fill("orbit")
        tab.accessible()
        # what a drop of three files from a file manager delivers
        tab.page.evaluate(
            """() => {
                const dt = new DataTransfer();
                dt.items.add(new File(["def launch(rocket):\\n    return rocket.fire()\\n"],
                                      "launch.py"));
                dt.items.add(new File(["class Rocket:\\n    def fire(self):\\n        return 1\\n"],
                                      "rocket.py"));
                dt.items.add(new File(["# Orbit\\nLaunches rockets.\\n"], "README.md"));
                const zone = document.getElementById("drop");
                zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true}));
                zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
            }"""
        )
        line = tab.page.locator("#job-line")
        expect(line).to_contain_text("completed — searchable", timeout=180_000)
        expect(line).to_contain_text("3 added")
        tab.shot("ingest")
        jobs = httpx.get(
            f"{orchestrator}/v1/jobs", params={"workspace": "dropped"}, headers=bearer(ADMIN_KEY)
        ).json()["data"]
        assert [(j["codebase"], j["status"]) for j in jobs] == [("orbit", "completed")]
        row = watcher.page.locator("tbody tr").filter(has_text="orbit")
        expect(row).to_contain_text("completed")  # no reload: the list follows the jobs
        watcher.shot("jobs-live")
        assert tab.errors == [] and watcher.errors == []
    finally:
        tab.close()
        watcher.close()


def upload_codebase(orchestrator: str, workspace: str, name: str, files: dict[str, str]) -> None:
    """Through the API (the drop is tested elsewhere), until searchable."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = httpx.post(
        f"{orchestrator}/v1/codebase/ingest",
        data={"workspace": workspace, "name": name},
        files={"file": (f"{name}.tar.gz", buffer.getvalue())},
        headers=bearer(ADMIN_KEY),
    )
    assert r.status_code == 202, r.text
    job = r.json()["job_id"]
    deadline = time.monotonic() + 180
    while True:
        status = httpx.get(f"{orchestrator}/v1/jobs/{job}", headers=bearer(ADMIN_KEY)).json()
        if status["status"] == "completed":
            return
        assert status["status"] not in ("failed", "completed_with_errors"), status
        assert time.monotonic() < deadline, status
        time.sleep(0.3)


def test_the_graph_finds_a_symbol_shows_its_code_and_follows_its_callers(
    orchestrator: str, browser: Any
) -> None:
    for vendored, digest in json.loads(VENDOR.read_text())["files"].items():
        data = (VENDOR.parent / vendored).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest["sha256"], vendored
    upload_codebase(
        orchestrator,
        "graphed",
        "rockets",
        {
            "rocket.py": "def ignite(fuel):\n    '''Light the engine.'''\n    return fuel * 2\n",
            "launch.py": "from rocket import ignite\n\n\ndef launch():\n    return ignite(3)\n",
        },
    )
    tab = Tab(browser, orchestrator)
    try:
        tab.login(ADMIN_KEY)
        tab.open("/graph?workspace=graphed")
        expect(tab.page.get_by_role("heading", name="Graph")).to_be_visible()
        tab.page.get_by_label("Search entities").fill("ignite")
        tab.page.get_by_role("button", name="Search").click()
        tab.page.get_by_role("button", name="rocket.py:ignite", exact=True).click()
        details = tab.page.get_by_role("region", name="entity details")
        expect(details.get_by_role("heading", name="rocket.py:ignite")).to_be_visible()
        expect(details).to_contain_text("function")
        expect(details).to_contain_text("return fuel * 2")  # the code itself
        expect(tab.page.locator("#graph-stats")).to_contain_text("nodes")
        assert tab.page.locator("#graph-canvas canvas").count() > 0  # drawn by WebGL
        expect(tab.page.get_by_label("— contains")).to_be_checked()  # relation kinds filter
        details.get_by_role("button", name="Callers").click()
        callers = tab.page.get_by_role("list", name="callers")
        expect(callers.get_by_role("button", name="launch.py:launch")).to_be_visible()
        callers.get_by_role("button", name="launch.py:launch").click()
        expect(details.get_by_role("heading", name="launch.py:launch")).to_be_visible()
        tab.accessible()
        tab.shot("graph")
        assert tab.errors == [], tab.errors
    finally:
        tab.close()


def test_documents_are_listed_and_a_deleted_one_comes_back_with_the_next_ingest(
    orchestrator: str, browser: Any
) -> None:
    files = {
        "alpha.py": "def alpha():\n    return 1\n",
        "omega.py": "def omega():\n    return 2\n",
    }
    upload_codebase(orchestrator, "documented", "pair", files)
    tab = Tab(browser, orchestrator)
    try:
        tab.login(ADMIN_KEY)
        tab.open("/documents?workspace=documented")
        expect(tab.page.get_by_role("heading", name="Documents")).to_be_visible()
        rows = tab.page.locator("tbody tr")
        expect(rows.filter(has_text="omega.py").first).to_contain_text("processed")
        tab.accessible()
        tab.shot("documents")
        tab.page.on("dialog", lambda d: d.accept())
        before = rows.filter(has_text="omega.py").count()
        tab.page.get_by_role("button", name="delete document omega.py").first.click()
        expect(rows.filter(has_text="omega.py")).to_have_count(before - 1)
        assert tab.errors == []
    finally:
        tab.close()
    # the same codebase again: the deleted file is indexed again, not called unchanged
    upload_codebase(orchestrator, "documented", "pair", files)
    jobs = httpx.get(
        f"{orchestrator}/v1/jobs", params={"workspace": "documented"}, headers=bearer(ADMIN_KEY)
    ).json()["data"]
    assert jobs[0]["progress"]["files"]["added"] == 1, jobs[0]["progress"]
    assert jobs[0]["progress"]["files"]["unchanged"] == 1
    # the job's own page: its documents, and the upload to download
    tab = Tab(browser, orchestrator)
    try:
        tab.login(ADMIN_KEY)
        tab.open("/jobs?workspace=documented")
        tab.page.get_by_role("link", name=f"job {jobs[0]['id']}").click()
        expect(tab.page.locator("#job-summary")).to_contain_text("completed — searchable")
        expect(tab.page.locator("tbody")).to_contain_text("omega.py")
        with tab.page.expect_download() as download:
            tab.page.get_by_role("button", name="Download the upload").click()
        assert download.value.suggested_filename == "pair.tar.gz"
        tab.accessible()
        tab.shot("job")
        assert tab.errors == []
    finally:
        tab.close()


def test_the_console_works_from_the_keyboard_and_says_why_an_upload_failed(
    orchestrator: str, browser: Any
) -> None:
    tab = Tab(browser, orchestrator)
    try:
        tab.open("/login")
        tab.page.keyboard.type(ADMIN_KEY)  # the key field has the focus
        tab.page.keyboard.press("Enter")
        expect(tab.page.get_by_role("heading", name="Workspaces")).to_be_visible()
        # Tab through the page until the Ingest link has the focus (past every workspace
        # other tests created: each has four stops, and focus wraps to the top)
        for _ in range(500):
            tab.page.keyboard.press("Tab")
            if tab.page.evaluate("document.activeElement.textContent") == "Ingest":
                break
        else:
            pytest.fail("Tab never reached the Ingest link")
        tab.page.keyboard.press("Enter")
        expect(tab.page.get_by_role("heading", name="Ingest")).to_be_visible()
        # a workspace name the API refuses: the page says why
        tab.page.get_by_label("Workspace", exact=True).fill("Not A Name!")
        tab.page.get_by_label("Choose files").set_input_files(
            [{"name": "a.md", "mimeType": "text/markdown", "buffer": b"# hi\n"}]
        )
        alert = tab.page.get_by_role("alert")
        expect(alert).to_contain_text("Upload failed")
        expect(alert).to_contain_text("workspace")
    finally:
        tab.close()
