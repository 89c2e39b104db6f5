"""Shared fixtures of the chart tests: the values files and their renderings."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path

import live
import pytest
from helmtool import VALUES, Manifest, render
from live import Server

# Valid values files of each chart (besides the chart defaults).
VALID = {
    "labstack": ("labstack-minimal", "labstack-production", "labstack-distributed-minio"),
    "training-job": ("training-single", "training-multinode", "training-openbao"),
}
CASES = [(chart, name) for chart, names in VALID.items() for name in names]


def values_file(name: str) -> Path:
    path = VALUES / f"{name}.yaml"
    assert path.is_file(), f"values file {path} is missing"
    return path


@cache
def rendered(chart: str, name: str, kube_version: str = "1.37.0") -> list[Manifest]:
    return render(chart, (values_file(name),), kube_version)


@pytest.fixture(params=CASES, ids=[n for _, n in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real MinIO on loopback, shared by the tests that need one."""
    with live.minio(tmp_path_factory.mktemp("minio")) as server:
        yield server


def config_map(name: str, values: str = "labstack-minimal") -> dict[str, str]:
    return next(
        m["data"]
        for m in rendered("labstack", values)
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] == name
    )


@pytest.fixture(scope="session")
def job_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provisioning ConfigMap of the minimal install, written out as the Job mounts it."""
    d = tmp_path_factory.mktemp("provision")
    for name, content in config_map("lab-labstack-minio-provision").items():
        (d / name).write_text(content)
    return d
