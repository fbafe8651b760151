"""The testinfra suite for a real DGX Spark.

    uv run pytest tests/infra --hosts=ssh://user@spark      # or --hosts=local://

Without --hosts every test here skips: it checks a real machine and cluster, never this one
by accident. Commands run as root (sudo -n when the login is not root). Set
SPARKSTACK_GPU_REPLICAS when the cluster was set up with --gpu-replicas.
"""

from __future__ import annotations

import os

import pytest
from host_setup.checks import Settings
from host_setup.testinfra_host import TestinfraHost

NO_TARGET = (
    "tests/infra checks a real DGX Spark; no target given: run "
    "`uv run pytest tests/infra --hosts=ssh://user@spark` (or --hosts=local:// on the Spark)"
)


@pytest.fixture(scope="module")
def spark(request: pytest.FixtureRequest, host) -> TestinfraHost:
    """The target as a host-setup `Host` (`host` is pytest-testinfra's, one per --hosts)."""
    if not request.config.getoption("hosts", None):
        pytest.skip(NO_TARGET)
    return TestinfraHost(host)


@pytest.fixture(scope="session")
def spark_settings() -> Settings:
    return Settings(gpu_replicas=int(os.environ.get("SPARKSTACK_GPU_REPLICAS", "5")))
