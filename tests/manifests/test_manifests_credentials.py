"""Credentials: none in the repository. One Secret, generated at deploy time by
manifests/scripts/ensure-secret.sh when absent, and every consumer reads it by secretKeyRef.
The script runs here against a fake kubectl that keeps its state in a file."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from manifests_support import MANIFESTS, SECRET_NAME, SECRET_NAMESPACE, of_kind, pods, show

SCRIPT = MANIFESTS / "scripts" / "ensure-secret.sh"
SENSITIVE = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|_KEYS$|AUTH|CREDENTIAL", re.I)
PLACEHOLDER = re.compile(r"\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?")


def secret_refs(objs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    refs = set()
    for pod in pods(objs):
        for c in pod.all_containers:
            for entry in c.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((pod.namespace, ref["name"], ref["key"]))
            for source in c.get("envFrom", []):
                assert "secretRef" not in source, f"{pod}: read keys one by one (secretKeyRef)"
        for vol in pod.spec.get("volumes", []):
            assert "secret" not in vol, f"{pod}: the credentials are read through env"
    return refs


def test_consumers_read_the_one_secret(objs: list[dict[str, Any]]) -> None:
    refs = secret_refs(objs)
    assert refs, "nothing reads the credentials"
    assert {(ns, name) for ns, name, _ in refs} == {(SECRET_NAMESPACE, SECRET_NAME)}


def test_sensitive_env_vars_come_from_the_secret(objs: list[dict[str, Any]]) -> None:
    """A variable whose name says credential takes its value from the Secret (directly, or by
    $(VAR) from a variable that does), and no URL carries a credential at all: passwords and
    tokens travel as variables of their own, so an address can be printed safely."""
    for pod in pods(objs):
        for c in pod.all_containers:
            from_secret: set[str] = set()
            for entry in c.get("env", []):
                name = entry["name"]
                if "valueFrom" in entry:
                    if "secretKeyRef" in entry["valueFrom"]:
                        from_secret.add(name)
                    continue
                value = str(entry.get("value", ""))
                refs = set(re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value))
                if SENSITIVE.search(name):
                    assert refs and refs <= from_secret, f"{pod} {c['name']}: {name} is literal"
                userinfo = re.match(r"^[a-z]+://([^@/]*)@", value)
                if userinfo:
                    user = userinfo.group(1)
                    assert ":" not in user and not refs and not PLACEHOLDER.search(user), (
                        f"{pod} {c['name']}: {name} carries a credential in its URL"
                    )


def test_no_secret_objects_or_literal_credentials_under_manifests(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for objs in rendered.values():
        assert not of_kind(objs, "Secret")
        for cm in of_kind(objs, "ConfigMap"):
            for key, text in cm.get("data", {}).items():
                assert_no_literal_credentials(f"{show(cm)} {key}", text)
    files = [p for p in MANIFESTS.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert_no_literal_credentials(str(path.relative_to(MANIFESTS)), path.read_text())


ASSIGNMENT = re.compile(
    r"(?i)(?<![$/{.\w-])[\w-]*?(password|passwd|secret|token|api[_-]?key|requirepass|auth)\b[\"']?\s*[:=]\s*"
    r"[\"']?(?P<value>[^\s\"',}]+)"
)
REQUIREPASS = re.compile(r"(?i)\brequirepass\s+[\"']?(?P<value>[^\s\"']+)")
URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:]*:(?P<value>[^\s/@]+)@")
# what may follow "password:" and friends: references, key names, option names
ALLOWED_VALUE = re.compile(
    r"^(\$.*|\{\{.*|[a-z0-9-]+-(password|token|key)|sparkstack-credentials|"
    r"<[^>]*>|%s|\(.*|secretKeyRef|true|false|null|~)$"
)


def assert_no_literal_credentials(where: str, text: str) -> None:
    for pattern in (ASSIGNMENT, REQUIREPASS, URL_USERINFO):
        for m in pattern.finditer(text):
            value = m.group("value")
            assert ALLOWED_VALUE.match(value), f"{where}: looks like a literal credential: {m[0]!r}"


def test_the_credential_scan_bites() -> None:
    for bad in (
        "POSTGRES_PASSWORD: hunter2",
        'password = "s3cr3t"',
        "postgresql://sparkstack:s3cr3t@postgres:5432/db",
        "requirepass hunter2",
        "token: fake0123abcdef",
    ):
        with pytest.raises(AssertionError):
            assert_no_literal_credentials("sample", bad)
    assert_no_literal_credentials("ok", "postgresql://u:$(SECRET_POSTGRES_PASSWORD)@h:1/d")
    assert_no_literal_credentials("ok", "token: $NATS_TOKEN")
    assert_no_literal_credentials("ok", "key: postgres-password")


# --- ensure-secret.sh against a fake kubectl -----------------------------------------------

FAKE_KUBECTL = """
import json, os, sys
state_path = os.environ["FAKE_KUBECTL_STATE"]
with open(os.environ["FAKE_KUBECTL_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
state = json.load(open(state_path)) if os.path.exists(state_path) else {"ns": [], "secrets": {}}
if os.environ.get("FAKE_KUBECTL_DOWN"):
    sys.exit("The connection to the server was refused")
args = sys.argv[1:]
while args and args[0].startswith("--context"):
    args = args[2:] if "=" not in args[0] else args[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
def save():
    json.dump(state, open(state_path, "w"))
verb, kind, name = args[0], args[1], args[2]
if kind == "namespace":
    if verb == "get":
        print(f"namespace/{name}" if name in state["ns"] else "")
    elif verb == "create":
        state["ns"].append(name); save()
    sys.exit(0)
if kind == "secret" and verb == "get":
    key = f"{opt('-n')}/{name}"
    if key not in state["secrets"]:
        if "--ignore-not-found" in args:
            sys.exit(0)
        sys.exit(f"secrets {name} not found")
    if opt("-o") == "name":
        print(f"secret/{name}")
    else:
        assert opt("-o").startswith("go-template="), args
        for k in sorted(state["secrets"][key]):
            print(k)
    sys.exit(0)
if kind == "secret" and name == "generic" and verb == "create":
    name = args[3]
    ns = opt("-n")
    assert ns in state["ns"], "namespace missing"
    key = f"{ns}/{name}"
    if key in state["secrets"]:
        sys.exit("already exists")
    data = {}
    for a in args:
        if a.startswith("--from-file="):
            k, path = a[len("--from-file="):].split("=", 1)
            assert oct(os.stat(path).st_mode & 0o777) == "0o600", "value file readable by others"
            data[k] = open(path).read()
    state["secrets"][key] = data; save()
    sys.exit(0)
if kind == "secret" and verb == "patch":
    assert opt("--type") == "merge"
    patch = json.load(open(opt("--patch-file")))
    state["secrets"][f"{opt('-n')}/{name}"].update(patch["stringData"]); save()
    sys.exit(0)
sys.exit(f"fake kubectl: unsupported {args}")
"""


class Cluster:
    def __init__(self, tmp: Path) -> None:
        self.bin = tmp / "bin"
        self.bin.mkdir()
        kubectl = self.bin / "kubectl"
        kubectl.write_text(f"#!{sys.executable}\n{FAKE_KUBECTL}")
        kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
        self.state = tmp / "state.json"
        self.log = tmp / "calls.log"

    def run(
        self, *args: str, down: bool = False, stdin: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            FAKE_KUBECTL_STATE=str(self.state),
            FAKE_KUBECTL_LOG=str(self.log),
        )
        env.pop("KUBECTL", None)
        if down:
            env["FAKE_KUBECTL_DOWN"] = "1"
        if stdin:  # how host-setup runs it on a remote target: `bash -s < ensure-secret.sh`
            return subprocess.run(
                ["bash", "-s", "--", *args],
                input=SCRIPT.read_text(),
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
        return subprocess.run(
            ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=60
        )

    def secrets(self) -> dict[str, dict[str, str]]:
        return json.loads(self.state.read_text())["secrets"] if self.state.exists() else {}

    def calls(self) -> list[list[str]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


def test_creates_every_referenced_key_once(
    cluster: Cluster, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    first = cluster.run("--context", "kubernetes-admin@kubernetes")
    assert first.returncode == 0, first.stderr
    secrets = cluster.secrets()
    assert set(secrets) == {f"{SECRET_NAMESPACE}/{SECRET_NAME}"}
    values = secrets[f"{SECRET_NAMESPACE}/{SECRET_NAME}"]
    for objs in rendered.values():
        assert {key for _, _, key in secret_refs(objs)} == set(values)
    for value in values.values():
        assert re.fullmatch(r"[0-9a-f]{48}", value)  # 192 random bits, URL-safe
    assert len(set(values.values())) == len(values)
    # never on a command line, never printed
    everything = json.dumps(cluster.calls()) + first.stdout + first.stderr
    for value in values.values():
        assert value not in everything
    assert all(call[:2] == ["--context", "kubernetes-admin@kubernetes"] for call in cluster.calls())

    second = cluster.run()
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout
    assert cluster.secrets()[f"{SECRET_NAMESPACE}/{SECRET_NAME}"] == values
    verbs = [c[2] if c[0] == "--context" else c[0] for c in cluster.calls()]
    writes = [v for v in verbs if v in ("create", "patch", "apply", "replace")]
    assert len(writes) == 2  # the namespace and the Secret, both from the first run


def test_adds_only_missing_keys(cluster: Cluster) -> None:
    assert cluster.run().returncode == 0
    key = f"{SECRET_NAMESPACE}/{SECRET_NAME}"
    state = json.loads(cluster.state.read_text())
    before = dict(state["secrets"][key])
    dropped = sorted(before)[0]
    del state["secrets"][key][dropped]
    cluster.state.write_text(json.dumps(state))

    result = cluster.run()
    assert result.returncode == 0, result.stderr
    assert dropped in result.stdout
    after = cluster.secrets()[key]
    assert set(after) == set(before)
    assert {k: v for k, v in after.items() if k != dropped} == {
        k: v for k, v in before.items() if k != dropped
    }
    assert after[dropped] != before[dropped]  # a fresh random value


def test_unreachable_cluster_fails_without_writing(cluster: Cluster) -> None:
    result = cluster.run(down=True)
    assert result.returncode != 0
    assert not cluster.secrets()


def test_runs_from_stdin(cluster: Cluster) -> None:
    result = cluster.run(stdin=True)
    assert result.returncode == 0, result.stderr
    assert len(cluster.secrets()[f"{SECRET_NAMESPACE}/{SECRET_NAME}"]) >= 5
    again = cluster.run(stdin=True)
    assert again.returncode == 0 and "unchanged" in again.stdout
