"""Session fixtures: a real MinIO (the pinned binary) and a real `mlflow server` on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from workload.localservers import Minio, minio_server, mlflow_server
from workload.s3 import ensure_bucket, make_client


@pytest.fixture(autouse=True)
def _skip_gpu_tests_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") and not torch.cuda.is_available():
        pytest.skip("needs a real NVIDIA GPU: torch.cuda.is_available() is False here")


@pytest.fixture(scope="session")
def minio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Minio]:
    binary = os.environ.get("LABSTACK_MINIO_BIN")
    if not binary:
        pytest.fail("LABSTACK_MINIO_BIN is unset: run the tests through `make unit`")
    if not Path(binary).is_file():
        pytest.fail(f"LABSTACK_MINIO_BIN={binary} does not exist: `make unit` builds it")
    with minio_server(binary, tmp_path_factory.mktemp("minio")) as server:
        client = make_client(server.settings())
        for bucket in ("datasets", "mlflow"):
            ensure_bucket(client, bucket, versioned=bucket == "datasets")
        yield server


@pytest.fixture(scope="session")
def mlflow_url(minio: Minio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with mlflow_server(minio, tmp_path_factory.mktemp("mlflow"), "mlflow") as url:
        yield url


@pytest.fixture
def s3_env(minio: Minio, monkeypatch: pytest.MonkeyPatch) -> Minio:
    for key, value in minio.env().items():
        monkeypatch.setenv(key, value)
    return minio


@pytest.fixture
def s3(minio: Minio) -> Any:
    return make_client(minio.settings())
