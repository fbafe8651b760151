"""The model catalog (``catalog.toml``): names, tags, roles and sizes of every model, the
servers that hold them, and the Spark's memory around them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Model:
    role: str  # coding, reasoning, extract, embed, reranker
    name: str
    tag: str  # what the backend serves it as
    source: str  # ollama or huggingface
    aliases: tuple[str, ...]
    context_length: int
    service: str  # the Kubernetes Service clients use for this model
    server: str  # the model server (pod) that holds it: a key of [servers]
    tools: bool = False
    tools_tag: str | None = None  # a tools-enabled variant, where the base template has none
    embedding: bool = False
    rerank: bool = False
    dimensions: int | None = None
    # memory facts of Ollama models (see catalog.toml)
    weights_gb: float | None = None
    attention_layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None

    @property
    def chat(self) -> bool:
        return not (self.embedding or self.rerank)


@dataclass(frozen=True)
class Server:
    """One model server: a pod with one GPU time-slice holding one or more models."""

    name: str
    source: str  # ollama or huggingface (vLLM)
    pvc_size: str
    memory_request: str
    memory_limit: str
    cpu_request: str
    cpu_limit: str
    max_loaded_models: int = 1
    num_parallel: int = 1
    kv_cache_type: str = "f16"
    keep_alive: str = "5m"
    overhead_gib: float = 1.0
    gpu_memory_utilization: float | None = None


@dataclass(frozen=True)
class Spark:
    """The machine's memory and what is kept out of the pods' reach."""

    unified_memory_gib: float
    system_reserved_gib: float
    kube_reserved_gib: float
    eviction_hard_gib: float
    cluster_addons_gib: float
    margin: float


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...]
    servers: tuple[Server, ...] = ()
    spark: Spark | None = None
    platform: tuple[tuple[str, str], ...] = ()  # (workload, memory limit)
    _by_name: dict[str, Model] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for m in self.models:
            for key in (m.name, m.tag, *m.aliases, *([m.tools_tag] if m.tools_tag else [])):
                other = self._by_name.setdefault(key.lower(), m)
                if other is not m:
                    raise ValueError(f"catalog: {key!r} names both {other.role} and {m.role}")
        names = {srv.name for srv in self.servers}
        for m in self.models:
            if self.servers and m.server not in names:
                raise ValueError(f"catalog: {m.role}'s server {m.server!r} is not in [servers]")
        for srv in self.servers:
            held = self.served_by(srv.name)
            if not held:
                raise ValueError(f"catalog: server {srv.name} holds no model")
            if any(m.source != srv.source for m in held):
                raise ValueError(f"catalog: server {srv.name} holds a model of another source")

    @classmethod
    def load(cls, text: str | None = None) -> Catalog:
        if text is None:
            text = resources.files(__package__).joinpath("catalog.toml").read_text()
        data: dict[str, Any] = tomllib.loads(text)
        models = []
        for role, entry in data["models"].items():
            entry = dict(entry)
            entry["aliases"] = tuple(entry.get("aliases", ()))
            models.append(Model(role=role, **entry))
        servers = tuple(Server(name=n, **e) for n, e in data.get("servers", {}).items())
        spark = Spark(**data["spark"]) if "spark" in data else None
        platform = tuple((k, str(v)) for k, v in data.get("platform", {}).items())
        return cls(tuple(models), servers, spark, platform)

    def find(self, name: str) -> Model | None:
        """The model a request's ``model`` names (name, tag or alias; case-insensitive)."""
        return self._by_name.get(name.strip().lower())

    def role(self, role: str) -> Model:
        for m in self.models:
            if m.role == role:
                return m
        raise KeyError(role)

    def server(self, name: str) -> Server:
        for srv in self.servers:
            if srv.name == name:
                return srv
        raise KeyError(name)

    def served_by(self, server: str) -> tuple[Model, ...]:
        return tuple(m for m in self.models if m.server == server)
