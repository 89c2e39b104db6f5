"""Real MinIO and MLflow servers on loopback, for tests, benchmarks and local dev.

MinIO runs from the pinned binary (`LABSTACK_MINIO_BIN`, built by the Makefile)
with generated root credentials; `mlflow server` (the version in uv.lock) keeps
runs in SQLite and artifacts in that MinIO. Both are stopped on exit.
"""

from __future__ import annotations

import os
import secrets
import signal
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

from workload.s3 import S3Settings


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
        proc = subprocess.Popen(  # noqa: S603 - argv built by the callers above
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(ready_url, proc, log)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass(frozen=True)
class Minio:
    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)

    def settings(self) -> S3Settings:
        return S3Settings(self.endpoint, self.access_key, self.secret_key)

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
def minio_server(binary: str, root: Path, again: Minio | None = None) -> Iterator[Minio]:
    """MinIO keeping its data in ROOT; AGAIN: the server that ran there before, started
    again (same address, credentials and data), as after a restart."""
    server = again or Minio(
        f"http://127.0.0.1:{free_port()}", "lab" + secrets.token_hex(6), secrets.token_hex(20)
    )
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(root),
        "MINIO_ROOT_USER": server.access_key,
        "MINIO_ROOT_PASSWORD": server.secret_key,
        "MINIO_BROWSER": "off",
        "MINIO_UPDATE": "off",
    }
    (root / "data").mkdir(parents=True, exist_ok=again is not None)
    argv = [binary, "server", str(root / "data"), "--address", server.endpoint.split("//")[1]]
    argv += ["--console-address", f"127.0.0.1:{free_port()}", "--quiet"]
    with running(argv, env, root / "minio.log", f"{server.endpoint}/minio/health/live"):
        yield server


@contextmanager
def mlflow_server(minio: Minio, root: Path, bucket: str, port: int = 0) -> Iterator[str]:
    """`mlflow server` keeping its runs in ROOT; PORT: the one of the server that ran
    there before (started again, as after a restart), else a free one."""
    port = port or free_port()
    env = {**os.environ, **minio.env()}
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--workers", "1"]
    argv += ["--artifacts-destination", f"s3://{bucket}/artifacts"]
    url = f"http://127.0.0.1:{port}"
    with running(argv, env, root / "mlflow.log", f"{url}/health"):
        yield url
