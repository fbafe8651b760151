"""Where the local stack runs and what it talks to: flags, then environment, then a config
file, then defaults."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from platformdirs import user_data_dir, user_state_dir
from sparkstack_common import ports

ROLES = ("coding", "reasoning", "extract", "embed")
DEFAULT_BACKEND = "http://localhost:11434/v1"  # Ollama's OpenAI API


def default_data_dir() -> Path:
    return Path(
        os.environ.get("SPARKSTACK_DATA_DIR") or user_data_dir("sparkstack", appauthor=False)
    )


def running_stack_pointer() -> Path:
    """Where `up` notes the data dir of the stack it runs, so `status`, `down`, `ingest`... find
    it without `--data-dir` (one running stack per user is the common case)."""
    return Path(user_state_dir("sparkstack", appauthor=False)) / "running"


def remember_running(data_dir: Path) -> None:
    pointer = running_stack_pointer()
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.write_text(str(data_dir.resolve()))


def forget_running(data_dir: Path) -> None:
    pointer = running_stack_pointer()
    try:
        if Path(pointer.read_text().strip()) == data_dir.resolve():
            pointer.unlink()
    except OSError:
        pass


def _running_elsewhere() -> Path | None:
    """The data dir `up` noted, while a stack still runs there."""
    try:
        noted = Path(running_stack_pointer().read_text().strip())
        pid = int((noted / "stack.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return noted


@dataclass
class Ports:
    orchestrator: int = ports.ORCHESTRATOR
    rag_server: int = ports.RAG_SERVER
    code_preprocessor: int = ports.CODE_PREPROCESSOR
    ingest_worker: int = ports.INGEST_WORKER_METRICS
    embedder: int = ports.EMBEDDER
    postgres: int = 54320
    valkey: int = 63790
    nats: int = 42220


@dataclass
class StackConfig:
    data_dir: Path = field(default_factory=default_data_dir)
    ports: Ports = field(default_factory=Ports)
    backends: dict[str, str] = field(default_factory=lambda: dict.fromkeys(ROLES, DEFAULT_BACKEND))
    # embeddings: "auto" (the embed backend when it answers, else the embedded model),
    # "embedded" or "backend"
    embedder: str = "auto"
    rerank_url: str | None = None  # serves /v1/rerank (vLLM); optional
    host: str = "127.0.0.1"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "stack.json"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "stack.pid"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    def url(self, component: str) -> str:
        port = getattr(self.ports, component.replace("-", "_"))
        return f"http://{self.host}:{port}"


def load(args: Any) -> StackConfig:
    """Flags win over ``SPARKSTACK_*`` variables, which win over the config file
    (``--config``, else ``<data dir>/config.toml``), which wins over defaults."""
    given = getattr(args, "data_dir", None) or os.environ.get("SPARKSTACK_DATA_DIR")
    if given:
        data_dir = Path(given).expanduser()
    elif getattr(args, "command", None) != "up" and (noted := _running_elsewhere()):
        data_dir = noted  # the stack that runs, wherever `up` was told to keep its data
    else:
        data_dir = default_data_dir()
    config = StackConfig(data_dir=data_dir)
    path = getattr(args, "config", None) or (data_dir / "config.toml")
    if Path(path).is_file():
        _apply_file(config, tomllib.loads(Path(path).read_text()))
    _apply_env(config)
    _apply_flags(config, args)
    return config


def _apply_file(config: StackConfig, data: dict[str, Any]) -> None:
    backends = data.get("backends", {})
    if "url" in backends:
        config.backends = dict.fromkeys(ROLES, backends["url"])
    for role in ROLES:
        if role in backends:
            config.backends[role] = backends[role]
    config.rerank_url = backends.get("rerank", config.rerank_url)
    config.embedder = embedder_mode(backends.get("embedder", config.embedder))
    for name, value in data.get("ports", {}).items():
        if hasattr(config.ports, name.replace("-", "_")):
            setattr(config.ports, name.replace("-", "_"), int(value))


def _apply_env(config: StackConfig) -> None:
    if url := os.environ.get("SPARKSTACK_BACKEND_URL"):
        config.backends = dict.fromkeys(ROLES, url)
    for role in ROLES:
        if url := os.environ.get(f"SPARKSTACK_{role.upper()}_URL"):
            config.backends[role] = url
    config.rerank_url = os.environ.get("SPARKSTACK_RERANK_URL", config.rerank_url)
    config.embedder = embedder_mode(os.environ.get("SPARKSTACK_EMBEDDER", config.embedder))
    for name in vars(config.ports):
        if value := os.environ.get(f"SPARKSTACK_{name.upper()}_PORT"):
            setattr(config.ports, name, int(value))


def _apply_flags(config: StackConfig, args: Any) -> None:
    if url := getattr(args, "backend", None):
        config.backends = dict.fromkeys(ROLES, url)
    for role in ROLES:
        if url := getattr(args, f"{role}_url", None):
            config.backends[role] = url
    if url := getattr(args, "rerank_url", None):
        config.rerank_url = url
    if mode := getattr(args, "embedder", None):
        config.embedder = embedder_mode(mode)
    if port := getattr(args, "port", None):
        config.ports.orchestrator = port


EMBEDDER_MODES = ("auto", "embedded", "backend")


def embedder_mode(value: str) -> str:
    if value not in EMBEDDER_MODES:
        raise SystemExit(
            f"sparkstack: embedder {value!r}: choose one of {', '.join(EMBEDDER_MODES)}"
        )
    return value
