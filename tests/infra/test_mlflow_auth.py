"""MLflow's users live in PostgreSQL (beside its runs, in the lab's one
database server), and a changed mlflow_admin_password takes effect on the next
run of its layers (tracking, secrets): the new one logs in, the old one is
refused, nothing else is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from tests.inventory import container, hosts
from tests.playbook import SANDBOX_INVENTORY, run_playbook
from tests.services import ca_file, credentials, endpoint, openbao_admin, vault_env

_BIN = Path(sys.executable).parent


def _on_head(*argv: str) -> str:
    node = container(hosts("tracking")[0])
    done = subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _status(path: str, user: str, password: str) -> int:
    url = f"https://{endpoint(hosts('tracking')[0], 5000)}{path}"
    return requests.get(url, auth=(user, password), verify=str(ca_file()), timeout=30).status_code


def _experiments(password: str) -> list[str]:
    url = f"https://{endpoint(hosts('tracking')[0], 5000)}/api/2.0/mlflow/experiments/search"
    found = requests.get(
        url,
        params={"max_results": 1000},
        auth=("admin", password),
        verify=str(ca_file()),
        timeout=30,
    )
    assert found.status_code == 200, found.text
    return sorted(item["experiment_id"] for item in found.json().get("experiments", []))


def test_users_and_permissions_are_in_postgresql() -> None:
    users = _on_head(
        "runuser", "-u", "postgres", "--", "psql", "-At", "-d", "mlflow_auth",
        "-c", "SELECT username FROM users ORDER BY username",
    )  # fmt: skip
    assert {"admin", "jobs"} <= set(users.split()), users
    ini = _on_head("cat", "/etc/mlflow/basic_auth.ini")
    assert "database_uri = postgresql+psycopg2://mlflow@127.0.0.1:5432/mlflow_auth" in ini
    assert "sqlite" not in ini
    # No live SQLite auth database (an upgraded lab keeps the moved one as .migrated).
    listing = _on_head("ls", "/var/lib/mlflow")
    assert "basic_auth.db" not in listing.split(), listing


def _drop_credential(name: str) -> None:
    """Remove NAME from the site's credentials file: the next run generates a new one
    (the rotation the README describes)."""
    path = SANDBOX_INVENTORY / "credentials.yml"
    values = dict(credentials())
    del values[name]
    subprocess.run(
        [str(_BIN / "ansible-vault"), "encrypt", "--output", str(path)],
        input=yaml.safe_dump(values),
        env=vault_env(),
        text=True,
        capture_output=True,
        check=True,
    )
    credentials.cache_clear()


@pytest.fixture(scope="module")
def rotated() -> tuple[str, str, list[str]]:
    """(old password, new password, experiments before) around a run of the
    layers that use it, tracking and secrets (site.yml runs them the same way),
    after the removal of mlflow_admin_password from the credentials."""
    old = credentials()["mlflow_admin_password"]
    before = _experiments(old)
    _drop_credential("mlflow_admin_password")
    for layer in ("playbooks/tracking.yml", "playbooks/secrets.yml"):
        run = run_playbook(layer)
        assert run.returncode == 0, run.output[-6000:]
    new = credentials()["mlflow_admin_password"]
    assert new != old
    return old, new, before


def test_a_rotated_admin_password_replaces_the_old_one(
    rotated: tuple[str, str, list[str]],
) -> None:
    old, new, before = rotated
    path = "/api/2.0/mlflow/users/get?username=admin"
    assert _status(path, "admin", new) == 200
    assert _status(path, "admin", old) == 401
    assert _experiments(new) == before
    # The jobs' user (managed with the admin's password) still logs in.
    jobs = credentials()["mlflow_jobs_password"]
    assert _status("/api/2.0/mlflow/experiments/get?experiment_id=0", "jobs", jobs) == 200


def test_openbao_hands_out_the_rotated_password(rotated: tuple[str, str, list[str]]) -> None:
    _, new, _ = rotated
    stored = openbao_admin().secrets.kv.v2.read_secret_version(
        "labstack/admin/mlflow", raise_on_deleted_version=True
    )["data"]["data"]
    assert stored["password"] == new
