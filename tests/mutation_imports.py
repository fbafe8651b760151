"""Under mutmut (`MUTANT_UNDER_TEST` set), import the mutated copies of the modules it mutates.

mutmut copies each file it mutates to ``mutants/<its path>`` and runs the tests from
``mutants/``; it puts only ``mutants/`` and ``mutants/src`` on ``sys.path``, which misses
this workspace's packages (``services/*/src``, ``host-setup/src``). This finder serves each
mutated file under its module name (``services/orchestrator/src/orchestrator/memory.py`` is
``orchestrator.memory``) and leaves every other module to the installed packages, so only the
modules under test are copied. See docs/testing.md, "Mutation testing".
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import sys
from pathlib import Path


class MutatedModules(importlib.abc.MetaPathFinder):
    def __init__(self, root: Path) -> None:
        self.files: dict[str, Path] = {}
        for path in root.glob("**/src/**/*.py"):
            parts = path.relative_to(root).parts
            inner = parts[parts.index("src") + 1 :]
            name = ".".join((*inner[:-1], inner[-1].removesuffix(".py")))
            self.files[name.removesuffix(".__init__")] = path

    def find_spec(self, fullname, path=None, target=None):
        found = self.files.get(fullname)
        if found is None:
            return None
        return importlib.util.spec_from_file_location(fullname, found)


def active() -> bool:
    return "MUTANT_UNDER_TEST" in os.environ and Path.cwd().name == "mutants"


def install() -> None:
    if not active():
        return
    if not any(isinstance(f, MutatedModules) for f in sys.meta_path):
        sys.meta_path.insert(0, MutatedModules(Path.cwd()))


def name_items(items: list) -> None:
    """mutmut reads ``item._nodeid``, which pytest 9's items no longer carry."""
    if active():
        for item in items:
            if not hasattr(item, "_nodeid"):
                item._nodeid = item.nodeid
