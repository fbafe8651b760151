"""Helpers for the Nix and Tilt tests: tools, Nix evaluation, rendered overlays, and a Tiltfile
runner (the Go Starlark interpreter, through the `starlark-go` binding, with Tilt's functions
stubbed by a recorder that checks their arguments the way Tilt does).

Nothing here is skipped when a tool is missing: the tests fail and name the install step.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TILTFILE = ROOT / "Tiltfile"
SERVICES_JSON = ROOT / "services.json"
KUBEADM_CONTEXT = "kubernetes-admin@kubernetes"
OVERLAYS = {"default": "manifests/overlays/dev", "kserve": "manifests/overlays/dev-kserve"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
KEEP_ANNOTATION = ("tilt.dev/down-policy", "keep")

INSTALL_HINTS = {
    "nix-instantiate": "install Nix's evaluator: `apt-get install -y nix-bin` (Debian/Ubuntu)",
    "kubectl": "install kubectl (`apt-get install -y kubectl` from pkgs.k8s.io, as on the Spark)",
    "git": "install git (`apt-get install -y git`)",
}


def require_tool(name: str) -> str:
    """Path of a command-line tool, or a failure that says how to install it."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"`{name}` is not installed, and these tests need it: "
            f"{INSTALL_HINTS.get(name, 'install it')}"
        )
    return path


def load_services() -> dict[str, Any]:
    return json.loads(SERVICES_JSON.read_text())


# ----------------------------------------------------------------------------- Nix


