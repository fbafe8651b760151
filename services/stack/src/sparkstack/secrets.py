"""The local stack's keys: generated on the first ``sparkstack up``, kept in the data dir.

``<data dir>/secrets/`` (mode 0700) holds one file per key (mode 0600): the orchestrator's
bootstrap admin key, which the CLI uses and the user passes to clients, the keys the
orchestrator and the ingest-worker present to rag-server and code-preprocessor, the embedded
embedding model's key, and the credentials of the embedded Valkey and NATS. (The embedded
PostgreSQL listens on loopback with trust authentication.) Nothing else reads them, nothing
prints them but ``sparkstack keys admin``.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

_FILES = {
    "admin_key": "admin.key",
    "rag_server_key": "rag-server.key",
    "preprocessor_key": "code-preprocessor.key",
    "valkey_password": "valkey.password",
    "nats_token": "nats.token",
    "embedder_key": "embedder.key",
}


@dataclass(frozen=True)
class StackSecrets:
    admin_key: str
    rag_server_key: str
    preprocessor_key: str
    valkey_password: str
    nats_token: str
    embedder_key: str

    def values(self) -> list[str]:
        return [getattr(self, field) for field in _FILES]


def secrets_dir(data_dir: Path) -> Path:
    return data_dir / "secrets"


def _read(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def _write_new(path: Path, value: str) -> str:
    """Create ``path`` with ``value`` unless another process was first; returns what is there."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = _read(path)
        if existing is None:
            raise RuntimeError(f"{path} exists but is empty: delete it to regenerate") from None
        return existing
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def load_or_create(data_dir: Path) -> StackSecrets:
    directory = secrets_dir(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    values: dict[str, str] = {}
    for field, name in _FILES.items():
        path = directory / name
        value = _read(path)
        if value is None:
            prefix = "sk-ss-" if field == "admin_key" else ""
            value = _write_new(path, prefix + secrets.token_urlsafe(32))
        os.chmod(path, 0o600)
        values[field] = value
    return StackSecrets(**values)


def admin_key(data_dir: Path) -> str | None:
    """The local admin key, when this data dir has one (and this user may read it)."""
    try:
        return _read(secrets_dir(data_dir) / _FILES["admin_key"])
    except PermissionError:
        return None


def load_existing(data_dir: Path) -> StackSecrets | None:
    """The keys when ``sparkstack up`` has made them; never creates any."""
    directory = secrets_dir(data_dir)
    values = {field: _read(directory / name) for field, name in _FILES.items()}
    if any(v is None for v in values.values()):
        return None
    return StackSecrets(**values)  # type: ignore[arg-type]
