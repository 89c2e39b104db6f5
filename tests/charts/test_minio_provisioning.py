"""The chart's MinIO provisioning script, as rendered, run against a real MinIO.

The Job itself needs a cluster; its container command is what runs here:
`python minio_provision.py` with the rendered plan and the environment the Job
gives it (credentials as variables, as the Secret references would).
"""

from __future__ import annotations

import io
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import rendered
from minio import Minio
from minio.error import S3Error


@dataclass(frozen=True)
class Server:
    endpoint: str
    root_user: str
    root_password: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def minio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = os.environ.get("LABSTACK_MINIO_BIN", "")
    if not binary:
        raise RuntimeError("LABSTACK_MINIO_BIN is not set: run the chart tests with `make charts`")
    root = tmp_path_factory.mktemp("minio")
    port, console = _free_port(), _free_port()
    server = Server(f"127.0.0.1:{port}", "root-" + secrets.token_hex(4), secrets.token_hex(16))
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(root),
        "MINIO_ROOT_USER": server.root_user,
        "MINIO_ROOT_PASSWORD": server.root_password,
    }
    log = (root / "minio.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            "server",
            str(root / "data"),
            "--address",
            server.endpoint,
            "--console-address",
            f"127.0.0.1:{console}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://{server.endpoint}/minio/health/ready") as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"MinIO did not start: {(root / 'minio.log').read_text()}")
            time.sleep(0.5)
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def job_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The provisioning ConfigMap of the minimal install, written out as the Job mounts it."""
    cm = next(
        m
        for m in rendered("labstack", "labstack-minimal")
        if m["kind"] == "ConfigMap" and m["metadata"]["name"] == "lab-labstack-minio-provision"
    )
    d = tmp_path_factory.mktemp("provision")
    for name, content in cm["data"].items():
        (d / name).write_text(content)
    return d


def _run(
    job_files: Path, server: Server, user_env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HEARTBEAT": str(job_files / "heartbeat"),
        "PROVISION_CONFIG": str(job_files / "plan.json"),
        "MINIO_ENDPOINT": f"http://{server.endpoint}",
        "MINIO_ROOT_USER": server.root_user,
        "MINIO_ROOT_PASSWORD": server.root_password,
        **user_env,
    }
    return subprocess.run(
        [sys.executable, str(job_files / "minio_provision.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _client(server: Server, access: str, secret: str) -> Minio:
    return Minio(server.endpoint, access_key=access, secret_key=secret, secure=False)


def test_provisioning_converges_and_is_idempotent(job_files: Path, minio_server: Server) -> None:
    access, secret = "mlflow-" + secrets.token_hex(3), secrets.token_hex(16)
    user_env = {"USER_0_ACCESS_KEY": access, "USER_0_SECRET_KEY": secret}
    first = _run(job_files, minio_server, user_env)
    assert first.returncode == 0, first.stderr
    assert (job_files / "heartbeat").exists(), "the liveness probe's heartbeat"
    for credential in (secret, minio_server.root_password):
        assert credential not in first.stdout + first.stderr

    admin = _client(minio_server, minio_server.root_user, minio_server.root_password)
    assert {b.name for b in admin.list_buckets()} == {"mlflow", "datasets"}
    assert admin.get_bucket_versioning("datasets").status == "Enabled"
    assert admin.get_bucket_versioning("mlflow").status != "Enabled"

    # The user gets exactly the mlflow-artifacts policy.
    user = _client(minio_server, access, secret)
    user.put_object("mlflow", "runs/probe.txt", io.BytesIO(b"kept"), 4)
    with pytest.raises(S3Error, match="AccessDenied"):
        user.put_object("datasets", "x.txt", io.BytesIO(b"no"), 2)
    with pytest.raises(S3Error, match="AccessDenied"):
        list(user.list_objects("datasets"))

    # Second run: succeeds, changes nothing, loses nothing.
    second = _run(job_files, minio_server, user_env)
    assert second.returncode == 0, second.stderr
    assert "bucket mlflow: exists" in second.stdout
    assert "created" not in second.stdout
    assert user.get_object("mlflow", "runs/probe.txt").read() == b"kept"

    # A rotated secret key in the Secret converges on the next run.
    rotated = secrets.token_hex(16)
    third = _run(job_files, minio_server, {**user_env, "USER_0_SECRET_KEY": rotated})
    assert third.returncode == 0, third.stderr
    assert _client(minio_server, access, rotated).get_object("mlflow", "runs/probe.txt").read()
    with pytest.raises(S3Error):
        _client(minio_server, access, secret).get_object("mlflow", "runs/probe.txt")


def test_missing_credential_is_named(job_files: Path, minio_server: Server) -> None:
    result = _run(job_files, minio_server, {"USER_0_ACCESS_KEY": "mlflow-x"})
    assert result.returncode != 0
    assert "USER_0_SECRET_KEY" in result.stderr
