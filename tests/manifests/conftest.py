"""Fixtures for the manifest tests: each overlay is rendered once per session."""

from __future__ import annotations

from typing import Any

import pytest
from manifests_support import OVERLAYS, render
from sparkstack_common.catalog import Catalog


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict[str, Any]]]:
    """Every overlay, rendered by `kubectl kustomize` (fails loudly without kubectl)."""
    return {overlay: render(overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def objs(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> list[dict[str, Any]]:
    return rendered[overlay]
