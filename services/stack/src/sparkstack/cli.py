"""``sparkstack``: the local stack's command line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from platformdirs import user_data_dir

from .infra import EmbeddedInfra, InfraError


def default_data_dir() -> Path:
    return Path(user_data_dir("sparkstack", appauthor=False))


def cmd_infra(args: argparse.Namespace) -> int:
    """Run the embedded PostgreSQL + pgvector, Valkey and NATS JetStream in the foreground."""
    infra = EmbeddedInfra(
        args.data_dir / "infra",
        postgres_port=args.postgres_port,
        valkey_port=args.valkey_port,
        nats_port=args.nats_port,
    )
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
        print(f"data in   {args.data_dir}  (Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        infra.stop()
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    print(
        "sparkstack up: not available yet; the full local stack lands with the local-stack "
        "issue. `uv run sparkstack infra` starts the embedded PostgreSQL, Valkey and NATS now.",
        file=sys.stderr,
    )
    return 2


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sparkstack", description="the sparkstack local stack")
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="where all data lives"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="the whole stack on this machine")
    up.set_defaults(func=cmd_up)
    infra = sub.add_parser("infra", help="only the embedded PostgreSQL, Valkey and NATS")
    infra.add_argument("--postgres-port", type=int, default=5432)
    infra.add_argument("--valkey-port", type=int, default=6379)
    infra.add_argument("--nats-port", type=int, default=4222)
    infra.set_defaults(func=cmd_infra)
    args = parser.parse_args(argv)
    raise SystemExit(args.func(args))
