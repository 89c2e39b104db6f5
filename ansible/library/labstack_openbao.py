"""Ansible module: initialise, unseal and configure OpenBao through its API (hvac).

Runs on the control node (delegate_to: localhost). Idempotent: every step
reads the current state first and changes only what differs.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: labstack_openbao
short_description: Initialise, unseal and configure an OpenBao server
options:
  url: {description: https URL of the API, type: str, required: true}
  ca_file: {description: CA bundle that signs the server certificate, type: path, required: true}
  action: {description: what to do, type: str, choices: [init, unseal, configure], required: true}
  key_shares: {description: unseal key shares (init), type: int, default: 3}
  key_threshold: {description: keys needed to unseal (init), type: int, default: 2}
  save_to:
    description: >-
      file the initialisation result (unseal keys, root token) is written to,
      0600, before anything else (init); an existing one is never replaced
    type: path
  pgp_keys:
    description: >-
      one holder per unseal key share (init): holder (a name) and key (the
      holder's OpenPGP public key, base64 of the binary key, as `gpg --export
      NAME | base64 -w0` prints it). Each share is encrypted to its holder's
      key, and the result holds unseal_shares [{holder, share}] (share: base64
      of the OpenPGP message) instead of unseal_keys. Empty: plain keys
    type: list
    elements: dict
    default: []
  unseal_keys:
    {description: unseal keys (unseal), type: list, elements: str, default: [], no_log: true}
  token:
    description: >-
      the root token while one exists (configure): used once, then revoked
    type: str
    no_log: true
  admin_username: {description: the userpass login that configures (configure), type: str}
  admin_password: {description: its password (configure), type: str, no_log: true}
  kv_mount: {description: mount point of the KV v2 engine, type: str, default: secret}
  kv_secrets:
    {description: path -> data written to the KV engine, type: dict, default: {}, no_log: true}
  policies: {description: name -> ACL policy (HCL), type: dict, default: {}}
  approles: {description: name -> role settings (token_policies, ttls), type: dict, default: {}}
  userpass_users:
    {description: name -> password and token settings, type: dict, default: {}}
  audit_file: {description: file the configured audit device writes, type: str, default: ""}
  raft_peers:
    description: >-
      the node ids the raft cluster keeps (configure): any other member is
      removed from it; empty: members are left as they are
    type: list
    elements: str
    default: []
  kubernetes_auth:
    description: >-
      the Kubernetes auth method: mount, config (kubernetes_host,
      kubernetes_ca_cert, token_reviewer_jwt) and roles (name -> settings);
      empty: not configured
    type: dict
    default: {}
    no_log: true
author: labstack
"""

EXAMPLES = r"""
- name: Unseal
  labstack_openbao:
    url: https://head:8200
    ca_file: /path/ca.crt
    action: unseal
    unseal_keys: "{{ keys }}"
  no_log: true
"""

RETURN = r"""
actions: {description: what was changed, type: list, returned: always}
sealed: {description: whether the server is sealed afterwards, type: bool, returned: always}
root_revoked: {description: whether no root token is left (configure), type: bool, returned: always}
"""


def _init(client: Any, params: dict, result: dict) -> None:
    """Initialise an uninitialised server; the unseal keys and the root token go to
    SAVE_TO (0600) before anything else can fail, so that no interruption loses them.

    With PGP_KEYS, OpenBao encrypts each share to one holder's key before it
    answers: the plain shares never leave the server, and SAVE_TO holds the
    encrypted ones with their holders' names (paired here, in the order OpenBao
    was given the keys, so that no later change of the inventory can mix them)."""
    if client.sys.is_initialized():
        return
    holders = params["pgp_keys"]
    if holders and len(holders) != params["key_shares"]:
        raise ValueError(
            f"pgp_keys has {len(holders)} holder(s) for key_shares {params['key_shares']}: "
            "one share per holder"
        )
    path = params["save_to"]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(
            f"{path} exists: it holds the unseal keys of an earlier initialisation. The "
            "server is not initialised, so they are not its keys; move the file away if "
            "they belong to nothing that must be kept"
        ) from None
    try:
        answer = client.sys.initialize(
            params["key_shares"],
            params["key_threshold"],
            pgp_keys=[holder["key"] for holder in holders] or None,
        )
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    result["actions"].append("initialise")
    saved_result: dict[str, Any] = {"unseal_keys": answer["keys_base64"]}
    if holders:
        # Another name than unseal_keys: nothing downstream may take them for keys.
        saved_result = {
            "unseal_shares": [
                {"holder": holder["holder"], "share": share}
                for holder, share in zip(holders, answer["keys_base64"], strict=True)
            ]
        }
    saved_result["root_token"] = answer["root_token"]
    with os.fdopen(fd, "w") as saved:
        json.dump(saved_result, saved)
        saved.flush()
        os.fsync(saved.fileno())


