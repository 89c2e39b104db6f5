"""sandbox.yml creates a sandbox and removes all of it, and nothing else.

Uses a one-node sandbox of its own (other container prefix, network and
volume) beside the running lab, plus Docker objects it did not create.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.playbook import SANDBOX_INVENTORY, run_playbook


def _docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout


def _exists(kind: str, name: str) -> bool:
    found = subprocess.run(["docker", kind, "inspect", name], capture_output=True, check=False)
    return found.returncode == 0


@pytest.fixture
def foreign() -> Iterator[dict[str, str]]:
    """A container, network and volume that are not the sandbox's."""
    tag = uuid.uuid4().hex[:8]
    names = {
        "container": f"bystander-{tag}",
        "network": f"bystander-{tag}",
        "volume": f"bystander-{tag}",
    }
    _docker("network", "create", names["network"])
    _docker("volume", "create", names["volume"])
    image = yaml.safe_load((SANDBOX_INVENTORY / "group_vars/all/sandbox.yml").read_text())[
        "sandbox_node_image"
    ]
    _docker("create", "--name", names["container"], "--network", names["network"], image)
    yield names
    subprocess.run(["docker", "rm", "-f", names["container"]], capture_output=True, check=False)
    subprocess.run(["docker", "network", "rm", names["network"]], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", names["volume"]], capture_output=True, check=False)


def test_create_then_remove_only_the_sandbox(tmp_path: Path, foreign: dict[str, str]) -> None:
    inventory = tmp_path / "inventory"
    shutil.copytree(SANDBOX_INVENTORY, inventory)
    (inventory / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"children": {"slurm_compute": {"hosts": {"solo": None}}}}})
    )
    tag = uuid.uuid4().hex[:8]
    overrides = {
        "sandbox_container_prefix": f"lifecycle-{tag}-",
        "sandbox_network": f"lifecycle-{tag}",
        "sandbox_shared_volume": f"lifecycle-{tag}",
        # A network of its own beside the lab's; no Kubernetes node, so no
        # kernel settings of this machine to set (or to restore when removed
        # while the lab still needs them).
        "sandbox_subnet": "172.30.1.0/24",
        "sandbox_ip_range": "172.30.1.128/25",
        "sandbox_gateway": "172.30.1.1",
        "sandbox_host_sysctls": {},
    }
    with (inventory / "group_vars/all/sandbox.yml").open("a") as extra:
        extra.write(yaml.safe_dump(overrides))
    container = f"lifecycle-{tag}-solo"
    try:
        created = run_playbook("sandbox.yml", inventory)
        assert created.returncode == 0, created.output
        assert _docker("inspect", "-f", "{{.State.Running}}", container).strip() == "true"
        assert _exists("network", overrides["sandbox_network"])
        assert _exists("volume", overrides["sandbox_shared_volume"])

        # Converged again: unchanged.
        again = run_playbook("sandbox.yml", inventory)
        assert again.returncode == 0, again.output
        assert again.recap["localhost"]["changed"] == 0, again.output

        # Another checkout of the same names (a fresh clone: no credentials,
        # no .generated/): refused, nothing touched.
        other = tmp_path / "other-checkout"
        shutil.copytree(
            inventory, other, ignore=shutil.ignore_patterns(".generated", "credentials*")
        )
        refused = run_playbook("sandbox.yml", other)
        assert refused.returncode != 0
        message = " ".join(refused.output.split())  # unwrapped
        assert f"container {container} belongs to another sandbox" in message
        assert f"made by the inventory {inventory} with other credentials" in message
        assert f"than this one's ({other}, .generated/sandbox-id)" in message
        assert _docker("inspect", "-f", "{{.State.Running}}", container).strip() == "true"

        removed = run_playbook("sandbox.yml", inventory, "-e", "sandbox_state=absent")
        assert removed.returncode == 0, removed.output
        assert not _exists("container", container)
        assert not _exists("network", overrides["sandbox_network"])
        assert not _exists("volume", overrides["sandbox_shared_volume"])
        for kind, name in foreign.items():
            assert _exists(kind, name), f"the sandbox removed a {kind} it did not create: {name}"
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)
