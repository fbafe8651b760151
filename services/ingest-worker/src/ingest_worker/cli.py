"""``ingest-worker``: run the consumer."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from . import logs
from .service import run
from .settings import Settings


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ingest-worker", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logs.configure(args.log_level.upper())
    run(Settings())