def _unseal(client: Any, params: dict, result: dict) -> None:
    if not client.sys.is_sealed():
        return
    if not params["unseal_keys"]:
        raise ValueError("the server is sealed and no unseal keys were given")
    result["actions"].append("unseal")
    for key in params["unseal_keys"]:
        answer = client.sys.submit_unseal_key(key)
        # Progress back at 0: the threshold is met. A host joining a raft cluster
        # unseals once it has answered the leader's challenge with the keys.
        if not answer["sealed"] or answer["progress"] == 0:
            break
    deadline = time.monotonic() + 60
    while client.sys.is_sealed():
        if time.monotonic() > deadline:
            raise ValueError(
                "still sealed a minute after the unseal keys were given: "
                "are they this server's (or, joining a raft cluster, its leader's)?"
            )
        time.sleep(1)


def _login(client: Any, params: dict, result: dict) -> bool:
    """Log CLIENT in: with the root token while it works (True: revoke it once the admin
    login is configured), else as the admin."""
    import hvac.exceptions

    if params["admin_username"] not in params["userpass_users"]:
        raise ValueError(
            f"userpass_users lacks the admin login {params['admin_username']!r}: "
            "the root token is revoked, so it must be configured in every run"
        )
    result["root_revoked"] = True
    if params["token"]:
        client.token = params["token"]
        try:
            client.auth.token.lookup_self()
            result["root_revoked"] = False
            return True
        except hvac.exceptions.Forbidden:  # revoked by an earlier run
            pass
    try:
        client.auth.userpass.login(params["admin_username"], params["admin_password"])
    except Exception as error:
        raise ValueError(
            f"the admin login (admin_username) was refused ({error}) and there is "
            "no working root token: make one with the unseal keys (`bao operator "
            "generate-root`; without a working admin login, turn on the unauthenticated "
            "one first: README, OpenBao's emergency) and put it in the credentials file "
            "as openbao_root_token; the next run configures with it, then revokes it"
        ) from None
    return False


def _configure(client: Any, params: dict, result: dict) -> None:
    actions: list[str] = result["actions"]
    root = _login(client, params, result)
    mount = params["kv_mount"]
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if f"{mount}/" not in mounts:
        actions.append(f"mount kv-v2 at {mount}")
        client.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    if params["audit_file"]:
        # OpenBao creates audit devices from its configuration file only: check it is on.
        devices = client.sys.list_enabled_audit_devices()["data"]
        paths = [device.get("options", {}).get("file_path") for device in devices.values()]
        if params["audit_file"] not in paths:
            raise ValueError(f"no audit device writes {params['audit_file']} (openbao.hcl)")
    for name, rules in params["policies"].items():
        try:
            current = client.sys.read_acl_policy(name)["data"]["policy"]
        except Exception:  # hvac raises InvalidPath for a missing policy
            current = None
        if (current or "").strip() != rules.strip():
            actions.append(f"set policy {name}")
            client.sys.create_or_update_acl_policy(name, rules)
    if params["approles"]:
        if "approle/" not in client.sys.list_auth_methods()["data"]:
            actions.append("enable approle")
            client.sys.enable_auth_method("approle")
        for name, settings in params["approles"].items():
            try:
                current = client.auth.approle.read_role(name)["data"]
            except Exception:
                current = {}
            if any(current.get(key) != value for key, value in settings.items()):
                actions.append(f"set approle {name}")
                client.auth.approle.create_or_update_approle(name, **settings)
    if params["userpass_users"]:
        if "userpass/" not in client.sys.list_auth_methods()["data"]:
            actions.append("enable userpass")
            client.sys.enable_auth_method("userpass")
        for name, settings in params["userpass_users"].items():
            _userpass_user(client, params, name, dict(settings), actions)
    if params["kubernetes_auth"]:
        _kubernetes_auth(client, params["kubernetes_auth"], actions)
    if params["raft_peers"]:
        _raft_peers(client, params["raft_peers"], actions)
    for path, data in params["kv_secrets"].items():
        try:
            current = client.secrets.kv.v2.read_secret_version(
                path, mount_point=mount, raise_on_deleted_version=True
            )["data"]["data"]
        except Exception:
            current = None
        if current != data:
            actions.append(f"write {mount}/{path}")
            client.secrets.kv.v2.create_or_update_secret(path, secret=data, mount_point=mount)
    # The admin login is configured (and was checked by logging in with it): no root
    # token is needed any more. Without one, this run's own admin token goes too.
    client.auth.token.revoke_self()
    if root:
        actions.append("revoke the root token")
        result["root_revoked"] = True


