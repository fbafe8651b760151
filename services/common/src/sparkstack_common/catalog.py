"""The model catalog (``catalog.toml``): names, tags, roles and sizes of every model."""

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
    pvc_size: str
    memory_limit: str
    service: str  # Kubernetes service name of its backend
    tools: bool = False
    tools_tag: str | None = None  # a tools-enabled variant, where the base template has none
    embedding: bool = False
    rerank: bool = False
    dimensions: int | None = None

    @property
    def chat(self) -> bool:
        return not (self.embedding or self.rerank)


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...]
    _by_name: dict[str, Model] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for m in self.models:
            for key in (m.name, m.tag, *m.aliases, *([m.tools_tag] if m.tools_tag else [])):
                other = self._by_name.setdefault(key.lower(), m)
                if other is not m:
                    raise ValueError(f"catalog: {key!r} names both {other.role} and {m.role}")

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
        return cls(tuple(models))

    def find(self, name: str) -> Model | None:
        """The model a request's ``model`` names (name, tag or alias; case-insensitive)."""
        return self._by_name.get(name.strip().lower())

    def role(self, role: str) -> Model:
        for m in self.models:
            if m.role == role:
                return m
        raise KeyError(role)
