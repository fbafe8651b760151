"""The languages the preprocessor parses, each from an offline grammar wheel."""

from __future__ import annotations

from .base import LanguageSpec
from .python import PYTHON

LANGUAGES: tuple[LanguageSpec, ...] = (PYTHON,)

BY_EXTENSION: dict[str, LanguageSpec] = {ext: spec for spec in LANGUAGES for ext in spec.extensions}
BY_NAME: dict[str, LanguageSpec] = {spec.name: spec for spec in LANGUAGES}

__all__ = ["BY_EXTENSION", "BY_NAME", "LANGUAGES", "LanguageSpec"]
