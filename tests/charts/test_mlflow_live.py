"""The rendered MLflow container and `helm test` pod, run against real services.

No cluster here, so the containers' specs are run as local processes: the
rendered command, arguments and environment (each secretKeyRef resolved from
a stand-in Secret store), the rendered basic_auth.ini and the rendered test
script. MinIO is real (provisioned by the chart's own script); PostgreSQL is
replaced by SQLite, the one deviation (the backend-store URI is overridden).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import live
import pytest
from conftest import config_map, rendered
from live import Server, run_provisioning
from minio import Minio

BIN = Path(sys.executable).parent


def _container(kind: str, name: str) -> dict[str, Any]:
    m = next(
        m
        for m in rendered("labstack", "labstack-minimal")
        if m["kind"] == kind and m["metadata"]["name"] == name
    )
    spec = m["spec"] if kind == "Pod" else m["spec"]["template"]["spec"]
    return spec["containers"][0]


def _env(
    container: dict[str, Any], store: dict[tuple[str, str], str], **overrides: str
) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for e in container["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) in store, f"{e['name']}: unresolvable {ref}"
            env[e["name"]] = store[(ref["name"], ref["key"])]
    return {**env, **overrides}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, minio_server: Server, job_files: Path
) -> Iterator[tuple[str, dict[tuple[str, str], str], Path]]:
    """MinIO provisioned by the chart's Job script, and MLflow run as the chart's container."""
    store = {
        ("lab-mlflow-s3", "access-key"): "mlflow-" + secrets.token_hex(3),
        ("lab-mlflow-s3", "secret-key"): secrets.token_hex(16),
        ("lab-postgresql", "password"): secrets.token_hex(16),
        ("lab-mlflow-admin", "admin-username"): "lab-admin",
        ("lab-mlflow-admin", "admin-password"): secrets.token_hex(16),
        ("lab-mlflow-admin", "flask-secret-key"): secrets.token_hex(32),
    }
    provisioned = run_provisioning(
        job_files,
        minio_server,
        {
            "USER_0_ACCESS_KEY": store[("lab-mlflow-s3", "access-key")],
            "USER_0_SECRET_KEY": store[("lab-mlflow-s3", "secret-key")],
        },
    )
    assert provisioned.returncode == 0, provisioned.stderr

    root = tmp_path_factory.mktemp("mlflow")
    ini = config_map("lab-labstack-mlflow")["basic_auth.ini"]
    assert "database_uri = postgresql+psycopg2://" in ini
    ini_lines = [
        f"database_uri = sqlite:///{root}/auth.db" if line.startswith("database_uri") else line
        for line in ini.splitlines()
    ]
    (root / "basic_auth.ini").write_text("\n".join(ini_lines) + "\n")

    c = _container("Deployment", "lab-labstack-mlflow")
    port = live.free_port()
    env = _env(
        c,
        store,
        HOME=str(root),
        MLFLOW_BACKEND_STORE_URI=f"sqlite:///{root}/mlflow.db",
        MLFLOW_S3_ENDPOINT_URL=f"http://{minio_server.endpoint}",
        MLFLOW_AUTH_CONFIG_PATH=str(root / "basic_auth.ini"),
    )
    env["MLFLOW_SERVER_ALLOWED_HOSTS"] += f",127.0.0.1:{port}"
    local = {"--host": "127.0.0.1", "--port": str(port), "--workers": "1"}
    args = [
        f"{a.split('=')[0]}={local[a.split('=')[0]]}" if a.split("=")[0] in local else a
        for a in c["args"]
    ]
    assert c["command"] == ["mlflow"]
    log_path = root / "mlflow.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(BIN / "mlflow"), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            # MLflow's import is slow on a loaded 2-core machine: a deadline, not a claim.
            live.wait_http(f"http://127.0.0.1:{port}/health", proc, log_path, 600)
            yield f"http://127.0.0.1:{port}", store, log_path
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def _status(url: str, user: str, password: str) -> int:
    token = b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(req) as r:  # noqa: S310
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_basic_auth_is_enforced(stack: tuple[str, dict[tuple[str, str], str], Path]) -> None:
    url, store, _ = stack
    api = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
    admin = store[("lab-mlflow-admin", "admin-username")]
    assert _status(api, admin, store[("lab-mlflow-admin", "admin-password")]) == 200
    assert _status(api, admin, "wrong-password") == 401
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(api)  # noqa: S310


def test_helm_test_pod_passes_and_artifact_lands_in_minio(
    stack: tuple[str, dict[tuple[str, str], str], Path],
    minio_server: Server,
    tmp_path: Path,
) -> None:
    url, store, server_log = stack
    c = _container("Pod", "lab-labstack-test-mlflow-run")
    assert c["command"][-1].endswith("python /smoke/mlflow_smoke.py")
    (tmp_path / "mlflow_smoke.py").write_text(config_map("lab-labstack-test")["mlflow_smoke.py"])
    env = _env(
        c, store, HOME=str(tmp_path), SMOKE_DIR=str(tmp_path / "smoke"), MLFLOW_TRACKING_URI=url
    )
    result = subprocess.run(
        [sys.executable, str(tmp_path / "mlflow_smoke.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "artifact read back intact" in result.stdout

    # The artifact went through MLflow's proxy into the chart's bucket in MinIO.
    admin = Minio(
        minio_server.endpoint,
        access_key=minio_server.root_user,
        secret_key=minio_server.root_password,
        secure=False,
    )
    keys = [o.object_name or "" for o in admin.list_objects("mlflow", recursive=True)]
    assert any(k.endswith("probe/probe.txt") for k in keys), keys
    # No credential reached a log.
    logs = server_log.read_text() + result.stdout + result.stderr
    for (_, key), value in store.items():
        if key != "admin-username":
            assert value not in logs, f"{key} leaked into a log"
