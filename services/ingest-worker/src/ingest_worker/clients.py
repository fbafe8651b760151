"""The code-preprocessor as the worker calls it (rag-server: sparkstack_common.rag_client)."""

from __future__ import annotations

from typing import Any

from sparkstack_common.auth import auth_headers, redact_url
from sparkstack_common.http import HTTP, HTTPError
from sparkstack_common.retry import Unavailable


class Preprocessor:
    def __init__(self, client: HTTP, base_url: str, api_key: str | None) -> None:
        self.client = client
        self.url = f"{base_url.rstrip('/')}/ingest"
        self.shown = redact_url(self.url)
        self.headers = auth_headers(api_key)

    async def ingest(self, workspace: str, files: list[tuple[str, bytes]]) -> dict[str, Any]:
        """Per-file results of POST /ingest (chunks sent to rag-server with stable ids).
        Raises Unavailable for an outage (its own, or rag-server's behind it: 502)."""
        multipart = [("files", (path, data)) for path, data in files]
        try:
            r = await self.client.post(
                self.url, files=multipart, headers={**self.headers, "X-Workspace": workspace}
            )
        except HTTPError as exc:
            raise Unavailable(f"code-preprocessor at {self.shown}: {type(exc).__name__}") from exc
        if r.status_code >= 500:
            raise Unavailable(f"code-preprocessor answered {r.status_code}: {r.text[:300]}")
        if r.status_code >= 400:
            raise RuntimeError(
                f"code-preprocessor refused the batch ({r.status_code}): {r.text[:300]}"
            )
        return r.json()
