"""The languages the preprocessor parses, each from an offline grammar wheel."""

from __future__ import annotations

import importlib

from .base import LanguageSpec

# One module per language, each exporting SPEC.
_MODULES = (
    "python",
    "javascript",
    "typescript",
    "tsx",
    "go",
    "rust",
    "java",
    "kotlin",
    "c",
    "cpp",
    "csharp",
    "ruby",
    "php",
    "bash",
)
LANGUAGES: tuple[LanguageSpec, ...] = tuple(
    importlib.import_module(f"{__name__}.{m}").SPEC for m in _MODULES
)

BY_EXTENSION: dict[str, LanguageSpec] = {ext: spec for spec in LANGUAGES for ext in spec.extensions}
BY_NAME: dict[str, LanguageSpec] = {spec.name: spec for spec in LANGUAGES}

__all__ = ["BY_EXTENSION", "BY_NAME", "LANGUAGES", "LanguageSpec"]
