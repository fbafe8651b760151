"""The Spark itself: modules, sysctls, swap, services, held packages, containerd, kubelet.

These are host-setup's own check functions (`host_setup.checks.INFRA_HOST_CHECKS`), the same
code the steps use; tests/host_setup runs them against the scripted host in CI.
"""

from __future__ import annotations

import pytest
from host_setup.checks import INFRA_HOST_CHECKS


@pytest.mark.parametrize("name", list(INFRA_HOST_CHECKS))
def test_host(spark, spark_settings, name: str) -> None:
    status = INFRA_HOST_CHECKS[name](spark, spark_settings)
    assert status, f"{name}: {status.detail}"
