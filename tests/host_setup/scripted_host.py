"""A simulated DGX Spark for tests: commands and files are simulated, nothing real is touched.

`ScriptedHost` keeps a stateful model of what host-setup reads and changes (kernel modules,
sysctls, swap, apt packages and holds, files, systemd units, containerd and its config,
kubeadm, a minimal Kubernetes API with Helm releases), records every command with whether
it changed anything, and takes scripted outputs and failures. A command it does not model
fails with exit 127, so an unexpected command shows up in tests.
"""

from __future__ import annotations

import base64
import copy
import fnmatch
import hashlib
import json
import re
import secrets
import shlex
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tomli_w
import yaml
from host_setup import facts, first_run, render, versions
from host_setup.checks import ADMIN_CONF, HELM_BIN
from host_setup.hosts import Host, Result

Matcher = str | Callable[[Sequence[str]], bool]

CLUSTER_SCOPED = {"Node", "StorageClass", "Namespace", "ClusterPolicy", "PersistentVolume"}
KINDS = {
    "node": "Node", "nodes": "Node",
    "namespace": "Namespace", "namespaces": "Namespace", "ns": "Namespace",
    "daemonset": "DaemonSet", "daemonsets": "DaemonSet", "ds": "DaemonSet",
    "deployment": "Deployment", "deployments": "Deployment",
    "statefulset": "StatefulSet", "statefulsets": "StatefulSet",
    "configmap": "ConfigMap", "configmaps": "ConfigMap", "cm": "ConfigMap",
    "secret": "Secret", "secrets": "Secret",
    "storageclass": "StorageClass", "storageclasses": "StorageClass", "sc": "StorageClass",
    "pod": "Pod", "pods": "Pod",
    "pvc": "PersistentVolumeClaim", "persistentvolumeclaim": "PersistentVolumeClaim",
    "pv": "PersistentVolume", "persistentvolume": "PersistentVolume",
    "clusterpolicies.nvidia.com": "ClusterPolicy", "clusterpolicy": "ClusterPolicy",
    "volumes.longhorn.io": "Volume",
}  # fmt: skip
K8S_AVAILABLE = ("1.34.1-1.1", versions.KUBERNETES_PACKAGE_VERSION)
UBUNTU_PACKAGES = {
    "apt-transport-https": "2.7.14",
    "ca-certificates": "20240203",
    "curl": "8.5.0-2ubuntu10.6",
    "gpg": "2.4.4-2ubuntu17.3",
    "conntrack": "1:1.4.8-1ubuntu1",
    "socat": "1.8.0.0-4build3",
    "open-iscsi": "2.1.9-3ubuntu5.4",
    "nfs-common": "1:2.6.4-3ubuntu5.1",
    "jq": "1.7.1-3build1",
    "containerd": "1.7.28-0ubuntu1~24.04.1",
}


@dataclass
class Entry:
    argv: tuple[str, ...]
    rc: int
    mutating: bool

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass
class Scripted:
    match: Matcher
    rc: int
    stdout: str
    stderr: str
    times: int | None  # None: always

    def matches(self, argv: Sequence[str]) -> bool:
        if callable(self.match):
            return self.match(argv)
        return self.match in shlex.join(argv)


@dataclass
class Cluster:
    """The Kubernetes API as far as host-setup uses it (shared by the nodes of one cluster)."""

    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    releases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    api_up: bool = False
    token: str = "abcdef.0123456789abcdef"
    endpoint: str = "192.0.2.10:6443"
    gpu_uuid: str = "GPU-5f2a7c1e-0b1d-4c3e-9a8f-1234567890ab"

    def reset(self) -> None:
        self.objects.clear()
        self.releases.clear()
        self.api_up = False


