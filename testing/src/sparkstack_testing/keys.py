"""API keys of this test (or benchmark) session and the header that carries one."""

from __future__ import annotations

import secrets

# Made up at import (never in the repository); a test that greps logs and responses for
# secrets looks for these.
ADMIN_KEY = "sk-ss-" + secrets.token_urlsafe(24)
RAG_KEY = secrets.token_urlsafe(24)
PREPROCESSOR_KEY = secrets.token_urlsafe(24)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
