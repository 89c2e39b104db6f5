"""The chart's MinIO provisioning script, as rendered, run against a real MinIO.

The Job itself needs a cluster; its container command is what runs here:
`python minio_provision.py` with the rendered plan and the environment the Job
gives it (credentials as variables, as the Secret references would).
"""

from __future__ import annotations

import io
import secrets
from pathlib import Path

import pytest
from live import Server, run_provisioning
from minio import Minio
from minio.error import S3Error


def _client(server: Server, access: str, secret: str) -> Minio:
    return Minio(server.endpoint, access_key=access, secret_key=secret, secure=False)


def test_provisioning_converges_and_is_idempotent(job_files: Path, minio_server: Server) -> None:
    access, secret = "mlflow-" + secrets.token_hex(3), secrets.token_hex(16)
    user_env = {"USER_0_ACCESS_KEY": access, "USER_0_SECRET_KEY": secret}
    first = run_provisioning(job_files, minio_server, user_env)
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
    second = run_provisioning(job_files, minio_server, user_env)
    assert second.returncode == 0, second.stderr
    assert "bucket mlflow: exists" in second.stdout
    assert "created" not in second.stdout
    assert user.get_object("mlflow", "runs/probe.txt").read() == b"kept"

    # A rotated secret key in the Secret converges on the next run.
    rotated = secrets.token_hex(16)
    third = run_provisioning(job_files, minio_server, {**user_env, "USER_0_SECRET_KEY": rotated})
    assert third.returncode == 0, third.stderr
    assert _client(minio_server, access, rotated).get_object("mlflow", "runs/probe.txt").read()
    with pytest.raises(S3Error):
        _client(minio_server, access, secret).get_object("mlflow", "runs/probe.txt")


def test_missing_credential_is_named(job_files: Path, minio_server: Server) -> None:
    result = run_provisioning(job_files, minio_server, {"USER_0_ACCESS_KEY": "mlflow-x"})
    assert result.returncode != 0
    assert "USER_0_SECRET_KEY" in result.stderr
