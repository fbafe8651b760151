"""What the CLI needs to talk to the orchestrator's API."""

from __future__ import annotations

import httpx


def error_message(r: httpx.Response) -> str:
    """The message of an OpenAI-shaped error answer (or the start of whatever came back)."""
    try:
        body = r.json()
    except ValueError:
        return r.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("message") if isinstance(error, dict) else str(body)[:300]
