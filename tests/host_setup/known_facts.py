"""A host that is nothing but answers to facts, for tests that are data: facts in, decisions
(commands, statuses) out."""

from __future__ import annotations

import shlex
from typing import Any

from host_setup import facts as F
from host_setup.hosts import Host


class KnownFacts(Host):
    """A host that is nothing but answers to facts: deciding may read them, nothing else."""

    name = "facts"

    def __init__(self, answers: dict[F.Fact, Any], user: str = "spark") -> None:
        self.answers = answers
        self.user = user

    def fact(self, fact):
        if fact not in self.answers:
            raise AssertionError(f"the step read a fact the test did not give: {fact.command}")
        return self.answers[fact]

    def _exec(self, argv, **_):
        raise AssertionError(f"deciding ran a command: {shlex.join(argv)}")

    def invoking_user(self) -> str:
        return self.user
