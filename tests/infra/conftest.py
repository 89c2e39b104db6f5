"""testinfra over the docker:// backend, one connection per sandbox node."""

from __future__ import annotations

import pytest
import testinfra
from testinfra.host import Host

from tests.inventory import container, hosts


@pytest.fixture(scope="session")
def nodes() -> dict[str, Host]:
    """Every sandbox node, by inventory name."""
    return {name: testinfra.get_host(f"docker://{container(name)}") for name in hosts()}


@pytest.fixture(params=hosts(), scope="session")
def node(request: pytest.FixtureRequest, nodes: dict[str, Host]) -> Host:
    return nodes[request.param]
