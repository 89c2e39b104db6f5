# pyright: reportAttributeAccessIssue=false, reportCallIssue=false
"""The inventory drives the cluster: a node added to it joins on a rerun of
the layers of site.yml it concerns; a node claiming more CPUs than it has
stops the run first."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from testinfra.host import Host

from tests.inventory import hostvars
from tests.playbook import SANDBOX_INVENTORY, inventory_with_host, run_playbook
from tests.services import credentials
from tests.slurm import compute_names, controller_name

# site.yml's layers that configure a compute node: its hardware checked,
# /etc/hosts, the lab CA's trust, Slurm, the workload's environment.
_COMPUTE_LAYERS = (
    "playbooks/validate_nodes.yml",
    "playbooks/common.yml",
    "playbooks/pki.yml",
    "playbooks/slurm.yml",
    "playbooks/workload.yml",
)


@pytest.fixture
def controller(nodes: dict[str, Host]) -> Host:
    return nodes[controller_name()]


def _copy_inventory(tmp_path: Path) -> Path:
    inventory = tmp_path / "inventory"
    shutil.copytree(SANDBOX_INVENTORY, inventory)
    return inventory


def _sinfo(controller: Host) -> dict[str, tuple[str, str]]:
    lines = controller.check_output("sinfo --noheader --Node --format='%N %t %G'").splitlines()
    return {name: (state, gres) for name, state, gres in (line.split() for line in lines)}


def test_a_new_compute_node_joins_on_rerun(tmp_path: Path, controller: Host) -> None:
    new = "gpu3"
    assert new not in compute_names()
    inventory = inventory_with_host(tmp_path, "slurm_compute", new)
    new_container = hostvars(controller_name())["sandbox_container_prefix"] + new
    try:
        created = run_playbook("sandbox.yml", inventory)
        assert created.returncode == 0, created.output
        # The layers of site.yml a compute node concerns (the others touch no
        # compute node), verbose.
        joined = [run_playbook(book, inventory, verbose=True) for book in _COMPUTE_LAYERS]
        output = "".join(run.output for run in joined)
        for run in joined:
            assert run.returncode == 0, run.output
        # The runs placed the MUNGE key on the new node, and never showed it.
        assert "changed: [gpu3]" in output
        generated = credentials(inventory)
        for secret in ("munge_key", "slurm_dbd_db_password"):
            assert len(generated[secret]) >= 32
            assert generated[secret] not in output, f"{secret} is in the playbook output"

        before = _sinfo(controller)
        assert before[new] == ("idle", "gpu:fakegpu:2"), before
        for name in compute_names():
            assert before[name][0] == "idle", before
        ran = controller.check_output(f"srun --nodes={len(before)} hostname").split()
        assert sorted(ran) == sorted(before), ran
    finally:
        subprocess.run(["docker", "rm", "-f", new_container], capture_output=True, check=False)
        # The remaining hosts follow the inventory again: /etc/hosts (common)
        # and slurm.conf (the Slurm layer).
        restored = [run_playbook(book) for book in ("playbooks/common.yml", "playbooks/slurm.yml")]
    for run in restored:
        assert run.returncode == 0, run.output
    after = _sinfo(controller)
    assert sorted(after) == sorted(compute_names()), after
    assert {state for state, _ in after.values()} == {"idle"}, after


def test_more_cpus_than_the_node_has_stops_before_any_change(
    tmp_path: Path, nodes: dict[str, Host]
) -> None:
    inventory = _copy_inventory(tmp_path)
    groups = hostvars(controller_name())["slurm_node_groups"]
    bigger = [{**groups[0], "cpus": 4096}, *groups[1:]]
    with (inventory / "group_vars" / "all" / "main.yml").open("a") as main:
        main.write(yaml.safe_dump({"slurm_node_groups": bigger}))
    slurmd = {
        name: nodes[name].check_output("systemctl show -p MainPID --value slurmd")
        for name in compute_names()
    }

    run = run_playbook("site.yml", inventory)

    assert run.returncode != 0, run.output
    flat = " ".join(run.output.split())
    first = compute_names()[0]
    assert f"compute node {first} (node group '{groups[0]['name']}') declares cpus: 4096" in flat
    # Only the validation plays ran: the control node and the compute nodes'
    # fact gathering, nothing changed anywhere, no daemon restarted.
    assert set(run.recap) == {"localhost", *compute_names()}, run.output
    for host, counts in run.recap.items():
        assert counts["changed"] == 0, f"{host} changed:\n{run.output}"
    for name, pid in slurmd.items():
        assert nodes[name].check_output("systemctl show -p MainPID --value slurmd") == pid