class ScriptedHost(Host):
    def __init__(
        self,
        *,
        name: str = "spark-1",
        arch: str = "aarch64",
        containerd: str | None = "2.1.4",
        gpu: bool = True,
        nvidia_ctk: bool = True,
        free_gb: int = 3500,
        user: str = "spark",
        cluster: Cluster | None = None,
    ) -> None:
        self.name = name
        self.arch = arch
        self.gpu = gpu
        self.nvidia_ctk = nvidia_ctk
        self.free_bytes = free_gb * 1024**3
        self.user = user
        self.cluster = cluster or Cluster()
        self.log: list[Entry] = []
        self.changes: list[str] = []  # every state change: commands and file writes
        self.scripted: list[Scripted] = []
        self.secret_script: Callable[[ScriptedHost, str], Result] | None = None
        self.endpoints: dict[str, str] = {}  # url -> body (for curl checks)
        self.sleeps = 0.0
        self._mutated = False
        self._env: dict[str, str] | None = None

        self.files: dict[str, str] = {
            "/etc/fstab": "UUID=1234 / ext4 defaults 0 1\n/swap.img none swap sw 0 0\n",
            "/etc/os-release": 'NAME="Ubuntu"\nVERSION_ID="24.04"\n',
        }
        self.dirs: set[str] = {"/etc", "/etc/apt", "/etc/apt/sources.list.d", "/tmp", "/opt"}
        self.owners: dict[str, str] = {}
        self.modules: set[str] = {"ext4", "nvidia", "nvidia_uvm"}
        # modules the kernel ships (modinfo finds them); NVIDIA's kernel is assumed to have
        # iscsi_tcp, which `host-setup verify` checks on the first run
        self.kernel_modules: set[str] = {"overlay", "br_netfilter", "iscsi_tcp", "nvidia"}
        # image -> HTTP status of its manifest on the registry (anything else: 404)
        self.registry: dict[str, str] = {versions.VLLM_IMAGE: "200"}
        self.images: set[str] = set()  # in containerd's image store
        self.sysctls: dict[str, str] = {
            "net.ipv4.ip_forward": "0",
            "fs.inotify.max_user_instances": "128",
            "fs.inotify.max_user_watches": "65536",
        }
        self.swaps: list[str] = ["/swap.img"]
        self.packages: dict[str, str] = {
            "ca-certificates": "20240203",
            "curl": "8.5.0",
            "gpg": "2.4.4",
        }
        self.holds: set[str] = set()
        self.apt_lists_fresh = False  # apt-get update ran after the last sources change
        self.services: dict[str, dict[str, Any]] = {
            "swap.target": {"active": True, "enabled": "static"},
            "multipathd": {"active": True, "enabled": "enabled"},  # Ubuntu server ships it
        }
        self.links: set[str] = set()
        self.repos: dict[str, str] = {}
        self.containerd_version: str | None = None
        if containerd:
            self._install_containerd(containerd, docker_default=True)
        if gpu:
            self.files[render.NVIDIA_RUNTIME_BINARY] = "binary"
            self.files["/usr/bin/nvidia-ctk"] = "binary"

    # scripting -------------------------------------------------------------------------
    def fail_on(
        self,
        match: Matcher,
        *,
        rc: int = 1,
        stdout: str = "",
        stderr: str = "scripted failure",
        times: int | None = 1,
    ) -> None:
        """The next `times` commands matching `match` (a substring of the command line, or a
        predicate over argv) fail with this output instead of running."""
        self.scripted.append(Scripted(match, rc, stdout, stderr, times))

    def respond(
        self, match: Matcher, stdout: str, *, rc: int = 0, times: int | None = None
    ) -> None:
        self.scripted.append(Scripted(match, rc, stdout, "", times))

    @property
    def mutations(self) -> list[Entry]:
        return [e for e in self.log if e.mutating]

    def commands(self) -> list[str]:
        return [e.command for e in self.log]

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy(
            {
                k: v
                for k, v in vars(self).items()
                if k
                not in {"log", "changes", "scripted", "secret_script", "sleeps", "_mutated", "_env"}
            }
            | {"cluster": vars(self.cluster)}
        )

    def _changed(self, what: str = "") -> None:
        self._mutated = True
        if what:
            self.changes.append(what)

    # files -----------------------------------------------------------------------------
    def read_file(self, path: str) -> str | None:
        if path == "/proc/modules":
            return "".join(f"{m} 16384 0 - Live 0x0\n" for m in sorted(self.modules))
        if path == "/proc/swaps":
            head = "Filename\tType\tSize\tUsed\tPriority\n"
            return head + "".join(f"{s}\tfile\t8388604\t0\t-2\n" for s in self.swaps)
        if path.startswith("/proc/sys/"):
            key = path[len("/proc/sys/") :].replace("/", ".")
            return self.sysctls[key] + "\n" if key in self.sysctls else None
        return self.files.get(path)

    def write_file(
        self, path: str, content: str, *, mode: int = 0o644, owner: str | None = None
    ) -> None:
        self._mkdirs(path.rsplit("/", 1)[0])
        self.files[path] = content
        if owner:
            self.owners[path] = owner
        self.changes.append(f"write {path}")

    def exists(self, path: str) -> bool:
        path = path.rstrip("/") or "/"
        return (
            path in self.files
            or path in self.dirs
            or any(p.startswith(path + "/") for p in self.files)
        )

    def remove(self, path: str) -> None:
        self._rm(path)
        self.changes.append(f"remove {path}")

    def glob(self, pattern: str) -> list[str]:
        return sorted(p for p in self.files if fnmatch.fnmatch(p, pattern))

    def invoking_user(self) -> str:
        return self.user

    def sleep(self, seconds: float) -> None:
        self.sleeps += seconds

    def _mkdirs(self, path: str) -> None:
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self.dirs.add("/" + "/".join(parts[:i]))

    def _rm(self, path: str) -> None:
        path = path.rstrip("/")
        for p in [p for p in self.files if p == path or p.startswith(path + "/")]:
            del self.files[p]
        self.dirs = {d for d in self.dirs if d != path and not d.startswith(path + "/")}

    # commands --------------------------------------------------------------------------
    def _exec(self, argv, *, input, env, sudo, timeout) -> Result:
        argv = list(argv)
        for s in self.scripted:
            if s.times != 0 and s.matches(argv):
                if s.times is not None:
                    s.times -= 1
                self.log.append(Entry(tuple(argv), s.rc, False))
                return Result(tuple(argv), s.rc, s.stdout, s.stderr)
        self._mutated = False
        self._env = env
        handler = getattr(self, "_cmd_" + argv[0].rsplit("/", 1)[-1].replace("-", "_"), None)
        if argv[0] == HELM_BIN or argv[0] == "helm":
            handler = self._cmd_helm if HELM_BIN in self.files else None
        if handler is None:
            rc, out, err = 127, "", f"{argv[0]}: command not found (not modelled by ScriptedHost)"
        else:
            try:
                rc, out, err = handler(argv[1:], input or "")
            except _Fail as exc:
                rc, out, err = exc.rc, "", str(exc)
        mutating = self._mutated
        self.log.append(Entry(tuple(argv), rc, mutating))
        if mutating:
            self.changes.append(shlex.join(argv))
        return Result(tuple(argv), rc, out, err)

    # -- basic tools
    def _cmd_uname(self, args, _):
        return 0, {"-s": "Linux\n", "-m": self.arch + "\n"}.get(args[0], "Linux\n"), ""

    def _cmd_nvidia_smi(self, args, _):
        if not self.gpu:
            raise _Fail(
                "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver", 9
            )
        if "--query-gpu=uuid" in args:
            return 0, self.cluster.gpu_uuid + "\n", ""
        return 0, "NVIDIA GB10, 580.95.05\n", ""

    def _cmd_sh(self, args, _):
        if args[:2] == ["-c", facts.GLOB_SCRIPT]:
            return 0, "".join(p + "\n" for p in self.glob(args[3])), ""
        if args[:2] == ["-c", first_run.CDI_SPECS.argv[2]]:
            kinds = [
                line
                for pattern in args[3:]
                for path in self.glob(pattern)
                for line in (self.files.get(path) or "").splitlines()
                if line.startswith("kind:")
            ]
            return 0, "".join(k + "\n" for k in kinds), ""
        if args[:2] == ["-c", first_run.registry_status("r/x:t").argv[2]]:
            registry, repository, tag = args[3:6]
            return 0, self.registry.get(f"{registry}/{repository}:{tag}", "404"), ""
        raise _Fail(f"sh -c {args[1:2]}: not modelled", 127)

    def _cmd_modinfo(self, args, _):
        name = args[-1]
        if name not in self.kernel_modules:
            raise _Fail(f"modinfo: ERROR: Module {name} not found.")
        return 0, f"/lib/modules/6.11.0-1016-nvidia/kernel/{name}.ko.zst\n", ""

    def _cmd_crictl(self, args, _):
        if args[0] == "inspecti":
            if args[-1] not in self.images:
                raise _Fail(f"no such image {args[-1]} present")
            return 0, "{}\n", ""
        raise _Fail(f"crictl {args[0]}: not modelled")

    def _cmd_df(self, args, _):
        return 0, f"      Avail\n{self.free_bytes}\n", ""

    def _cmd_getent(self, args, _):
        user = args[1]
        home = "/root" if user == "root" else f"/home/{user}"
        return 0, f"{user}:x:1000:1000:{user}:{home}:/bin/bash\n", ""

    def _cmd_id(self, args, _):
        return 0, self.user + "\n", ""

    def _cmd_test(self, args, _):
        return (0 if self.exists(args[-1]) else 1), "", ""

    def _cmd_cat(self, args, _):
        text = self.read_file(args[-1])
        if text is None:
            raise _Fail(f"cat: {args[-1]}: No such file or directory")
        return 0, text, ""

    def _cmd_mkdir(self, args, _):
        paths = [
            a
            for i, a in enumerate(args)
            if not a.startswith("-") and (i == 0 or args[i - 1] != "-m")
        ]
        for p in paths:
            if p not in self.dirs:
                self._mkdirs(p)
                self._changed()
        return 0, "", ""

    def _cmd_chown(self, args, _):
        self.owners[args[-1]] = args[-2]
        self._changed()
        return 0, "", ""

    def _cmd_rm(self, args, _):
        for p in [a for a in args if not a.startswith("-")]:
            if self.exists(p):
                self._rm(p)
                self._changed()
        return 0, "", ""

    def _cmd_install(self, args, _):
        src, dest = args[-2], args[-1]
        if src not in self.files:
            raise _Fail(f"install: cannot stat '{src}'")
        self.files[dest] = self.files[src]
        self._changed()
        return 0, "", ""

    def _cmd_modprobe(self, args, _):
        m = args[-1]
        if m not in self.modules:
            self.modules.add(m)
            if m == "br_netfilter":
                self.sysctls.setdefault("net.bridge.bridge-nf-call-iptables", "1")
                self.sysctls.setdefault("net.bridge.bridge-nf-call-ip6tables", "1")
            self._changed()
        return 0, "", ""

    def _cmd_sysctl(self, args, _):
        if args[0] == "-p":
            text = self.files.get(args[1])
            if text is None:
                raise _Fail(f'sysctl: cannot open "{args[1]}": No such file or directory', 255)
            out = ""
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep and not line.lstrip().startswith("#"):
                    out += self._cmd_sysctl(["-w", f"{key.strip()}={value.strip()}"], "")[1]
            return 0, out, ""
        key, _, value = args[-1].partition("=")
        if key not in self.sysctls:
            raise _Fail(
                f"sysctl: cannot stat /proc/sys/{key.replace('.', '/')}: No such file or directory",
                255,
            )
        self.sysctls[key] = value
        self._changed()
        return 0, f"{key} = {value}\n", ""

    def _cmd_swapoff(self, args, _):
        if self.swaps:
            self.swaps.clear()
            self._changed()
        return 0, "", ""

    def _cmd_systemctl(self, args, _):
        verb, units = args[0], [a for a in args[1:] if not a.startswith("-")]
        if verb == "daemon-reload":
            return 0, "", ""
        unit = units[0]
        svc = self.services.get(unit)
        if verb == "show":  # --property=ActiveState,UnitFileState
            active = "active" if svc and svc["active"] else "inactive"
            return 0, f"ActiveState={active}\nUnitFileState={svc['enabled'] if svc else ''}\n", ""
        if verb == "is-active":
            state = "active" if svc and svc["active"] else "inactive"
            return (0 if state == "active" else 3), state + "\n", ""
        if verb == "is-enabled":
            if svc is None:
                return (
                    1,
                    "",
                    f"Failed to get unit file state for {unit}.service: No such file\n",
                )
            return (0 if svc["enabled"] in ("enabled", "static") else 1), svc["enabled"] + "\n", ""
        if svc is None:
            raise _Fail(f"Failed to {verb} {unit}: Unit {unit} not found.", 5)
        self._changed()
        if verb == "mask":
            svc["enabled"] = "masked"
        elif verb == "enable":
            svc["enabled"] = "enabled"
            if "--now" in args:
                self._start(unit)
        elif verb in ("start", "restart"):
            self._start(unit)
        elif verb == "stop":
            svc["active"] = False
        else:
            raise _Fail(f"systemctl {verb}: not modelled")
        return 0, "", ""

    def _start(self, unit: str) -> None:
        svc = self.services[unit]
        if svc["enabled"] == "masked":
            raise _Fail(f"Failed to start {unit}: Unit {unit} is masked.", 1)
        if unit == "containerd":
            try:
                render.containerd_facts(self.files.get(render.CONTAINERD_CONFIG, ""))
            except (tomllib.TOMLDecodeError, ValueError) as exc:
                svc["active"] = False
                raise _Fail(f"containerd failed to start: {exc}") from exc
        svc["active"] = True

    # -- apt
    def _available(self, name: str) -> tuple[str, ...]:
        if name in UBUNTU_PACKAGES:
            return (UBUNTU_PACKAGES[name],)
        k8s_repo = self.files.get("/etc/apt/sources.list.d/kubernetes.list", "")
        if (
            name in versions.KUBERNETES_PACKAGES
            and "pkgs.k8s.io" in k8s_repo
            and self.apt_lists_fresh
        ):
            return K8S_AVAILABLE
        return ()

    def _cmd_apt_cache(self, args, _):
        name = args[-1]
        candidate = (self._available(name) or ("(none)",))[-1]
        installed = self.packages.get(name, "(none)")
        return 0, f"{name}:\n  Installed: {installed}\n  Candidate: {candidate}\n", ""

    def _cmd_dpkg_query(self, args, _):
        pkgs = [a for a in args if not a.startswith("-")]
        lines = [f"{p} {self.packages[p]} ii \n" for p in pkgs if p in self.packages]
        missing = [p for p in pkgs if p not in self.packages]
        err = "".join(f"dpkg-query: no packages found matching {p}\n" for p in missing)
        return (1 if missing else 0), "".join(lines), err

    def _cmd_apt_get(self, args, _):
        if args[0] == "update":
            self.apt_lists_fresh = True
            self._changed()
            return 0, "Reading package lists... Done\n", ""
        if args[0] != "install":
            raise _Fail(f"apt-get {args[0]}: not modelled")
        wanted = [a for a in args[1:] if not a.startswith("-")]
        for spec in wanted:
            name, _, version = spec.partition("=")
            available = self._available(name)
            if not available:
                raise _Fail(f"E: Unable to locate package {name}", 100)
            if version and version not in available:
                raise _Fail(f"E: Version '{version}' for '{name}' was not found", 100)
            if name in self.holds and "--allow-change-held-packages" not in args:
                raise _Fail(
                    "E: Held packages were changed and -y was used without --allow-change-held-packages",  # noqa: E501
                    100,
                )
        for spec in wanted:
            name, _, version = spec.partition("=")
            version = version or self._available(name)[-1]
            if self.packages.get(name) == version:
                continue
            self.packages[name] = version
            self._changed()
            if name == "containerd":
                self._install_containerd("1.7.28", docker_default=False)
            elif name == "open-iscsi":
                self.services.setdefault("iscsid", {"active": False, "enabled": "disabled"})
            elif name == "kubelet":
                self.services.setdefault("kubelet", {"active": False, "enabled": "disabled"})
            if name in versions.KUBERNETES_PACKAGES:
                self.files[f"/usr/bin/{name}"] = f"{name} {version}"
        return 0, "", ""

    def _cmd_apt_mark(self, args, _):
        if args[0] == "showhold":
            return 0, "".join(f"{p}\n" for p in sorted(self.holds)), ""
        if args[0] == "hold":
            for p in args[1:]:
                if p not in self.packages:
                    raise _Fail(f"E: Unable to locate package {p}", 100)
                if p not in self.holds:
                    self.holds.add(p)
                    self._changed()
            return 0, "", ""
        raise _Fail(f"apt-mark {args[0]}: not modelled")

    # -- downloads
    def _cmd_curl(self, args, _):
        url = args[-1]
        if "-o" not in args:  # an HTTP check
            if url in self.endpoints:
                return 0, self.endpoints[url], ""
            raise _Fail(f"curl: (7) Failed to connect to {url}", 7)
        dest = args[args.index("-o") + 1]
        if url.endswith((".sha256", ".sha256sum")):
            base = url.rsplit(".", 1)[0]
            digest = hashlib.sha256(_artifact(base).encode()).hexdigest()
            body = f"{digest}  {base.rsplit('/', 1)[-1]}\n"
        else:
            body = _artifact(url)
        self._mkdirs(dest.rsplit("/", 1)[0])
        self.files[dest] = body
        self._changed()
        return 0, "", ""

    def _cmd_sha256sum(self, args, _):
        path = args[-1]
        if path not in self.files:
            raise _Fail(f"sha256sum: {path}: No such file or directory")
        return 0, f"{hashlib.sha256(self.files[path].encode()).hexdigest()}  {path}\n", ""

    def _cmd_gpg(self, args, _):
        dest, src = args[args.index("-o") + 1], args[-1]
        if src not in self.files:
            raise _Fail(f"gpg: can't open '{src}'", 2)
        self._mkdirs(dest.rsplit("/", 1)[0])
        self.files[dest] = "dearmored " + self.files[src]
        self._changed()
        return 0, "", ""

    def _cmd_tar(self, args, _):
        tgz = args[args.index("-xzf") + 1]
        dest = args[args.index("-C") + 1]
        body = self.files.get(tgz)
        if body is None:
            raise _Fail(f"tar: {tgz}: Cannot open: No such file or directory", 2)
        if "cni-plugins" in body:
            for plugin in ("bridge", "host-local", "loopback", "portmap", "firewall", "tuning"):
                self.files[f"{dest}/{plugin}"] = body
        elif "helm-" in body:
            arch = "arm64" if self.arch == "aarch64" else "amd64"
            self.files[f"{dest}/linux-{arch}/helm"] = body
        else:
            raise _Fail(f"tar: {tgz}: not a known archive")
        self._changed()
        return 0, "", ""

    # -- containerd and the NVIDIA toolkit
    def _install_containerd(self, version: str, *, docker_default: bool) -> None:
        self.containerd_version = version
        self.services["containerd"] = {"active": True, "enabled": "enabled"}
        if docker_default:  # what Docker's containerd.io package ships: CRI disabled
            self.files[render.CONTAINERD_CONFIG] = 'disabled_plugins = ["cri"]\n'
        else:
            major = int(version.split(".")[0])
            self.files[render.CONTAINERD_CONFIG] = f"version = {2 if major < 2 else 3}\n"

    def _cmd_containerd(self, args, _):
        if self.containerd_version is None:
            raise _Fail("containerd: command not found", 127)
        v = self.containerd_version
        if v.startswith("1."):
            return 0, f"containerd containerd.io {v} 05044ec0a9a75232cad458027ca83437aae3f4da\n", ""
        return (
            0,
            f"containerd github.com/containerd/containerd/v2 v{v} 75cb2b7193e4\n",
            "",
        )

    def _cmd_nvidia_ctk(self, args, _):
        if not self.nvidia_ctk:
            raise _Fail("nvidia-ctk: command not found", 127)
        if args[0] == "--version":
            return 0, "NVIDIA Container Toolkit CLI version 1.18.0\ncommit: abc\n", ""
        if args[:2] != ["runtime", "configure"] or "--runtime=containerd" not in args:
            raise _Fail(f"nvidia-ctk {' '.join(args)}: not modelled")
        path = next(
            (a.split("=", 1)[1] for a in args if a.startswith("--config=")),
            render.CONTAINERD_CONFIG,
        )
        cfg = tomllib.loads(self.files.get(path, ""))
        version = int(cfg.get("version", 1))
        table = render.cri_runtime_table(version)
        section = render.dig(cfg, *table) or {}
        runc_opts = dict(render.dig(section, "runtimes", "runc", "options") or {})
        nvidia = {
            "runtime_type": "io.containerd.runc.v2",
            "options": {**runc_opts, "BinaryName": render.NVIDIA_RUNTIME_BINARY},
        }
        patch: dict[str, Any] = {}
        node = patch
        for key in table[:-1]:
            node = node.setdefault(key, {})
        node[table[-1]] = {"runtimes": {"nvidia": nvidia}}
        if "--set-as-default" in args:
            node[table[-1]]["default_runtime_name"] = "nvidia"
        if version >= 4:  # toolkit 1.18 writes a drop-in where the config imports conf.d
            dropin = f"{render.CONTAINERD_DROPIN_DIR}/99-nvidia.toml"
            self._mkdirs(render.CONTAINERD_DROPIN_DIR)
            self.files[dropin] = tomli_w.dumps({"version": version, **patch})
        else:
            self.files[path] = tomli_w.dumps(render.deep_merge(cfg, patch))
        self._changed()
        return 0, "", ""

    # -- kubeadm
    def _k8s_ready_for_kubelet(self) -> None:
        if not self.services.get("containerd", {}).get("active"):
            raise _Fail("[ERROR CRI]: container runtime is not running")
        facts = render.containerd_facts(self.files.get(render.CONTAINERD_CONFIG, ""))
        if not facts["cri_enabled"]:
            raise _Fail(
                "[ERROR CRI]: container runtime is not running: unknown service RuntimeService"
            )
        if self.swaps:
            raise _Fail("[ERROR Swap]: running with swap on is not supported, please disable swap")
        if self.sysctls.get("net.ipv4.ip_forward") != "1":
            raise _Fail(
                "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]: contents are not set to 1"
            )
        if "kubelet" not in self.packages:
            raise _Fail("[ERROR FileExisting-kubelet]: kubelet not found in system path")

    def _cmd_kubeadm(self, args, _):
        if "kubeadm" not in self.packages:
            raise _Fail("kubeadm: command not found", 127)
        verb = args[0]
        if verb == "version":
            return 0, versions.KUBERNETES_VERSION + "\n", ""
        if verb == "config" and args[1] == "validate":
            docs = list(yaml.safe_load_all(self.files[args[args.index("--config") + 1]]))
            for d in docs:
                if d["apiVersion"] not in (
                    "kubeadm.k8s.io/v1beta4",
                    "kubelet.config.k8s.io/v1beta1",
                ):
                    raise _Fail(f"unsupported apiVersion {d['apiVersion']}")
            return 0, "ok\n", ""
        if verb == "init":
            if self.exists("/etc/kubernetes/manifests/kube-apiserver.yaml"):
                raise _Fail(
                    "[ERROR FileAvailable--etc-kubernetes-manifests-kube-apiserver.yaml]: exists"
                )
            self._k8s_ready_for_kubelet()
            docs = {
                d["kind"]: d
                for d in yaml.safe_load_all(self.files[args[args.index("--config") + 1]])
            }
            self._changed()
            self.files[ADMIN_CONF] = f"apiVersion: v1\nkind: Config\n# admin of {self.name}\n"
            self.files["/etc/kubernetes/kubelet.conf"] = "apiVersion: v1\nkind: Config\n"
            self.files["/etc/kubernetes/manifests/kube-apiserver.yaml"] = "kind: Pod\n"
            self.files["/var/lib/etcd/member/snap/db"] = "etcd"
            self.files["/var/lib/kubelet/config.yaml"] = yaml.safe_dump(
                docs["KubeletConfiguration"]
            )
            self.services["kubelet"].update(active=True, enabled="enabled")
            self.cluster.api_up = True
            self._add_node(docs["ClusterConfiguration"]["kubernetesVersion"], control_plane=True)
            return 0, "Your Kubernetes control-plane has initialized successfully!\n", ""
        if verb == "token":
            if not self.cluster.api_up:
                raise _Fail("failed to load admin kubeconfig")
            self._changed()
            return (
                0,
                (
                    f"kubeadm join {self.cluster.endpoint} --token {self.cluster.token} "
                    "--discovery-token-ca-cert-hash sha256:" + "ab" * 32 + " \n"
                ),
                "",
            )
        if verb == "join":
            self._k8s_ready_for_kubelet()
            join = yaml.safe_load(self.files[args[args.index("--config") + 1]])
            bt = join["discovery"]["bootstrapToken"]
            if (
                bt["token"] != self.cluster.token
                or bt["apiServerEndpoint"] != self.cluster.endpoint
            ):
                raise _Fail("unable to fetch the kubeadm-config ConfigMap: token rejected")
            self._changed()
            self.files["/etc/kubernetes/kubelet.conf"] = "apiVersion: v1\nkind: Config\n"
            self.files["/var/lib/kubelet/config.yaml"] = yaml.safe_dump(
                {"kind": "KubeletConfiguration", "cgroupDriver": "systemd"}
            )
            self.services["kubelet"].update(active=True, enabled="enabled")
            self._add_node(versions.KUBERNETES_VERSION, control_plane=False)
            return 0, "This node has joined the cluster\n", ""
        if verb == "reset":
            self._changed()
            for p in (
                "/etc/kubernetes/manifests",
                ADMIN_CONF,
                "/etc/kubernetes/kubelet.conf",
                "/var/lib/etcd",
                "/var/lib/kubelet",
            ):
                self._rm(p)
            if "kubelet" in self.services:
                self.services["kubelet"]["active"] = False
            if self.cluster.objects.get(("Node", "", self.name), {}).get("_control_plane"):
                self.cluster.reset()
            else:
                self.cluster.objects.pop(("Node", "", self.name), None)
            return 0, "[reset] done\n", ""
        raise _Fail(f"kubeadm {verb}: not modelled")

    def _add_node(self, kubelet_version: str, *, control_plane: bool) -> None:
        flannel = ("DaemonSet", "kube-flannel", "kube-flannel-ds") in self.cluster.objects
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "_control_plane": control_plane,
            "metadata": {"name": self.name, "labels": {"kubernetes.io/arch": "arm64"}},
            "spec": {
                "taints": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]
                if control_plane
                else []
            },
            "status": {
                "conditions": [{"type": "Ready", "status": "True" if flannel else "False"}],
                "nodeInfo": {"kubeletVersion": kubelet_version},
                "allocatable": {"cpu": "20", "memory": "128Gi"},
            },
        }
        self.cluster.objects[("Node", "", self.name)] = node
        if flannel:
            self.links.add("cni0")
        self._gpu_operator_reconcile()

    # -- kubectl
    def _api(self) -> None:
        if ADMIN_CONF not in self.files or not self.cluster.api_up:
            raise _Fail("The connection to the server 192.0.2.10:6443 was refused")

    def _cmd_kubectl(self, args, stdin):
        args = list(args)
        if "kubectl" not in self.packages:
            raise _Fail("kubectl: command not found", 127)
        if args[:2] == ["--kubeconfig", ADMIN_CONF]:
            args = args[2:]
        self._api()
        ns = _opt(args, "--namespace", "-n")
        verb = args[0]
        if verb == "get":
            return self._kubectl_get(args[1:], ns)
        if verb in ("apply", "create"):
            src = args[args.index("-f") + 1]
            if src == "-":
                objs = [d for d in yaml.safe_load_all(stdin) if d]
            else:
                objs = self._manifest(src)
            for obj in objs:
                self._store(obj, create_only=(verb == "create"))
            return 0, "", ""
        if verb == "delete":
            pos = _positional(args[1:])
            kinds = [KINDS[k] for k in pos[0].split(",")]
            for kind in kinds:
                for name in pos[1:]:
                    key = (kind, "" if kind in CLUSTER_SCOPED else (ns or "default"), name)
                    if key in self.cluster.objects:
                        del self.cluster.objects[key]
                        self._changed()
                    elif "--ignore-not-found" not in args:
                        raise _Fail(
                            f'Error from server (NotFound): {kind.lower()} "{name}" not found'
                        )
            return 0, "", ""
        if verb == "taint":
            key = args[-1].rstrip("-")
            hit = False
            for obj in self._objects("Node"):
                taints = obj["spec"].get("taints") or []
                if any(t["key"] == key for t in taints):
                    obj["spec"]["taints"] = [t for t in taints if t["key"] != key]
                    hit = True
            if not hit:
                raise _Fail(f"error: taint {key!r} not found")
            self._changed()
            return 0, "node untainted\n", ""
        if verb == "rollout":
            if args[1] == "restart":
                self._changed()
                self._gpu_operator_reconcile()
            return 0, "successfully rolled out\n", ""
        if verb == "wait":
            return self._kubectl_wait(args[1:], ns or "default")
        if verb == "logs":
            pod = self.cluster.objects.get(("Pod", ns or "default", args[1]))
            if pod is None:
                raise _Fail(f'pods "{args[1]}" not found')
            if pod["status"].get("phase") != "Running":
                raise _Fail(f"container in pod {args[1]} is waiting to start")
            return 0, f"GPU 0: NVIDIA GB10 (UUID: {self.cluster.gpu_uuid})\n", ""
        raise _Fail(f"kubectl {verb}: not modelled")

    def _objects(self, kind: str, ns: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for (k, n, _), o in self.cluster.objects.items()
            if k == kind and (ns is None or n == ns)
        ]

    def _kubectl_get(self, args, ns):
        if args[:2] == ["--raw", "/readyz"]:
            return 0, "ok", ""
        pos = _positional(args)
        kinds = [KINDS[k] for k in pos[0].split(",")]
        label = _opt(args, "-l", "--selector")
        if len(pos) > 1:
            kind = kinds[0]
            key = (kind, "" if kind in CLUSTER_SCOPED else (ns or "default"), pos[1])
            obj = self.cluster.objects.get(key)
            if obj is None:
                raise _Fail(f'Error from server (NotFound): {pos[0]} "{pos[1]}" not found')
            return 0, json.dumps(_public(obj)), ""
        items = []
        for kind in kinds:
            for o in self._objects(kind, None if kind in CLUSTER_SCOPED else (ns or "default")):
                if label:
                    k, _, v = label.partition("=")
                    if o["metadata"].get("labels", {}).get(k) != v:
                        continue
                items.append(_public(o))
        return 0, json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), ""

    def _store(self, obj: dict[str, Any], *, create_only: bool = False, owner: str = "") -> None:
        obj = copy.deepcopy(obj)
        kind, name = obj["kind"], obj["metadata"]["name"]
        ns = "" if kind in CLUSTER_SCOPED else obj["metadata"].get("namespace", "default")
        if ns and ("Namespace", "", ns) not in self.cluster.objects:
            raise _Fail(f'Error from server (NotFound): namespaces "{ns}" not found')
        key = (kind, ns, name)
        old = self.cluster.objects.get(key)
        if old is not None and create_only:
            raise _Fail(
                f'Error from server (AlreadyExists): {kind.lower()}s "{name}" already exists'
            )
        if kind == "Secret" and "stringData" in obj:
            data = obj.setdefault("data", {})
            for k, v in obj.pop("stringData").items():
                data[k] = base64.b64encode(v.encode()).decode()
        if kind == "StorageClass" and old is not None:
            for f in ("provisioner", "parameters", "reclaimPolicy", "volumeBindingMode"):
                if old.get(f) != obj.get(f):
                    raise _Fail(
                        f'StorageClass "{name}" is invalid: {f}: Forbidden: updates are forbidden'
                    )
        if kind == "Pod":
            obj["status"] = (old or {}).get("status", {"phase": "Pending"})
        if kind == "PersistentVolumeClaim":
            obj["status"] = (old or {}).get("status", {"phase": "Pending"})
        if old is not None:
            if "status" in old and "status" not in obj:
                obj["status"] = old["status"]
            if _public(obj) == _public(old):
                return
        self.cluster.objects[key] = obj
        self._changed()
        if kind == "ConfigMap" and name == render.TIME_SLICING_CONFIGMAP and old is None:
            self._gpu_operator_reconcile()

    def _kubectl_wait(self, args, ns):
        cond = next(a for a in args if a.startswith("--for="))[len("--for=") :]
        targets = [a for a in _positional(args) if "/" in a]
        for t in targets:
            kind, name = t.split("/", 1)
            obj = self.cluster.objects.get((KINDS[kind], ns, name))
            if obj is None:
                raise _Fail(f'Error from server (NotFound): {kind} "{name}" not found')
        if cond == "condition=Ready":
            gpus_needed = 0
            for t in targets:
                pod = self.cluster.objects[("Pod", ns, t.split("/", 1)[1])]
                limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
                gpus_needed += int(limits.get("nvidia.com/gpu", 0))
            free = sum(
                int(n["status"]["allocatable"].get("nvidia.com/gpu", 0))
                for n in self._objects("Node")
            )
            if gpus_needed > free:
                raise _Fail(
                    "error: timed out waiting for the condition (Insufficient nvidia.com/gpu)"
                )
            for t in targets:
                self.cluster.objects[("Pod", ns, t.split("/", 1)[1])]["status"] = {
                    "phase": "Running"
                }
            return 0, "condition met\n", ""
        if cond.endswith("=Bound"):
            for t in targets:
                pvc = self.cluster.objects[("PersistentVolumeClaim", ns, t.split("/", 1)[1])]
                sc = self.cluster.objects.get(("StorageClass", "", pvc["spec"]["storageClassName"]))
                if sc is None:
                    raise _Fail("error: timed out waiting for the condition (no storage class)")
                volume = "pvc-" + hashlib.sha1(pvc["metadata"]["name"].encode()).hexdigest()[:12]
                pvc["status"] = {"phase": "Bound"}
                pvc["spec"]["volumeName"] = volume
                self.cluster.objects[("PersistentVolume", "", volume)] = {
                    "kind": "PersistentVolume",
                    "metadata": {"name": volume},
                    "spec": {"persistentVolumeReclaimPolicy": sc.get("reclaimPolicy")},
                }
            return 0, "condition met\n", ""
        raise _Fail(f"kubectl wait --for={cond}: not modelled")

    def _manifest(self, url: str) -> list[dict[str, Any]]:
        """What the pinned remote manifests contain, as far as the checks look."""
        if url == versions.FLANNEL_MANIFEST_URL:
            self.files["/etc/cni/net.d/10-flannel.conflist"] = '{"name": "cbr0"}'
            for node in self._objects("Node"):
                node["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            self.links.update({"cni0", "flannel.1"})
            return [
                render.namespace("kube-flannel"),
                _daemonset(
                    "kube-flannel",
                    "kube-flannel-ds",
                    f"ghcr.io/flannel-io/flannel:{versions.FLANNEL_VERSION}",
                ),
            ]
        if url == versions.KUBE_NETWORK_POLICIES_MANIFEST_URL:
            return [
                render.namespace("kube-system"),
                _daemonset(
                    "kube-system",
                    "kube-network-policies",
                    "registry.k8s.io/networking/kube-network-policies:"
                    + versions.KUBE_NETWORK_POLICIES_VERSION,
                ),
            ]
        if url == versions.LOCAL_PATH_PROVISIONER_URL:
            return [
                render.namespace("local-path-storage"),
                _deployment("local-path-storage", "local-path-provisioner"),
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": "local-path"},
                    "provisioner": "rancher.io/local-path",
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer",
                },
            ]
        raise _Fail(f"error: unable to read URL {url!r} (not modelled)")

    def _gpu_operator_reconcile(self) -> None:
        """What the GPU operator's device plugin and feature discovery do to the nodes."""
        if ("gpu-operator", render.GPU_OPERATOR_NAMESPACE) not in self.cluster.releases:
            return
        if self.gpu:  # its container toolkit writes the GPU's CDI spec
            self._mkdirs("/var/run/cdi")
            self.files["/var/run/cdi/nvidia.yaml"] = (
                'cdiVersion: "0.7.0"\nkind: nvidia.com/gpu\ndevices:\n  - name: "0"\n'
            )
        cm = self.cluster.objects.get(
            ("ConfigMap", render.GPU_OPERATOR_NAMESPACE, render.TIME_SLICING_CONFIGMAP)
        )
        replicas, shared = 1, False
        if cm is not None:
            conf = yaml.safe_load(cm["data"][render.TIME_SLICING_KEY])
            res = conf["sharing"]["timeSlicing"]["resources"][0]
            replicas = int(res["replicas"])
            shared = replicas > 1 and not conf["sharing"]["timeSlicing"].get("renameByDefault")
        for node in self._objects("Node"):
            node["metadata"]["labels"]["nvidia.com/gpu.product"] = "NVIDIA-GB10" + (
                "-SHARED" if shared else ""
            )
            node["metadata"]["labels"]["nvidia.com/gpu.replicas"] = str(replicas)
            node["status"]["allocatable"]["nvidia.com/gpu"] = str(replicas)

    # -- helm
    def _cmd_helm(self, args, _):
        args = list(args)
        if args[:2] == ["--kubeconfig", ADMIN_CONF]:
            args = args[2:]
        verb = args[0]
        if verb == "version":
            m = re.search(r"helm-(v[0-9.]+)-linux", self.files[HELM_BIN])
            return 0, m.group(1) if m else "unknown", ""
        if verb == "repo":
            if args[1] == "add":
                if self.repos.get(args[2]) != args[3]:
                    self.repos[args[2]] = args[3]
                    self._changed()
                return 0, f'"{args[2]}" has been added to your repositories\n', ""
            return 0, "", ""
        self._api()
        ns = _opt(args, "--namespace", "-n") or "default"
        if verb == "list":
            rels = [
                {
                    "name": n,
                    "namespace": s,
                    "revision": str(r["revision"]),
                    "status": r["status"],
                    "chart": r["chart"],
                    "app_version": r["version"],
                }
                for (n, s), r in self.cluster.releases.items()
                if s == ns
            ]
            return 0, json.dumps(rels), ""
        if verb == "get" and args[1] == "values":
            rel = self.cluster.releases.get((args[2], ns))
            if rel is None:
                raise _Fail("Error: release: not found")
            return 0, json.dumps(rel["values"] or None), ""
        if verb == "upgrade":
            release, chart = _positional(args[1:])[:2]
            version = _opt(args, "--version")
            if not chart.startswith("oci://") and chart.split("/")[0] not in self.repos:
                raise _Fail(f"Error: repo {chart.split('/')[0]} not found")
            values_file = _opt(args, "--values", "-f")
            values = yaml.safe_load(self.files[values_file]) if values_file else {}
            if ("Namespace", "", ns) not in self.cluster.objects:
                if "--create-namespace" not in args:
                    raise _Fail(f'Error: create: failed to create: namespaces "{ns}" not found')
                self._store(render.namespace(ns))
            chart_name = chart.rsplit("/", 1)[-1]
            self._chart_effects(chart_name, ns, values or {})
            old = self.cluster.releases.get((release, ns))
            self.cluster.releases[(release, ns)] = {
                "chart": f"{chart_name}-{version}",
                "version": version,
                "status": "deployed",
                "values": values or {},
                "revision": (old or {"revision": 0})["revision"] + 1,
            }
            self._changed()
            if chart_name == "gpu-operator":
                self._gpu_operator_reconcile()
            return 0, f'Release "{release}" has been upgraded. Happy Helming!\n', ""
        raise _Fail(f"helm {verb}: not modelled")

    def _chart_effects(self, chart: str, ns: str, values: dict[str, Any]) -> None:
        objs: list[dict[str, Any]] = []
        if chart == "gpu-operator":
            if render.dig(values, "driver", "enabled") is not False:
                raise _Fail("Error: driver pods crash: a driver is already installed on the host")
            objs += [
                _daemonset(
                    ns, "nvidia-device-plugin-daemonset", "nvcr.io/nvidia/k8s-device-plugin:v0.18.0"
                ),
                {
                    "apiVersion": "nvidia.com/v1",
                    "kind": "ClusterPolicy",
                    "metadata": {"name": "cluster-policy"},
                    "status": {"state": "ready"},
                },
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": "nvidia-operator-validator-x1",
                        "namespace": ns,
                        "labels": {"app": "nvidia-operator-validator"},
                    },
                    "spec": {"containers": [{"name": "nvidia-operator-validator"}]},
                },
            ]
        elif chart == "longhorn":
            p = values.get("persistence", {})
            objs.append(
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {"name": "longhorn"},
                    "provisioner": "driver.longhorn.io",
                    "allowVolumeExpansion": True,
                    "reclaimPolicy": p.get("reclaimPolicy", "Delete"),
                    "volumeBindingMode": "Immediate",
                    "parameters": {
                        "numberOfReplicas": str(p.get("defaultClassReplicaCount", 3)),
                        "staleReplicaTimeout": "30",
                        "fsType": "ext4",
                    },
                }
            )
            objs.append(_deployment(ns, "longhorn-driver-deployer"))
            path = render.dig(values, "defaultSettings", "defaultDataPath") or "/var/lib/longhorn"
            self.files[f"{path}/longhorn-disk.cfg"] = '{"diskName": "default"}'
        elif chart == "cert-manager":
            objs += [_deployment(ns, "cert-manager"), _deployment(ns, "cert-manager-webhook")]
        elif chart == "kserve-crd":
            pass
        elif chart == "kserve":
            if not any(
                r["chart"].startswith("kserve-crd-") for r in self.cluster.releases.values()
            ):
                raise _Fail(
                    'Error: no matches for kind "InferenceService" (install kserve-crd first)'
                )
            if ("Deployment", "cert-manager", "cert-manager-webhook") not in self.cluster.objects:
                raise _Fail(
                    'Error: no matches for kind "Certificate" in version "cert-manager.io/v1"'
                )
            mode = render.dig(values, "kserve", "controller", "deploymentMode") or "Serverless"
            objs += [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "inferenceservice-config", "namespace": ns},
                    "data": {"deploy": json.dumps({"defaultDeploymentMode": mode})},
                },
                _deployment(ns, "kserve-controller-manager"),
            ]
        for obj in objs:
            self._store(obj)
        for pod in self._objects("Pod", ns):
            pod["status"] = {"phase": "Running", "containerStatuses": [{"ready": True}]}

    # -- misc
    def _cmd_ip(self, args, _):
        if args[:2] == ["link", "delete"]:
            if args[2] not in self.links:
                raise _Fail(f'Cannot find device "{args[2]}"')
            self.links.discard(args[2])
            self._changed()
            return 0, "", ""
        raise _Fail(f"ip {' '.join(args)}: not modelled")

    def _cmd_bash(self, args, stdin):
        """`bash -s` fed manifests/scripts/ensure-secret.sh: modelled by its contract (create
        the Secret when absent, add only missing keys, random values), unless a test set
        `secret_script` to script it differently."""
        if self.secret_script is not None:
            self._changed()
            r = self.secret_script(self, stdin)
            return r.rc, r.stdout, r.stderr
        if (self._env or {}).get("KUBECONFIG") != ADMIN_CONF:
            raise _Fail("error: no configuration has been provided (KUBECONFIG unset)")
        if "kubectl" not in self.packages:
            raise _Fail("kubectl: command not found", 127)
        self._api()
        try:
            namespace, name, keys = render.secret_contract(stdin)
        except ValueError as exc:
            raise _Fail(f"bash -s: not the ensure-secret script ({exc})") from exc
        self._store(render.namespace(namespace))
        old = self.cluster.objects.get(("Secret", namespace, name))
        data = dict((old or {}).get("data", {}))
        missing = [k for k in keys if k not in data]
        if not missing:
            return 0, f"secret {namespace}/{name} present with every key: unchanged\n", ""
        for k in missing:
            data[k] = base64.b64encode(secrets.token_hex(24).encode()).decode()
        self._store(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace},
                "data": data,
            }
        )
        return 0, f"secret {namespace}/{name}: added keys {' '.join(missing)}\n", ""

    # -- seeding the deployed stack (for the testinfra checks run in CI)
    def seed_stack(self) -> None:
        """What `kubectl apply -k manifests/...` and the model downloads leave behind."""
        for ns in ("llm-serving", "graphrag"):
            self._store(render.namespace(ns))
        for name in ("ollama-large", "ollama-small", "vllm-rerank"):
            self._store(_deployment("llm-serving", name))
        for name in ("orchestrator", "rag-server", "code-preprocessor", "ingest-worker"):
            self._store(_deployment("graphrag", name))
        for name in ("postgresql", "neo4j", "redis", "nats"):
            obj = _deployment("graphrag", name)
            obj["kind"] = "StatefulSet"
            self._store(obj)
        self.endpoints.update(
            {
                "http://127.0.0.1:31800/health": '{"status": "ok"}',
                "http://127.0.0.1:31434/v1/models": '{"data": []}',
                "http://127.0.0.1:31435/v1/models": '{"data": []}',
            }
        )


class _Fail(Exception):
    def __init__(self, message: str, rc: int = 1) -> None:
        super().__init__(message)
        self.rc = rc


def _artifact(url: str) -> str:
    name = url.rsplit("/", 1)[-1]
    return f"artifact {name} from {url}"


def _opt(args: Sequence[str], *names: str) -> str | None:
    for i, a in enumerate(args):
        for n in names:
            if a == n and i + 1 < len(args):
                return args[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


TAKES_VALUE = {
    "--namespace",
    "-n",
    "-l",
    "--selector",
    "-o",
    "--output",
    "--version",
    "--values",
    "-f",
    "--timeout",
    "--kubeconfig",
}


def _positional(args: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in TAKES_VALUE:
            skip = True
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def _deployment(ns: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": 1},
        "status": {"readyReplicas": 1},
    }


def _daemonset(ns: str, name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"template": {"spec": {"containers": [{"name": name, "image": image}]}}},
        "status": {"desiredNumberScheduled": 1, "numberReady": 1},
    }
