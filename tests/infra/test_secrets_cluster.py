"""The inventory drives OpenBao's raft cluster: a host added to the secrets group
joins the first's cluster on a rerun of the layers it concerns, is unsealed with
the lab's keys and serves the lab's secrets, without the first being restarted
(a restart seals it); taken out of the group, it leaves the cluster."""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import hvac
from testinfra.host import Host

from tests.inventory import hosts, hostvars
from tests.playbook import inventory_with_host, run_playbook
from tests.services import ca_file, openbao_admin

# site.yml's layers that configure a secrets host: /etc/hosts and the
# firewall, the lab CA's trust, OpenBao.
_SECRETS_LAYERS = ("playbooks/common.yml", "playbooks/pki.yml", "playbooks/secrets.yml")
# Where this machine reaches the new host's API.
_NEW_PORT = 18200


def _members(admin: hvac.Client) -> dict[str, bool]:
    """The raft cluster's members: node id -> voter."""
    servers = admin.sys.read_raft_config()["data"]["config"]["servers"]
    return {server["node_id"]: server["voter"] for server in servers}


def _autopilot(admin: hvac.Client) -> dict:
    """Autopilot's view of the raft cluster: its voters, its leader, its health."""
    return admin.adapter.get("/v1/sys/storage/raft/autopilot/state")["data"]


def _main_pid(node: Host) -> str:
    return node.check_output("systemctl show -p MainPID --value openbao")


def test_a_second_secrets_host_joins_the_raft_cluster_and_leaves_it(
    tmp_path: Path, nodes: dict[str, Host]
) -> None:
    new, first = "vault2", hosts("secrets")[0]
    assert new not in hosts()
    # As the sandbox's head has it: its API published on this machine's loopback,
    # where the control node reaches it.
    inventory = inventory_with_host(
        tmp_path,
        "secrets",
        new,
        {
            "sandbox_published_ports": [f"127.0.0.1:{_NEW_PORT}:8200"],
            "openbao_admin_endpoint": f"127.0.0.1:{_NEW_PORT}",
        },
    )
    new_container = hostvars(first)["sandbox_container_prefix"] + new
    pid = _main_pid(nodes[first])
    marker = secrets.token_hex(8)
    openbao_admin().secrets.kv.v2.create_or_update_secret(
        f"labstack/tests/raft-{marker}", {"v": marker}
    )
    try:
        created = run_playbook("sandbox.yml", inventory)
        assert created.returncode == 0, created.output
        for book in _SECRETS_LAYERS:
            run = run_playbook(book, inventory)
            assert run.returncode == 0, run.output
        # A change of its peers restarted (and so sealed) no server.
        assert _main_pid(nodes[first]) == pid

        admin = openbao_admin()
        # Autopilot makes a new member a voter once it has been stable a while.
        deadline = time.monotonic() + 90
        while sorted(_autopilot(admin).get("voters") or []) != sorted([first, new]):
            assert time.monotonic() < deadline, _autopilot(admin)
            time.sleep(2)
        state = _autopilot(admin)
        assert state["healthy"], state
        assert state["leader"] in (first, new), state
        assert _members(admin) == {first: True, new: True}

        # The new host is an unsealed standby of the same cluster and serves the
        # lab's secrets, old and new.
        second = hvac.Client(url=f"https://127.0.0.1:{_NEW_PORT}", verify=str(ca_file()))
        health = second.sys.read_health_status(method="GET", standby_ok=True)
        assert (health["initialized"], health["sealed"], health["standby"]) == (True, False, True)
        ours = admin.sys.read_health_status(method="GET")
        assert health["cluster_id"] == ours["cluster_id"], (health, ours)
        second.token = admin.token
        read = second.secrets.kv.v2.read_secret_version(
            f"labstack/tests/raft-{marker}", raise_on_deleted_version=True
        )
        assert read["data"]["data"] == {"v": marker}
        workload = second.secrets.kv.v2.read_secret_version(
            "labstack/jobs/workload", raise_on_deleted_version=True
        )
        assert workload["data"]["data"]["AWS_ACCESS_KEY_ID"] == "jobs"
    finally:
        # Out of the inventory again: the secrets layer removes it from the raft
        # cluster while it still runs (a two-voter cluster that lost one has no
        # quorum to change anything), then it goes; /etc/hosts and the firewall
        # follow the inventory again (common).
        left = run_playbook("playbooks/secrets.yml")
        subprocess.run(["docker", "rm", "-f", new_container], capture_output=True, check=False)
        restored = run_playbook("playbooks/common.yml")
    assert left.returncode == 0, left.output
    assert restored.returncode == 0, restored.output
    admin = openbao_admin()
    assert _members(admin) == {first: True}
    assert _main_pid(nodes[first]) == pid
