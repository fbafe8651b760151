"""Shared fixtures. The embedded servers are real (no mocks); see sparkstack.infra."""

from __future__ import annotations

import mutation_imports

mutation_imports.install()  # before anything imports the modules mutmut mutates

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402
from sparkstack.infra import EmbeddedInfra  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not infra"` then deselects everything that needs the servers, without each test
    # having to repeat the marker.
    for item in items:
        if "infra" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.infra)
    mutation_imports.name_items(items)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    # pytest-randomly puts its seed in the header, which -q hides: the order of a failed run
    # is repeated with it
    seed = getattr(config.option, "randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(
            f"random order: seed {seed} (the same order again: "
            f"--randomly-seed={seed}; file order: -p no:randomly)"
        )


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedInfra]:
    """PostgreSQL + pgvector, Valkey and NATS JetStream for the whole session.

    Tests may stop or restart a server (ports stay the same) but must leave it running.
    """
    # fsync off: throwaway data, and it keeps initdb fast.
    with EmbeddedInfra(tmp_path_factory.mktemp("infra"), postgres_fsync=False) as stack:
        yield stack


@pytest.fixture(scope="session")
def postgres_dsn(infra: EmbeddedInfra) -> str:
    return infra.postgres_dsn


@pytest.fixture(scope="session")
def redis_url(infra: EmbeddedInfra) -> str:
    return infra.redis_url


@pytest.fixture(scope="session")
def nats_url(infra: EmbeddedInfra) -> str:
    return infra.nats_url
