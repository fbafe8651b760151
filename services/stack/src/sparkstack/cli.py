"""``sparkstack``: the whole stack on one machine with embedded infrastructure."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sparkstack_common.auth import redact_url

from . import config as cfg
from .browse import browse, show_logs
from .infra import InfraError
from .ingest import ingest
from .keys import manage_keys
from .secrets import admin_key, load_existing, load_or_create, secrets_dir
from .stack import (
    ORDER,
    choose_embedding,
    components,
    infrastructure,
    read_state,
    running_pid,
    write_state,
)
from .supervisor import StartError, Supervisor, probe


def cmd_up(args: argparse.Namespace) -> int:
    config = cfg.load(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    if (pid := running_pid(config)) is not None:
        print(
            f"sparkstack: already running (pid {pid}); `sparkstack down` stops it", file=sys.stderr
        )
        return 1
    if args.detach:
        return detach(config, args)
    started = time.monotonic()
    keys = load_or_create(config.data_dir)
    infra = infrastructure(config, keys)
    embedding = choose_embedding(config)
    if embedding.embedded and config.embedder == "auto":
        print(f"sparkstack: embeddings from the {embedding.describe()}", flush=True)
    supervisor = Supervisor(components(config, infra, keys, embedding))
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        stop.set()
        supervisor.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    config.pid_file.write_text(str(os.getpid()))
    cfg.remember_running(config.data_dir)
    write_state(config, "starting", embedding=embedding)
    try:
        infra.start()
        write_state(config, "starting", infra, embedding)
        supervisor.start_all()
        write_state(config, "ready", infra, embedding)
        banner(config, time.monotonic() - started)
        supervisor.watch()
        return 0
    except (InfraError, StartError) as exc:
        if not stop.is_set():
            print(f"sparkstack: {exc}", file=sys.stderr)
            return 1
        return 0
    finally:
        print("sparkstack: stopping...", flush=True)
        supervisor.stop_all()
        infra.stop()
        for server in infra.servers:
            supervisor.say(server.name, "stopped")
        config.pid_file.unlink(missing_ok=True)
        cfg.forget_running(config.data_dir)
        write_state(config, "stopped")
        print("sparkstack: stopped", flush=True)


def banner(config: cfg.StackConfig, seconds: float) -> None:
    api = config.url("orchestrator")
    key_file = secrets_dir(config.data_dir) / "admin.key"
    print(
        f"\nsparkstack is up in {seconds:.1f}s; data in {config.data_dir}\n"
        f"  OpenAI-compatible API : {api}/v1   (models: qwen3-coder, deepseek-r1, ...)\n"
        f"  web console           : {api}/ui/   (log in with the key below)\n"
        f"  API key (admin)       : export SPARKSTACK_API_KEY=$(uv run sparkstack keys admin)"
        f"   (kept in {key_file}, mode 0600)\n"
        f"  openai client         : OpenAI(base_url='{api}/v1', "
        f"api_key=os.environ['SPARKSTACK_API_KEY'])\n"
        f"  OpenCode              : provider npm '@ai-sdk/openai-compatible', "
        f"options.baseURL '{api}/v1', options.apiKey '{{env:SPARKSTACK_API_KEY}}'\n"
        f"  code-graph tools (MCP): {api}/mcp   (OpenCode: mcp.sparkstack = {{type 'remote', "
        f"url '{api}/mcp', headers.Authorization 'Bearer {{env:SPARKSTACK_API_KEY}}', "
        f"oauth false}})\n"
        f"  a key for one workspace: uv run sparkstack keys create --name NAME --workspace WS\n"
        f"  ingest a codebase     : uv run sparkstack ingest PATH --workspace NAME\n"
        f"  backends              : "
        + ", ".join(f"{r}={u}" for r, u in config.backends.items())
        + f"\n  embeddings            : {embedding_line(config)}"
        + "\n  Ctrl-C stops everything; data stays.\n",
        flush=True,
    )


def embedding_line(config: cfg.StackConfig) -> str:
    """Which embedder the running stack uses (rag-server's and the orchestrator's)."""
    found = (read_state(config) or {}).get("embedding") or {}
    return found.get("describe") or config.backends["embed"]


def detach(config: cfg.StackConfig, args: argparse.Namespace) -> int:
    """Run ``up`` in the background; return once it is ready (or failed)."""
    config.log_dir.mkdir(parents=True, exist_ok=True)
    log = config.log_dir / "stack.log"
    argv = [sys.executable, "-m", "sparkstack", "--data-dir", str(config.data_dir)]
    if args.config:
        argv += ["--config", str(args.config)]
    argv.append("up")
    for flag in (
        "backend",
        "coding_url",
        "reasoning_url",
        "extract_url",
        "embed_url",
        "rerank_url",
        "embedder",
        "port",
    ):
        if (value := getattr(args, flag, None)) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    config.state_file.unlink(missing_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    started = time.monotonic()
    deadline = started + 180
    while time.monotonic() < deadline:
        state = read_state(config) or {}
        if state.get("status") == "ready":
            banner(config, time.monotonic() - started)
            print(
                f"running in the background (pid {proc.pid}); logs in {log}; "
                "`sparkstack down` stops it"
            )
            return 0
        if proc.poll() is not None:
            print(f"sparkstack: failed to start; the end of {log}:", file=sys.stderr)
            print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"sparkstack: not ready after 180s; see {log}", file=sys.stderr)
    return 1


def cmd_down(args: argparse.Namespace) -> int:
    config = cfg.load(args)
    pid = running_pid(config)
    if pid is None:
        print("sparkstack: not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if running_pid(config) is None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print(f"sparkstack: stopped (pid {pid})")
                return 0
        time.sleep(0.2)
    print(f"sparkstack: pid {pid} did not stop in 90s; killing it", file=sys.stderr)
    os.kill(pid, signal.SIGKILL)
    return 1


def cmd_status(args: argparse.Namespace) -> int:
    config = cfg.load(args)
    state = read_state(config) or {}
    pid = running_pid(config)
    print(
        f"stack: {'running, pid ' + str(pid) if pid else 'not running'}"
        f" ({state.get('status', 'unknown')}); data in {config.data_dir}"
    )
    urls = state.get("urls") or {name: config.url(name) for name in ORDER}
    probe_keys = _probe_keys(config)
    healthy = True
    for name in urls:
        s = probe(urls[name], probe_keys.get(name))
        if s["ready"] and s.get("backends_down"):
            text = "ready (backend down: " + ", ".join(s["backends_down"]) + ")"
        elif s["ready"]:
            text = "ready"
        elif s.get("up") and s.get("only_backends"):
            text = "up (backend down: " + ", ".join(s["backends_down"]) + ")"
        elif s.get("up"):
            text = "up, not ready: " + ", ".join(
                f"{k} ({v})" for k, v in s.get("failed", {}).items()
            )
        else:
            text = f"down ({s.get('detail')})"
            healthy = False
        print(f"  {name:<18} {urls[name]:<24} {text}")
    infrastructure = state.get("infrastructure") or {}
    if infrastructure:
        print("infrastructure:")
        for name, url in infrastructure.items():
            print(f"  {name:<18} {redact_url(str(url)):<44} {_tcp_state(str(url))}")
    backends = state.get("backends") or {**config.backends, "rerank": config.rerank_url}
    print("backends:")
    for role, url in backends.items():
        if not url:
            continue
        probe_url = (
            f"{url.rstrip('/')}/models" if role != "rerank" else f"{url.rstrip('/')}/v1/models"
        )
        try:
            code = httpx.get(probe_url, timeout=3).status_code
            reach = "reachable" if code < 500 else f"answered {code}"
        except httpx.HTTPError as exc:
            reach = f"unreachable ({type(exc).__name__})"
        print(f"  {role:<10} {url:<36} {reach}")
    if embedding := (state.get("embedding") or {}).get("describe"):
        print(f"embeddings (rag-server and the orchestrator): {embedding}")
    return 0 if healthy else 1


def _tcp_state(url: str) -> str:
    where = urlsplit(url)
    try:
        with socket.create_connection((where.hostname or "127.0.0.1", where.port or 0), 2):
            return "listening"
    except OSError as exc:
        return f"down ({type(exc).__name__})"


def _probe_keys(config: cfg.StackConfig) -> dict[str, str]:
    """Each component's own key, so status shows why a check fails (when this user can read
    the keys; otherwise the probes say only what is ok)."""
    try:
        keys = load_existing(config.data_dir)
    except OSError:
        return {}
    if keys is None:
        return {}
    return {
        "rag-server": keys.rag_server_key,
        "code-preprocessor": keys.preprocessor_key,
        "orchestrator": keys.admin_key,
        "embedder": keys.embedder_key,
    }


def _api(config: cfg.StackConfig) -> str:
    state = read_state(config) or {}
    return (state.get("urls") or {}).get("orchestrator") or config.url("orchestrator")


def _client_key(config: cfg.StackConfig) -> str | None:
    """SPARKSTACK_API_KEY when set (a scoped key, or another stack's), else the local admin
    key from the data dir."""
    return os.environ.get("SPARKSTACK_API_KEY") or admin_key(config.data_dir)


def _no_key() -> int:
    print(
        "sparkstack: no API key: set SPARKSTACK_API_KEY, or run `sparkstack up` once (it creates "
        "the local admin key)",
        file=sys.stderr,
    )
    return 1


def cmd_ingest(args: argparse.Namespace) -> int:
    config = cfg.load(args)
    return ingest(
        _api(config),
        Path(args.path),
        args.workspace,
        args.name,
        api_key=_client_key(config),
        wait=not args.no_wait,
    )


def cmd_keys(args: argparse.Namespace) -> int:
    config = cfg.load(args)
    if args.keys_command == "admin":
        key = admin_key(config.data_dir)
        if key is None:
            print(
                f"sparkstack: no admin key in {config.data_dir} yet (`sparkstack up` creates it)",
                file=sys.stderr,
            )
            return 1
        print(key)
        return 0
    key = _client_key(config)
    if key is None:
        return _no_key()
    return manage_keys(_api(config), key, args)


def cmd_infra(args: argparse.Namespace) -> int:
    """Only the embedded PostgreSQL + pgvector, Valkey and NATS JetStream, in the foreground."""
    config = cfg.load(args)
    infra = infrastructure(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        infra.start()
    except InfraError as exc:
        print(f"sparkstack: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"postgres  {infra.postgres_dsn}")
        print(f"valkey    {infra.redis_url}")
        print(f"nats      {infra.nats_url}")
        print(f"data in   {config.data_dir}  (Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        infra.stop()
    return 0


DESCRIPTION = (
    "The sparkstack AI stack on one machine, with embedded PostgreSQL, Valkey and NATS: start "
    "it (up), look at it (status, jobs, sessions, workspaces, logs), feed it (ingest), and "
    "manage its keys."
)


def add_browse_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """``jobs``, ``sessions`` and ``workspaces``, each with list (the default), show and their
    own actions, and ``--json`` for scripts."""

    def action(parent: argparse.ArgumentParser, name: str, help: str) -> argparse.ArgumentParser:
        p = parent._browse.add_parser(name, help=help, parents=[common])  # type: ignore[attr-defined]
        p.add_argument("--json", action="store_true", help="the API's JSON, for scripts")
        return p

    for command, help in (
        ("jobs", "ingestion jobs: list, show ID, retry ID"),
        ("sessions", "chat sessions: list, show ID, delete ID"),
        ("workspaces", "workspaces: list, show NAME, reindex NAME, delete NAME --yes"),
    ):
        parent = sub.add_parser(command, help=help)
        parent.add_argument("--json", action="store_true", help="the API's JSON, for scripts")
        parent.set_defaults(func=cmd_browse, action="list", limit=50, workspace=None, status=None)
        parent._browse = parent.add_subparsers(dest="action")  # type: ignore[attr-defined]
        listing = action(parent, "list", "newest first")
        if command != "workspaces":
            listing.add_argument("--workspace")
            listing.add_argument("--limit", type=int, default=50)
        if command == "jobs":
            listing.add_argument("--status")
            action(parent, "show", "one job, with its failed documents").add_argument("id")
            action(parent, "retry", "run the failed part again").add_argument("id")
        elif command == "sessions":
            action(parent, "show", "the transcript, with the memory each answer got").add_argument(
                "id"
            )
            action(parent, "delete", "forget the session").add_argument("id")
        else:
            action(parent, "show", "documents, entities, relations").add_argument("name")
            action(
                parent, "reindex", "rebuild its vectors with today's embedding model"
            ).add_argument("name")
            delete = action(parent, "delete", "its knowledge, jobs, uploads, sessions")
            delete.add_argument("name")
            delete.add_argument("--yes", action="store_true", help="yes, for good")


def cmd_browse(args: argparse.Namespace) -> int:
    args.action = args.action or "list"  # `sparkstack jobs` alone lists
    config = cfg.load(args)
    key = _client_key(config)
    if key is None:
        return _no_key()
    return browse(_api(config), key, args)


def cmd_logs(args: argparse.Namespace) -> int:
    config = cfg.load(args)
    try:
        return show_logs(config.log_dir, args.component, args.follow)
    except KeyboardInterrupt:
        return 0


def add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="where all data lives (default: the running stack's, else the user data dir)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=default,
        help="TOML config (default: <data dir>/config.toml)",
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sparkstack", description=DESCRIPTION)
    add_global_options(parser, argparse.SUPPRESS)
    parser.set_defaults(data_dir=None, config=None)
    # the same options after the subcommand (`sparkstack up --data-dir D`); SUPPRESS keeps a
    # subcommand that was not given them from resetting what came before it
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    real_add_parser = sub.add_parser

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return real_add_parser(name, parents=[common], **kwargs)

    sub.add_parser = add_parser  # type: ignore[method-assign]

    up = sub.add_parser("up", help="start the whole stack (Ctrl-C stops it)")
    up.add_argument("--detach", action="store_true", help="run in the background")
    up.add_argument("--backend", help="one OpenAI base URL for every model role")
    for role in cfg.ROLES:
        up.add_argument(f"--{role}-url", help=f"OpenAI base URL of the {role} model")
    up.add_argument("--rerank-url", help="base URL of a reranker serving /v1/rerank (vLLM)")
    up.add_argument(
        "--embedder",
        choices=cfg.EMBEDDER_MODES,
        help="embeddings from the embed backend when it answers, else the embedded model "
        "(auto, the default), always the embedded model, or always the backend",
    )
    up.add_argument("--port", type=int, help="the orchestrator's port (default 8100)")
    up.set_defaults(func=cmd_up)

    sub.add_parser("down", help="stop a stack started with --detach").set_defaults(func=cmd_down)
    sub.add_parser("status", help="components and backends").set_defaults(func=cmd_status)

    ing = sub.add_parser("ingest", help="index a directory, archive or document")
    ing.add_argument("path")
    ing.add_argument("--workspace", help="workspace (default: default)")
    ing.add_argument("--name", help="codebase name (default: the directory's name)")
    ing.add_argument(
        "--no-wait",
        action="store_true",
        help="return once uploaded (default: wait until the content is searchable)",
    )
    ing.set_defaults(func=cmd_ingest)

    sub.add_parser("infra", help="only the embedded PostgreSQL, Valkey and NATS").set_defaults(
        func=cmd_infra
    )

    keys = sub.add_parser("keys", help="API keys scoped to workspaces (needs an admin key)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser(
        "create", help="a new key; printed once, as the last line of the output"
    )
    create.add_argument("--name", required=True, help="unique among active keys")
    create.add_argument(
        "--workspace",
        action="append",
        default=[],
        dest="workspaces",
        help="a workspace the key may use (repeat for several)",
    )
    create.add_argument("--admin", action="store_true", help="every workspace, and keys")
    keys_sub.add_parser("list", help="active keys (--all: revoked ones too)").add_argument(
        "--all", action="store_true", help="include revoked keys"
    )
    keys_sub.add_parser("revoke", help="revoke a key by name (within a second)").add_argument(
        "name"
    )
    keys_sub.add_parser("admin", help="print the local stack's admin key")
    keys.set_defaults(func=cmd_keys)

    add_browse_commands(sub, common)
    logs = sub.add_parser("logs", help="the stack's log (of a `--detach`ed up), or a component's")
    logs.add_argument("component", nargs="?", help="e.g. orchestrator, rag-server, postgres")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=cmd_logs)
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader left (`sparkstack status | head -1`): nothing more to say, and Python's
        # own flush at exit must not fail on the closed pipe either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except KeyboardInterrupt:
        print(file=sys.stderr)
        code = 130
    raise SystemExit(code)
