"""What ``serve_cli`` does for every service process: the start-up heap is out of the
collector's way once the app serves, and a start-up that fails is a failed process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
from sparkstack_testing.serve import free_port, serve_process

APP = textwrap.dedent(
    """
    import gc

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route


    async def heap(request):
        return JSONResponse({"frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())})


    def create_app():
        return Starlette(routes=[Route("/health", heap), Route("/heap", heap)])


    def broken_app():
        raise RuntimeError("the app cannot be built")
    """
)


def _argv(factory: str, port: int) -> list[str]:
    code = (
        "import sys; from sparkstack_common.service import serve_cli; "
        f"serve_cli('svc', 'served_app:{factory}', default_port={port}, argv=sys.argv[1:])"
    )
    return [sys.executable, "-c", code, "--log-level", "warning"]


def test_start_up_objects_are_frozen_once_the_app_serves(tmp_path: Path) -> None:
    (tmp_path / "served_app.py").write_text(APP)
    port = free_port()
    env = {"PYTHONPATH": str(tmp_path)}
    with serve_process(_argv("create_app", port), env, port, tmp_path / "log") as url:
        heap = httpx.get(f"{url}/heap").json()
    # uvicorn, starlette and the app's imports: tens of thousands of objects a full
    # collection would otherwise walk on every pass; what requests allocate stays collectable
    assert heap["frozen"] > 20_000
    assert heap["tracked"] < heap["frozen"] / 4


def test_an_app_that_cannot_start_is_a_failed_process(tmp_path: Path) -> None:
    (tmp_path / "served_app.py").write_text(APP)
    done = subprocess.run(
        _argv("broken_app", free_port()),
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "the app cannot be built" in done.stderr
