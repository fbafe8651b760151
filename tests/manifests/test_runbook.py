"""The first-run runbook (docs/spark.md) only asks for commands the project provides or
documents: host-setup's subcommands and options, the images Nix builds, the overlays and
scripts that exist, and the workloads its kubectl lines name."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from host_setup.cli import build_parser
from manifests_support import services_json

ROOT = Path(__file__).resolve().parents[2]
# tools the runbook may use beyond the project's own: each documented where it is used
SYSTEM_TOOLS = {"cd", "pip", "curl", "base64", "journalctl", "nvidia-smi", "ctr", "nix", "./result"}


def runbook_commands() -> list[list[str]]:
    text = (ROOT / "docs/spark.md").read_text()
    start = text.index("## First run on a fresh Spark")
    section = text[start : text.index("\n## ", start + 1)]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for line in block.splitlines():
            line = line.strip()
            for part in re.split(r"\s*(?:&&|\|)\s*", line):
                if part:
                    commands.append(shlex.split(part))
    return commands


def workloads(objs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    short = {"Deployment": "deploy", "Job": "job", "StatefulSet": "sts"}
    return {
        (o["metadata"].get("namespace", ""), short[o["kind"]], o["metadata"]["name"])
        for o in objs
        if o["kind"] in short
    }


def test_every_runbook_command_is_provided_or_documented(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    commands = runbook_commands()
    assert len(commands) >= 10, "the runbook lost its commands"
    images = {f".#{name}-image" for name in services_json()["services"]}
    deployed = workloads(rendered["default"])
    for argv in commands:
        if argv[0] == "sudo":
            argv = argv[1:]
        tool = argv[0]
        if tool == "uv":
            assert argv[1:3] == ["run", "host-setup"], argv
            build_parser().parse_args(argv[3:])  # exits on an unknown subcommand or option
        elif tool == "kubectl":
            if "-k" in argv:
                assert (ROOT / argv[argv.index("-k") + 1]).is_dir(), argv
            if "logs" in argv:
                namespace = argv[argv.index("-n") + 1]
                kind, name = argv[argv.index("logs") + 1].split("/")
                assert (namespace, kind, name) in deployed, argv
        elif tool.startswith("manifests/"):
            script = ROOT / tool
            assert script.is_file() and os.access(script, os.X_OK), argv
        elif tool == "nix":
            assert argv[1] == "build" and argv[2] in images, argv
        else:
            assert tool in SYSTEM_TOOLS, f"{argv}: not a command the project provides"
