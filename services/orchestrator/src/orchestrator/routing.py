"""Which backend serves a request: the model catalog's names and aliases to a backend URL."""

from __future__ import annotations

from dataclasses import dataclass

from sparkstack_common.catalog import Catalog, Model

from .errors import APIError
from .settings import Settings


@dataclass(frozen=True)
class Route:
    requested: str  # the name the client used, echoed back in responses
    model: Model
    upstream_model: str  # the tag the backend serves
    base_url: str


class Router:
    def __init__(self, catalog: Catalog, settings: Settings) -> None:
        self.catalog = catalog
        self.urls = {
            "coding": settings.coding_url,
            "reasoning": settings.reasoning_url,
            "extract": settings.extract_url,
            "embed": settings.embed_url,
        }

    def chat(self, name: object, has_tools: bool) -> Route:
        model = self._find(name)
        if not model.chat or model.role not in self.urls:
            raise APIError(
                400,
                f"model {name!r} is not a chat model",
                "invalid_request_error",
                "model_not_supported",
                "model",
            )
        upstream = model.tag
        if has_tools and not model.tools and model.tools_tag:
            upstream = model.tools_tag  # its template has no tools; the alias built for it does
        return Route(str(name), model, upstream, self.urls[model.role])

    def embedding(self, name: object) -> Route:
        model = self._find(name)
        if not model.embedding:
            raise APIError(
                400,
                f"model {name!r} is not an embedding model",
                "invalid_request_error",
                "model_not_supported",
                "model",
            )
        return Route(str(name), model, model.tag, self.urls["embed"])

    def _find(self, name: object) -> Model:
        if not isinstance(name, str) or not name:
            raise APIError(
                400, "'model' is required", "invalid_request_error", "invalid_request", "model"
            )
        model = self.catalog.find(name)
        if model is None:
            raise APIError(
                404,
                f"The model '{name}' does not exist. Known models: "
                + ", ".join(m.name for m in self.catalog.models if m.chat or m.embedding),
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        return model

    def listing(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        seen: set[str] = set()
        for m in self.catalog.models:
            if not (m.chat or m.embedding):
                continue
            for name in (m.name, *m.aliases):
                if name not in seen:
                    seen.add(name)
                    out.append(
                        {
                            "id": name,
                            "object": "model",
                            "created": 0,
                            "owned_by": "sparkstack",
                            "root": m.tag,
                            "context_length": m.context_length,
                        }
                    )
        return out
