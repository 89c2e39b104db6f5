"""A namespace per test, admitted only pods of the restricted Pod Security
Standard, deleted with everything in it afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.kube import KUBECONFIG, kubectl


@pytest.fixture(scope="session", autouse=True)
def _cluster() -> None:
    assert KUBECONFIG.is_file(), f"no admin kubeconfig at {KUBECONFIG}: deploy the lab (make lab)"


@pytest.fixture
def namespace() -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    yield name
    kubectl("delete", "namespace", name, "--wait=false")
