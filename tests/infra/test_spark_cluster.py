"""The cluster on the Spark: node, taint, GPU slices, operator, storage, KServe, the stack.

`pvc-binds` creates a 1Gi claim on `longhorn` and removes it again.
"""

from __future__ import annotations

import pytest
from host_setup.checks import INFRA_CLUSTER_CHECKS


@pytest.mark.parametrize("name", list(INFRA_CLUSTER_CHECKS))
def test_cluster(spark, spark_settings, name: str) -> None:
    status = INFRA_CLUSTER_CHECKS[name](spark, spark_settings)
    assert status, f"{name}: {status.detail}"
