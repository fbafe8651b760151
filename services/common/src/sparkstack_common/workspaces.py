"""Workspace names: one name selects one isolated knowledge base end to end.

Names are validated, never rewritten: rewriting would make ``a-b`` and ``a_b`` collide.
"""

from __future__ import annotations

import re

DEFAULT_WORKSPACE = "default"
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidWorkspace(ValueError):
    """The name is not a valid workspace name; callers answer 400."""


def validate_workspace(name: str | None, default: str = DEFAULT_WORKSPACE) -> str:
    """The workspace ``name`` selects, or ``default`` when it is missing or empty."""
    if name is None or name == "":
        return default
    if not _VALID.fullmatch(name):
        raise InvalidWorkspace(
            f"invalid workspace name {name!r}: use 1 to 64 letters, digits, '_' or '-'"
        )
    return name
