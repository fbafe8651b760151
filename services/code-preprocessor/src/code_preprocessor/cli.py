"""``code-preprocessor``: serve the API."""

from __future__ import annotations

from collections.abc import Sequence

from sparkstack_common.service import serve_cli

from .settings import Settings


def main(argv: Sequence[str] | None = None) -> None:
    settings = Settings()
    serve_cli(
        "code-preprocessor",
        "code_preprocessor.app:create_app",
        default_port=settings.port,
        default_host=settings.host,
        argv=argv,
        access_log=False,  # its callers are our services; the orchestrator logs the door
        required={"CODE_PREPROCESSOR_API_KEY": settings.api_key},
    )
