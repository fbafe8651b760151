"""The host CLI, installed from its wheel outside the checkout, needs none of the services'
libraries: it runs as root on the Spark."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from host_setup.steps import STEP_NAMES

REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_depends_on_yaml_and_toml_writing_only_and_carries_its_data(tmp_path) -> None:
    uv = shutil.which("uv")
    assert uv, "uv is how the project builds its packages"
    out = tmp_path / "dist"
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", str(REPO / "host-setup"), "-o", str(out)],
        check=True,
        timeout=300,
    )
    [wheel] = out.glob("host_setup-*.whl")
    with zipfile.ZipFile(wheel) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith("METADATA"))).decode()
        names = set(z.namelist())
    requires = sorted(
        line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Requires-Dist")
    )
    assert [r.split(">")[0].split("=")[0].lower() for r in requires] == ["pyyaml", "tomli-w"]
    assert {"host_setup/data/catalog.toml", "host_setup/data/services.json"} <= names
    assert not any("scripted" in n for n in names)  # the simulator stays with the tests

    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(venv / "bin/python"), str(wheel)],
        check=True,
        timeout=300,
    )
    # from a directory outside the checkout: the catalog and ports come from the wheel
    render = (
        "from host_setup import render, steps; import json;"
        "cfg = json.loads(render.render_opencode_config(None, '10.0.0.5'));"
        "print(cfg['provider']['sparkstack']['options']['baseURL']);"
        "print(len(steps.STEP_NAMES))"
    )
    r = subprocess.run(
        [str(venv / "bin/python"), "-c", render],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert r.stdout.split() == ["http://10.0.0.5:31800/v1", str(len(STEP_NAMES))]
    listed = subprocess.run(
        [str(venv / "bin/host-setup"), "steps"], cwd=tmp_path, capture_output=True, text=True
    )
    assert listed.returncode == 0 and "kubeadm-init" in listed.stdout
    imported = subprocess.run(
        [str(venv / "bin/python"), "-c", "import asyncpg"], capture_output=True, text=True
    )
    assert imported.returncode != 0  # none of the services' dependencies came along
