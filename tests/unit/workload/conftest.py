"""Session fixtures: a real MinIO (the pinned binary) and a real `mlflow server` on loopback."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from workload.s3 import S3Settings, ensure_bucket, make_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args!r} exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout}s:\n{log.read_text()[-3000:]}")


@contextmanager
def running(argv: list[str], env: dict[str, str], log: Path, ready_url: str) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(ready_url, proc, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class Minio:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)

    def env(self) -> dict[str, str]:
        return {
            "S3_ENDPOINT": self.endpoint,
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            # mlflow's own boto3 client: the same MinIO-compatible checksum policy
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }


@contextmanager
def minio_server(binary: str, root: Path) -> Iterator[Minio]:
    port, console = free_port(), free_port()
    server = Minio(f"http://127.0.0.1:{port}", "lab" + secrets.token_hex(6), secrets.token_hex(20))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(root),
        "MINIO_ROOT_USER": server.access_key,
        "MINIO_ROOT_PASSWORD": server.secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
    }
    (root / "data").mkdir(parents=True)
    argv = [binary, "server", str(root / "data"), "--address", f"127.0.0.1:{port}"]
    argv += ["--console-address", f"127.0.0.1:{console}", "--quiet"]
    with running(argv, env, root / "minio.log", f"{server.endpoint}/minio/health/live"):
        yield server


@contextmanager
def mlflow_server(minio: Minio, root: Path, bucket: str) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, **minio.env()}
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--workers", "1"]
    argv += ["--artifacts-destination", f"s3://{bucket}/artifacts"]
    url = f"http://127.0.0.1:{port}"
    with running(argv, env, root / "mlflow.log", f"{url}/health"):
        yield url


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
        client = make_client(S3Settings(server.endpoint, server.access_key, server.secret_key))
        for bucket in ("datasets", "mlflow"):
            ensure_bucket(client, bucket)
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
    return make_client(S3Settings(minio.endpoint, minio.access_key, minio.secret_key))
