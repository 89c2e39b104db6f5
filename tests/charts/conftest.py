"""Shared fixtures of the chart tests: the values files and their renderings."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from helmtool import VALUES, Manifest, render

# Valid values files of each chart (besides the chart defaults).
VALID = {
    "labstack": ("labstack-minimal", "labstack-production", "labstack-distributed-minio"),
    "training-job": ("training-single", "training-multinode"),
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
