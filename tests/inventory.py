"""The sandbox inventory as the tests see it (ansible-inventory --list)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.playbook import ANSIBLE_DIR, SANDBOX_INVENTORY

_BIN = Path(sys.executable).parent


@functools.cache
def inventory(path: Path = SANDBOX_INVENTORY) -> dict:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg")}
    listed = subprocess.run(
        [str(_BIN / "ansible-inventory"), "-i", str(path), "--list"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(listed.stdout)


def hosts(group: str = "all") -> list[str]:
    """Hosts of a group, recursively, in inventory order."""
    data = inventory()
    found: list[str] = []
    for child in data.get(group, {}).get("children", []):
        found += [host for host in hosts(child) if host not in found]
    found += [host for host in data.get(group, {}).get("hosts", []) if host not in found]
    return found


def hostvars(host: str) -> dict:
    return inventory()["_meta"]["hostvars"][host]


def container(host: str) -> str:
    """The Docker container a sandbox host runs in."""
    return hostvars(host)["sandbox_container_prefix"] + host