def _raft_peers(client: Any, keep: list[str], actions: list[str]) -> None:
    """Remove from the raft cluster every member KEEP does not name. Before its host
    goes: a cluster that has lost the quorum of its voters can change nothing."""
    servers = client.sys.read_raft_config()["data"]["config"]["servers"]
    members = [server["node_id"] for server in servers]
    if not set(keep) & set(members):
        raise ValueError(
            f"none of raft_peers ({', '.join(keep)}) is a member of the raft cluster "
            f"({', '.join(members)}): refusing to remove them all"
        )
    for member in members:
        if member not in keep:
            actions.append(f"remove raft peer {member}")
            client.sys.remove_raft_node(member)


def _userpass_user(
    client: Any, params: dict, name: str, settings: dict, actions: list[str]
) -> None:
    """Create or update a userpass user; its password is checked by logging in with it."""
    import hvac

    password = settings.pop("password")
    try:
        current = client.auth.userpass.read_user(name)["data"]
    except Exception:  # hvac raises InvalidPath for a missing user
        current = None
    stale = current is None or any(current.get(k) != v for k, v in settings.items())
    if not stale:
        probe = hvac.Client(url=params["url"], verify=params["ca_file"])
        try:
            token = probe.auth.userpass.login(name, password)["auth"]["client_token"]
            probe.token = token
            probe.auth.token.revoke_self()
        except Exception:  # a wrong password: reset it
            stale = True
    if stale:
        actions.append(f"set userpass user {name}")
        client.auth.userpass.create_or_update_user(name, password=password, **settings)


def _kubernetes_auth(client: Any, spec: dict, actions: list[str]) -> None:
    """Enable and configure the Kubernetes auth method and write its roles.

    OpenBao checks a pod's token by asking the API server (TokenReview) with
    the reviewer token, which it never returns: the config is rewritten when
    the host or the cluster's CA differ, which a rebuilt cluster's do.
    """
    mount = spec.get("mount", "kubernetes")
    if f"{mount}/" not in client.sys.list_auth_methods()["data"]:
        actions.append(f"enable kubernetes at {mount}")
        client.sys.enable_auth_method("kubernetes", path=mount)
    config = dict(spec["config"])
    try:
        current = client.adapter.get(f"/v1/auth/{mount}/config")["data"]
    except Exception:  # hvac raises InvalidPath before the first configuration
        current = {}
    compared = {k: v for k, v in config.items() if k != "token_reviewer_jwt"}
    if not current.get("token_reviewer_jwt_set") or any(
        str(current.get(k, "")).strip() != str(v).strip() for k, v in compared.items()
    ):
        actions.append(f"configure {mount}")
        client.adapter.post(f"/v1/auth/{mount}/config", json=config)
    for name, settings in spec.get("roles", {}).items():
        try:
            current = client.adapter.get(f"/v1/auth/{mount}/role/{name}")["data"]
        except Exception:
            current = {}
        if any(current.get(key) != value for key, value in settings.items()):
            actions.append(f"set {mount} role {name}")
            client.adapter.post(f"/v1/auth/{mount}/role/{name}", json=settings)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "ca_file": {"type": "path", "required": True},
            "action": {"type": "str", "required": True, "choices": ["init", "unseal", "configure"]},
            "key_shares": {"type": "int", "default": 3},
            "key_threshold": {"type": "int", "default": 2},
            "save_to": {"type": "path"},
            "pgp_keys": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "holder": {"type": "str", "required": True},
                    "key": {"type": "str", "required": True},
                },
            },
            "unseal_keys": {"type": "list", "elements": "str", "default": [], "no_log": True},
            "token": {"type": "str", "no_log": True},
            "admin_username": {"type": "str"},
            "admin_password": {"type": "str", "no_log": True},
            "kv_mount": {"type": "str", "default": "secret"},
            "kv_secrets": {"type": "dict", "default": {}, "no_log": True},
            "policies": {"type": "dict", "default": {}},
            "approles": {"type": "dict", "default": {}},
            "userpass_users": {"type": "dict", "default": {}, "no_log": True},
            "audit_file": {"type": "str", "default": ""},
            "kubernetes_auth": {"type": "dict", "default": {}, "no_log": True},
            "raft_peers": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[
            ("action", "init", ["save_to"]),
            ("action", "configure", ["admin_username", "admin_password"]),
        ],
    )
    result: dict[str, Any] = {"actions": []}
    try:
        import hvac

        client = hvac.Client(url=module.params["url"], verify=module.params["ca_file"])
        {"init": _init, "unseal": _unseal, "configure": _configure}[module.params["action"]](
            client, module.params, result
        )
        result["sealed"] = client.sys.is_sealed()
    except ImportError as error:
        module.fail_json(msg=f"the control node's Python lacks hvac: {error}", **result)
    except Exception as error:
        module.fail_json(
            msg=f"OpenBao at {module.params['url']}: {type(error).__name__}: {error}", **result
        )
    module.exit_json(changed=bool(result["actions"]), **result)


if __name__ == "__main__":
    main()
