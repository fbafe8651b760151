"""sparkstack-testing stays a dev dependency: no product package depends on it or imports it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = [*sorted(ROOT.glob("services/*")), ROOT / "host-setup"]


def test_no_product_package_depends_on_or_imports_sparkstack_testing() -> None:
    assert len(PRODUCT) > 5
    for package in PRODUCT:
        project = tomllib.loads((package / "pyproject.toml").read_text())["project"]
        names = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in project["dependencies"]]
        assert "sparkstack-testing" not in names, package
        for source in (package / "src").rglob("*.py"):
            assert "sparkstack_testing" not in source.read_text(), source
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "sparkstack-testing" not in root["project"]["dependencies"]
    assert "sparkstack-testing" in root["dependency-groups"]["dev"]
