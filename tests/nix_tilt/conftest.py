"""Fixtures for the Nix and Tilt tests: the dev overlays rendered once, the Tiltfile run once
per serving mode (each run renders its overlay itself, through the stubbed `kustomize`)."""

from __future__ import annotations

from typing import Any

import pytest
from nix_tilt_support import OVERLAYS, TiltRecorder, render, run_tiltfile


@pytest.fixture(scope="session")
def dev_objects() -> dict[str, list[dict[str, Any]]]:
    """`kubectl kustomize` of overlays/dev and overlays/dev-kserve, by serving mode."""
    return {mode: render(path) for mode, path in OVERLAYS.items()}


@pytest.fixture(scope="session")
def tilt_runs() -> dict[str, TiltRecorder]:
    """The Tiltfile executed for `tilt up` and `tilt up -- --serving=kserve`."""
    return {
        "default": run_tiltfile(),
        "kserve": run_tiltfile({"serving": "kserve"}),
    }


@pytest.fixture(params=sorted(OVERLAYS))
def mode(request: pytest.FixtureRequest) -> str:
    return request.param