def nix_instantiate(*args: str) -> str:
    """Run nix-instantiate against a dummy store: evaluation only, no daemon, no store writes."""
    exe = require_tool("nix-instantiate")
    proc = subprocess.run(
        [exe, "--store", "dummy://", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"nix-instantiate {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def nix_eval_json(expr: str) -> Any:
    """Evaluate a Nix expression (strictly) and return it as JSON data."""
    return json.loads(nix_instantiate("--eval", "--strict", "--json", "-E", expr))


def nix_files() -> list[Path]:
    return sorted([ROOT / "flake.nix", *(ROOT / "nix").rglob("*.nix")])


# ----------------------------------------------------------------------------- manifests


def render(overlay_dir: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of an overlay, as a list of objects."""
    exe = require_tool("kubectl")
    proc = subprocess.run(
        [exe, "kustomize", str(ROOT / overlay_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay_dir} failed:\n{proc.stderr}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_text(overlay_dir: str) -> str:
    exe = require_tool("kubectl")
    return subprocess.run(
        [exe, "kustomize", str(ROOT / overlay_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "InferenceService":
        return obj["spec"].get("predictor") or {}
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def images_of(obj: dict[str, Any]) -> list[str]:
    spec = pod_spec(obj)
    return [c["image"] for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])]


def repository(image: str) -> str:
    """The repository of an image reference (tag and digest removed)."""
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image = image[: image.rfind(":")]
    return image


# ----------------------------------------------------------------------------- Tiltfile

MODULES = ("config", "os")


def rewrite_modules(source: str) -> str:
    """`config.parse()` -> `config__parse()`: the binding has no struct type for modules.

    Only names in code are rewritten (tokens, not text: strings and comments stay as they are).
    """
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    for i in range(len(tokens) - 2):
        a, dot, b = tokens[i], tokens[i + 1], tokens[i + 2]
        preceded_by_dot = i > 0 and tokens[i - 1].string == "."
        if (
            a.type == tokenize.NAME
            and a.string in MODULES
            and dot.string == "."
            and b.type == tokenize.NAME
            and not preceded_by_dot
        ):
            start = offsets[a.start[0] - 1] + a.start[1]
            end = offsets[b.end[0] - 1] + b.end[1]
            edits.append((start, end, f"{a.string}__{b.string}"))
    for start, end, text in reversed(edits):
        source = source[:start] + text + source[end:]
    return source


def load_calls(source: str) -> list[str]:
    """Every `load(...)` in the Tiltfile's code (not in strings or comments)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    return [
        tokens[i + 2].string
        for i in range(len(tokens) - 2)
        if tokens[i].type == tokenize.NAME
        and tokens[i].string == "load"
        and tokens[i + 1].string == "("
    ]


class TiltfileError(Exception):
    """What Tilt would report as a Tiltfile load error."""


LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@dataclass
class CustomBuild:
    ref: str
    command: list[str]
    deps: list[str]
    live_update: list[dict[str, Any]]
    kwargs: dict[str, Any]


@dataclass
class Resource:
    name: str
    kind: str  # "workload", "objects" (k8s_resource new_name), "local"
    workload: dict[str, Any] | None = None
    objects: list[str] = field(default_factory=list)
    resource_deps: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    port_forwards: list[str] = field(default_factory=list)
    extra_pod_selectors: list[dict[str, str]] = field(default_factory=list)
    configured: int = 0  # how many k8s_resource() calls configured it
    kwargs: dict[str, Any] = field(default_factory=dict)


class TiltRecorder:
    """Tilt's Tiltfile functions, recording every call and checking it like Tilt does."""

    def __init__(self, args: dict[str, Any] | None = None, context: str = KUBEADM_CONTEXT):
        self.args = dict(args or {})
        self.context = context
        self.allowed_contexts: list[str] = []
        self.flags: dict[str, str] = {}
        self.enabled: list[str] | None = None
        self.yaml_objects: list[dict[str, Any]] = []
        self.kustomized: list[str] = []
        self.workload_kinds = set(WORKLOAD_KINDS)
        self.custom_builds: list[CustomBuild] = []
        self.local_resources: dict[str, dict[str, Any]] = {}
        self.resource_calls: list[dict[str, Any]] = []
        self.read_files: list[str] = []
        self.settings: dict[str, Any] = {}
        self.resources: dict[str, Resource] = {}
        # the binding keeps no reference to the callables: this dict does
        self.builtins = self._builtins()

    # -- the stubbed API --------------------------------------------------------------------
    def _builtins(self) -> dict[str, Any]:
        return {
            "allow_k8s_contexts": self.allow_k8s_contexts,
            "k8s_context": self.k8s_context,
            "config__define_string": self.define_string,
            "config__define_string_list": self.define_string_list,
            "config__define_bool": self.define_bool,
            "config__parse": self.parse,
            "config__set_enabled_resources": self.set_enabled_resources,
            "read_json": self.read_json,
            "read_yaml": self.read_yaml,
            "decode_yaml_stream": self.decode_yaml_stream,
            "kustomize": self.kustomize,
            "k8s_yaml": self.k8s_yaml,
            "k8s_kind": self.k8s_kind,
            "k8s_resource": self.k8s_resource,
            "local_resource": self.local_resource,
            "custom_build": self.custom_build,
            "sync": self.sync,
            "run": self.run,
            "fall_back_on": self.fall_back_on,
            "port_forward": self.port_forward,
            "update_settings": self.update_settings,
            "watch_file": self.watch_file,
            "fail": self.fail,
        }

    def allow_k8s_contexts(self, contexts: Any) -> None:
        self.allowed_contexts.extend(as_list(contexts))

    def k8s_context(self) -> str:
        return self.context

    def _define(self, kind: str, name: str, **_kw: Any) -> None:
        if name in self.flags:
            raise TiltfileError(f"config flag {name} defined twice")
        self.flags[name] = kind

    def define_string(self, name: str, args: bool = False, usage: str = "") -> None:
        self._define("string", name)

    def define_string_list(self, name: str, args: bool = False, usage: str = "") -> None:
        self._define("string_list", name)

    def define_bool(self, name: str, args: bool = False, usage: str = "") -> None:
        self._define("bool", name)

    def parse(self) -> dict[str, Any]:
        unknown = set(self.args) - set(self.flags)
        if unknown:
            raise TiltfileError(f"unknown flags: {sorted(unknown)}")
        return dict(self.args)

    def set_enabled_resources(self, names: Any) -> None:
        self.enabled = list(names)

    def _path(self, path: str) -> Path:
        p = Path(path)
        return p if p.is_absolute() else ROOT / p

    def read_json(self, path: str, default: Any = None) -> Any:
        self.read_files.append(path)
        return json.loads(self._path(path).read_text())

    def read_yaml(self, path: str, default: Any = None) -> Any:
        self.read_files.append(path)
        return yaml.safe_load(self._path(path).read_text())

    def decode_yaml_stream(self, text: str) -> list[Any]:
        return [doc for doc in yaml.safe_load_all(text) if doc]

    def kustomize(self, path: str, kustomize_bin: Any = None, flags: Any = None) -> str:
        self.kustomized.append(path)
        return render_text(path)

    def k8s_yaml(self, text: Any, allow_duplicates: bool = False) -> None:
        for item in as_list(text):
            if isinstance(item, str) and "\n" not in item and self._path(item).exists():
                item = self._path(item).read_text()
            self.yaml_objects.extend(doc for doc in yaml.safe_load_all(item) if doc)

    def k8s_kind(self, kind: str, api_version: Any = None, **_kw: Any) -> None:
        self.workload_kinds.add(kind)

    def k8s_resource(self, workload: str = "", **kw: Any) -> None:
        self.resource_calls.append({"workload": workload, **kw})

    def local_resource(self, name: str, cmd: Any = None, **kw: Any) -> None:
        if name in self.local_resources:
            raise TiltfileError(f"local_resource {name} defined twice")
        self.local_resources[name] = {"cmd": as_list(cmd), **kw}

    def custom_build(self, ref: str, command: Any = None, deps: Any = None, **kw: Any) -> None:
        if any(b.ref == ref for b in self.custom_builds):
            raise TiltfileError(f"custom_build {ref} defined twice")
        live_update = as_list(kw.pop("live_update", []))
        self.custom_builds.append(
            CustomBuild(ref, as_list(command), as_list(deps), live_update, kw)
        )

    def sync(self, local_path: str, remote_path: str) -> dict[str, Any]:
        return {"step": "sync", "local": local_path, "remote": remote_path}

    def run(self, cmd: Any, trigger: Any = None, echo_off: bool = False) -> dict[str, Any]:
        return {"step": "run", "cmd": cmd, "trigger": as_list(trigger)}

    def fall_back_on(self, files: Any) -> dict[str, Any]:
        return {"step": "fall_back_on", "files": as_list(files)}

    def port_forward(
        self, local_port: int, container_port: Any = None, name: Any = None, **_kw: Any
    ) -> str:
        return f"{local_port}:{container_port or local_port}"

    def update_settings(self, **kw: Any) -> None:
        self.settings.update(kw)

    def watch_file(self, path: str) -> None:
        self.read_files.append(path)

    def fail(self, message: str) -> None:
        raise TiltfileError(message)

    # -- after the Tiltfile ran: assemble resources as Tilt does ---------------------------
    def object_id(self, obj: dict[str, Any]) -> tuple[str, str, str]:
        meta = obj.get("metadata") or {}
        return (meta["name"], obj["kind"].lower(), meta.get("namespace", ""))

    def match_selector(self, sel: str) -> list[dict[str, Any]]:
        parts = sel.split(":")
        name, kind, namespace = [*parts, "", ""][:3]
        found = []
        for obj in self.yaml_objects:
            o_name, o_kind, o_ns = self.object_id(obj)
            if o_name != name or (kind and o_kind != kind.lower()):
                continue
            if namespace and o_ns != namespace:
                continue
            found.append(obj)
        return found

    def assemble(self) -> None:
        if self.context not in self.allowed_contexts:
            raise TiltfileError(f"context {self.context} is not in allow_k8s_contexts")
        workloads = [o for o in self.yaml_objects if o["kind"] in self.workload_kinds]
        claimed: set[tuple[str, str, str]] = set()
        for obj in workloads:
            name = obj["metadata"]["name"]
            if name in self.resources:  # Tilt would fall back to name:kind names
                raise TiltfileError(f"two workloads named {name}")
            self.resources[name] = Resource(name, "workload", workload=obj)
            claimed.add(self.object_id(obj))
        for name, spec in self.local_resources.items():
            if name in self.resources:
                raise TiltfileError(f"local_resource {name} clashes with a workload")
            self.resources[name] = Resource(
                name,
                "local",
                resource_deps=as_list(spec.get("resource_deps")),
                labels=as_list(spec.get("labels")),
                kwargs=spec,
            )
        for call in self.resource_calls:
            workload = call.get("workload") or ""
            new_name = call.get("new_name") or ""
            objects = as_list(call.get("objects"))
            if workload:
                if workload not in self.resources or self.resources[workload].kind != "workload":
                    raise TiltfileError(f"k8s_resource: no workload named {workload!r}")
                res = self.resources[workload]
                if new_name:
                    raise TiltfileError("renaming resources is not expected here")
            else:
                if not (new_name and objects):
                    raise TiltfileError("k8s_resource without workload needs new_name and objects")
                if new_name in self.resources:
                    raise TiltfileError(f"k8s_resource: {new_name} exists already")
                res = self.resources[new_name] = Resource(new_name, "objects")
            for sel in objects:
                matches = self.match_selector(sel)
                if len(matches) != 1:
                    raise TiltfileError(f"object selector {sel!r} matches {len(matches)} objects")
                oid = self.object_id(matches[0])
                if oid in claimed:
                    raise TiltfileError(f"object {sel!r} is already in a resource")
                claimed.add(oid)
                res.objects.append(sel)
            res.configured += 1
            res.resource_deps += as_list(call.get("resource_deps"))
            res.labels += as_list(call.get("labels"))
            res.port_forwards += [str(p) for p in as_list(call.get("port_forwards"))]
            res.extra_pod_selectors += as_list(call.get("extra_pod_selectors"))
            res.kwargs.update(call)
        for res in self.resources.values():
            for dep in res.resource_deps:
                if dep not in self.resources:
                    raise TiltfileError(f"{res.name}: resource_deps names unknown {dep!r}")
            for label in res.labels:
                if not LABEL_RE.match(label):
                    raise TiltfileError(f"{res.name}: invalid label {label!r}")
        if self.enabled is not None:
            for name in self.enabled:
                if name not in self.resources:
                    raise TiltfileError(f"set_enabled_resources: unknown resource {name!r}")
        self._check_builds()

    def _check_builds(self) -> None:
        images = {
            repository(image)
            for obj in self.yaml_objects
            if obj["kind"] in self.workload_kinds
            for image in images_of(obj)
        }
        for build in self.custom_builds:
            if build.ref not in images:
                raise TiltfileError(f"custom_build {build.ref}: no workload uses that image")
            for dep in build.deps:
                if not self._path(dep).exists():
                    raise TiltfileError(f"custom_build {build.ref}: dep {dep} does not exist")
            seen_sync = seen_run = False
            for step in build.live_update:
                kind = step["step"]
                if kind == "fall_back_on":
                    if seen_sync or seen_run:
                        raise TiltfileError("fall_back_on must come before sync and run")
                    files = step["files"]
                elif kind == "sync":
                    if seen_run:
                        raise TiltfileError("sync may not follow run")
                    seen_sync = True
                    if not step["remote"].startswith("/"):
                        raise TiltfileError(f"sync target {step['remote']} is not absolute")
                    files = [step["local"]]
                else:
                    seen_run = True
                    files = step["trigger"]
                for f in files:
                    if not self.within_deps(build, f):
                        raise TiltfileError(f"live_update path {f} is outside the build's deps")

    def within_deps(self, build: CustomBuild, path: str) -> bool:
        target = self._path(path).resolve()
        for dep in build.deps:
            d = self._path(dep).resolve()
            if target == d or d in target.parents:
                return True
        return False


def run_tiltfile(args: dict[str, Any] | None = None) -> TiltRecorder:
    """Execute the Tiltfile with Tilt's dialect options and the recording stubs."""
    try:
        from starlark_go import Starlark, configure_starlark
        from starlark_go.errors import StarlarkError
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise AssertionError(
            "the Go Starlark binding is missing: `uv sync` (starlark-go is in the dev group)"
        ) from exc

    # Tilt's dialect: top-level control flow and reassignment, sets, recursion and while
    configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)
    recorder = TiltRecorder(args)
    try:
        source = rewrite_modules(TILTFILE.read_text())
    except (tokenize.TokenError, SyntaxError) as exc:
        raise TiltfileError(f"the Tiltfile does not parse: {exc}") from exc
    interpreter = Starlark(globals=recorder.builtins)
    try:
        interpreter.exec(source, filename="Tiltfile")
    except StarlarkError as exc:
        raise TiltfileError(str(exc)) from exc
    recorder.assemble()
    return recorder
